""" "Compare versions" on a second pass: by default what changed since the last review (the version a
reviewer requested changes on, against the newest), not merely the two newest; a system move
(failing checks) is no review; the reader's own choice of versions wins."""

from __future__ import annotations

import re

import pytest

from osiris.app import db, lifecycle
from osiris.app.actors import system_actor
from osiris.app.artifacts import validate_artifact

from .task_helpers import make_task

pytestmark = pytest.mark.asyncio


def patch(i: int) -> str:
    return f"--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-old\n+new {i}\n"


def selected(html: str, name: str) -> list[str]:
    select = re.search(rf'<select id="cmp-{name}" name="{name}">(.*?)</select>', html, re.DOTALL)
    assert select, f"no {name} select"
    return re.findall(r'<option value="(\d+)" selected>', select.group(1))


async def _submit(factory, task, agent, i: int) -> None:
    async with db.transaction(factory.runtime.sessions) as s:
        await lifecycle.submit_artifact(
            s,
            factory.actor(agent),
            task.id,
            artifact=validate_artifact(patch(i), "auto", max_bytes=10**6),
            summary=f"v{i}",
        )


async def _request_changes(factory, task) -> None:
    async with db.transaction(factory.runtime.sessions) as s:
        reviewer = await factory.user("reviewer")
        await lifecycle.request_changes(
            s, factory.actor(reviewer), task.id, feedback="again", lease_seconds=600
        )


async def _checks_fail(factory, task) -> None:
    async with db.transaction(factory.runtime.sessions) as s:
        await lifecycle.checks_failed(
            s, system_actor(task.org_id, "checks"), task.id, feedback="tests fail", lease_seconds=600
        )


async def test_the_default_is_the_last_reviewed_version_against_the_newest(signed_in, factory):
    client, _ = await signed_in("reviewer")
    # v1 reviewed (changes requested), v2 sent back by failing checks (no person saw it), v3 now.
    task, agent = await make_task(factory, submit=[patch(1), patch(2)])  # changes requested on v1
    await _checks_fail(factory, task)
    await _submit(factory, task, agent, 3)
    page = (await client.get(f"/tasks/{task.id}")).text
    assert selected(page, "from") == ["1"] and selected(page, "to") == ["3"]
    assert "v1 → v3" in page and "v2 → v3" not in page
    assert "Since the last review: changes were requested on v1." in page
    assert "+new 3" in page


async def test_a_later_review_moves_the_default(signed_in, factory):
    client, _ = await signed_in("reviewer")
    task, agent = await make_task(factory, submit=[patch(1), patch(2)])
    await _request_changes(factory, task)  # now on v2
    await _submit(factory, task, agent, 3)
    await _request_changes(factory, task)  # and on v3
    await _submit(factory, task, agent, 4)
    page = (await client.get(f"/tasks/{task.id}")).text
    assert selected(page, "from") == ["3"] and selected(page, "to") == ["4"]
    assert "v3 → v4" in page and "changes were requested on v3" in page


async def test_without_a_review_the_two_newest_and_the_readers_choice_wins(signed_in, factory):
    client, _ = await signed_in("reviewer")
    task, agent = await make_task(factory, submit=[patch(1)])
    await _checks_fail(factory, task)  # v1 went back before anyone reviewed it
    await _submit(factory, task, agent, 2)
    page = (await client.get(f"/tasks/{task.id}")).text
    assert selected(page, "from") == ["1"] and selected(page, "to") == ["2"]
    assert "Since the last review" not in page

    await _checks_fail(factory, task)
    await _submit(factory, task, agent, 3)
    page = (await client.get(f"/tasks/{task.id}")).text
    assert selected(page, "from") == ["2"] and selected(page, "to") == ["3"]
    page = (await client.get(f"/tasks/{task.id}?from=1&to=2")).text  # asked for: shown as asked
    assert selected(page, "from") == ["1"] and selected(page, "to") == ["2"] and "v1 → v2" in page
    assert "Since the last review" not in page
    # Versions that do not exist compare nothing, and the page still answers.
    r = await client.get(f"/tasks/{task.id}?from=99&to=0")
    assert r.status_code == 200 and "These versions are identical" not in r.text
