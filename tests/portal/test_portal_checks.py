"""The task page shows each version's pre-review checks, and approval waits for blocking ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from osiris.app import db
from osiris.app.models import Artifact, CheckRun
from tests.support.portal_helpers import approve_form

from .task_helpers import make_task, status_of

pytestmark = pytest.mark.asyncio

HOSTILE = "<script>alert('x')</script> & done"


async def check_run(factory, task, *, status: str, mode: str = "block", results=None) -> CheckRun:
    async with db.transaction(factory.runtime.sessions) as s:
        artifact = (
            (
                await s.execute(
                    select(Artifact).where(Artifact.task_id == task.id).order_by(Artifact.version.desc())
                )
            )
            .scalars()
            .first()
        )
        artifact.commit_sha = "ab" * 20  # published (what the publish job records with the run)
        run = (
            await s.execute(select(CheckRun).where(CheckRun.artifact_id == artifact.id))
        ).scalar_one_or_none()
        if run is None:
            run = CheckRun(
                org_id=task.org_id,
                task_id=task.id,
                artifact_id=artifact.id,
                version=artifact.version,
                commit_sha="ab" * 20,
                mode=mode,
                source=".osiris.yml",
                status=status,
            )
            s.add(run)
        run.status, run.mode, run.results = status, mode, results or []
        if status not in ("queued", "running"):
            run.finished_at, run.duration_ms = datetime.now(UTC), 2500
        await s.flush()
        return run


async def test_check_results_are_shown_escaped_and_hold_approval(signed_in, factory):
    client, _ = await signed_in("reviewer")
    task, _ = await make_task(factory, submit=[{"app.py": "def hello():\n    return 'hi'\n"}])
    await check_run(factory, task, status="running")

    page = await client.get(f"/tasks/{task.id}")
    assert page.status_code == 200
    assert 'id="checks"' in page.text and 'class="check-badge check-running">running<' in page.text
    assert "Approval waits" in page.text and "blocking checks are running" in page.text
    r = await client.post(f"/tasks/{task.id}/approve", data=approve_form(page.text))
    assert r.status_code == 409 and "blocking checks are running" in r.text
    assert await status_of(factory, task.id) == "REVIEW"

    results = [
        {"name": "ruff", "command": "ruff check .", "exit_code": 0, "timed_out": False, "duration_ms": 400,
         "output": "All checks passed!", "output_truncated": False, "passed": True},
        {"name": "python", "command": "python -m pytest -q", "exit_code": None, "timed_out": True,
         "duration_ms": 2100, "output": HOSTILE, "output_truncated": True, "passed": False},
    ]  # fmt: skip
    await check_run(factory, task, status="failed", results=results)
    page = await client.get(f"/tasks/{task.id}")
    text = page.text
    assert 'class="check-badge check-failed">failed<' in text and "blocking checks failed" in text
    assert "<code>python -m pytest -q</code>" in text and "exit code —" in text and "2.1 s" in text
    assert "timed out</strong>" in text and "exit code 0 · 0.4 s" in text
    assert "<details open>" in text and "<summary>Output (its end)</summary>" in text
    assert (
        "<script>alert('x')" not in text
        and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; done" in text
    )
    r = await client.post(f"/tasks/{task.id}/approve", data=approve_form(text))
    assert r.status_code == 409 and await status_of(factory, task.id) == "REVIEW"
    board = await client.get("/")
    card = board.text.split(f'data-task-id="{task.id}"', 1)[1].split("</li>", 1)[0]
    assert 'class="check-badge check-failed"' in card and "checks failed" in card

    # inform mode never holds approval
    await check_run(factory, task, status="failed", mode="inform", results=results)
    page = await client.get(f"/tasks/{task.id}")
    assert "Approval waits" not in page.text
    r = await client.post(f"/tasks/{task.id}/approve", data=approve_form(page.text))
    assert r.status_code == 303 and await status_of(factory, task.id) == "DONE"
