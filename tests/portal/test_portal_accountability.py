"""Who decided, shown to people: the task page's accountability panel and timeline, the board's
window and archive, the audit log's filters, and the REST names (request-changes, pr_url kept)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from osiris.app import db, lifecycle
from osiris.app.artifacts import validate_artifact
from osiris.app.models import Task, TaskEvent
from tests.support.jobs import drain
from tests.support.portal_helpers import approve_form, csrf_of

pytestmark = pytest.mark.asyncio

HOSTILE = "<script>alert(1)</script>"


async def submitted_task(factory, *, title: str = "Fix the login page") -> tuple[Task, object]:
    """A task an agent claimed and submitted once, published on a repository of its own."""
    agent = await factory.user("agent")
    actor = factory.actor(agent)
    async with db.transaction(factory.runtime.sessions) as s:
        task = await lifecycle.create_task(
            s, actor, title=title, description="d", repo=f"t-{secrets.token_hex(4)}", base_branch="main"
        )
        await lifecycle.claim_task(s, actor, task.id, lease_seconds=600)
    async with db.transaction(factory.runtime.sessions) as s:
        await lifecycle.submit_artifact(
            s, actor, task.id, artifact=validate_artifact({"app.py": "x = 1\n"}, "auto", max_bytes=10**6)
        )
    await drain(factory.runtime)  # published: approvable
    return task, agent


def region(html: str, element_id: str) -> str:
    match = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', html, re.DOTALL)
    assert match, f"no #{element_id} on the page"
    return match.group(2)


async def test_a_done_task_says_who_approved_when_why_and_the_merge_commit(signed_in, factory):
    client, reviewer = await signed_in("reviewer")
    task, _ = await submitted_task(factory, title=HOSTILE)
    page = await client.get(f"/tasks/{task.id}")
    assert f'action="/tasks/{task.id}/messages"' in page.text  # open: the message box is there
    assert "Show bookkeeping" in page.text
    r = await client.post(
        f"/tasks/{task.id}/approve", data=approve_form(page.text, comment=f"ship {HOSTILE}")
    )
    assert r.status_code == 303
    await drain(factory.runtime)  # the merge job
    async with factory.runtime.sessions() as s:
        merged = (
            await s.execute(select(TaskEvent).where(TaskEvent.task_id == task.id, TaskEvent.kind == "merged"))
        ).scalar_one()
    merge_commit = merged.data["merge_commit_sha"]

    page = await client.get(f"/tasks/{task.id}")
    assert page.status_code == 200
    panel = region(page.text, "closure")
    assert f'Approved by <span class="closure-who">{reviewer.username}</span>' in panel
    assert "ship &lt;script&gt;alert(1)&lt;/script&gt;" in panel  # the comment, escaped
    assert merge_commit[:12] in panel and "merge-commit" in panel
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", panel)  # an absolute time
    assert HOSTILE not in page.text  # title and comment escaped everywhere
    # Closed: no message box, nobody "holds" it.
    assert f'action="/tasks/{task.id}/messages"' not in page.text
    assert "held by" not in page.text
    assert 'id="task-status">DONE<' in page.text

    # The board's Done card names the approver.
    board = await client.get("/")
    card = re.search(rf'<li class="card[^"]*" data-task-id="{task.id}">.*?</li>', board.text, re.DOTALL)
    assert card and f"approved by {reviewer.username}" in card.group(0)
    assert 'id="col-DONE"' in board.text


async def test_a_cancelled_task_says_cancelled_by_whom_and_why(signed_in, factory):
    client, reviewer = await signed_in("reviewer")
    task, _ = await submitted_task(factory)
    token = csrf_of((await client.get(f"/tasks/{task.id}")).text)
    r = await client.post(f"/tasks/{task.id}/cancel", data={"csrf_token": token, "reason": f"dup {HOSTILE}"})
    assert r.status_code == 303
    page = await client.get(f"/tasks/{task.id}")
    panel = region(page.text, "closure")
    assert f'Cancelled by <span class="closure-who">{reviewer.username}</span>' in panel
    assert "dup &lt;script&gt;" in panel and HOSTILE not in page.text
    assert 'id="task-status">CANCELLED<' in page.text and ">REJECTED<" not in page.text
    assert f'action="/tasks/{task.id}/messages"' not in page.text
    board = await client.get("/")
    assert re.search(r'id="col-REJECTED-h">\s*Cancelled', board.text)
    assert f"cancelled by {reviewer.username}" in board.text


async def test_the_timeline_is_newest_first_and_marks_bookkeeping(signed_in, factory):
    client, _ = await signed_in("reviewer")
    task, _ = await submitted_task(factory)
    page = await client.get(f"/tasks/{task.id}")
    timeline = region(page.text, "timeline")
    items = re.findall(r'<li class="ev ev-(\w+)( ev-bookkeeping)?" data-event-id="(\d+)">', timeline)
    kinds = {kind: bool(mark) for kind, mark, _ in items}
    assert kinds["published"] is True  # hidden behind the toggle
    assert kinds["submit"] is False and kinds["claim"] is False  # what a person reads stays visible
    ids = [int(i) for *_, i in items]
    assert ids == sorted(ids, reverse=True)  # newest at the top
    # The toggle sits outside the live region, so a refresh keeps the choice.
    assert page.text.index('id="show-bookkeeping"') < page.text.index('id="timeline"')


async def test_closed_columns_show_a_recent_window_and_older_tasks_are_in_the_archive(signed_in, factory):
    client, _ = await signed_in("reviewer")
    reviewer = factory.actor(await factory.user("reviewer"))
    agent = factory.actor(await factory.user("agent"))
    ids = []
    async with db.transaction(factory.runtime.sessions) as s:
        for title in ("Recent cancel", "Old cancel", "Ancient cancel"):
            t = await lifecycle.create_task(
                s, agent, title=title, description="", repo="web", base_branch="main"
            )
            await lifecycle.cancel_task(s, reviewer, t.id, reason="no")
            ids.append(t.id)
        long_ago = datetime.now(UTC) - timedelta(days=30)
        await s.execute(update(Task).where(Task.id.in_(ids[1:])).values(updated_at=long_ago))
    board = await client.get("/")
    column = region(board.text, "col-REJECTED")
    assert "Recent cancel" in column and "Old cancel" not in column
    assert 'data-count="1"' in column and "2 older in the archive" in column
    assert 'href="/archive"' in column

    archive = await client.get("/archive")
    assert archive.status_code == 200
    assert "Old cancel" in archive.text and "Ancient cancel" in archive.text
    assert "Recent cancel" not in archive.text and "Cancelled" in archive.text
    assert (await client.get("/archive", params={"page": 0})).status_code == 422
    assert "Old cancel" not in (await client.get("/archive", params={"page": 2})).text


async def test_audit_log_filters_by_actor_task_kind_and_dates(signed_in, factory):
    client, admin = await signed_in("admin")
    agent = factory.actor(await factory.user("agent"))
    async with db.transaction(factory.runtime.sessions) as s:
        a = await lifecycle.create_task(
            s, agent, title=HOSTILE, description="", repo="web", base_branch="main"
        )
        b = await lifecycle.create_task(
            s, agent, title="Other", description="", repo="web", base_branch="main"
        )
        await lifecycle.cancel_task(s, factory.actor(admin), a.id, reason="not needed")
    page = await client.get("/admin/audit")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and HOSTILE not in page.text  # titles
    assert "not needed" in page.text  # reasons
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page.text)

    def rows(html: str) -> list[str]:
        return re.findall(r'<td><a href="/tasks/(\d+)">', html)

    by_actor = await client.get("/admin/audit", params={"actor": admin.username})
    assert rows(by_actor.text) == [str(a.id)]
    by_task = await client.get("/admin/audit", params={"task": f"#{b.id}"})
    assert set(rows(by_task.text)) == {str(b.id)}
    by_kind = await client.get("/admin/audit", params={"kind": "cancel"})
    assert rows(by_kind.text) == [str(a.id)]
    today = datetime.now(UTC).date()
    inside = await client.get("/admin/audit", params={"from": str(today), "to": str(today)})
    assert len(rows(inside.text)) == 3
    later = await client.get("/admin/audit", params={"from": str(today + timedelta(days=1))})
    assert rows(later.text) == [] and "No events match these filters" in later.text

    bad = await client.get("/admin/audit", params={"from": "2026-13-45"})
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.text
    assert (await client.get("/admin/audit", params={"task": "abc"})).status_code == 422
    reversed_range = await client.get(
        "/admin/audit", params={"from": str(today), "to": str(today - timedelta(days=2))}
    )
    assert reversed_range.status_code == 422 and "is after" in reversed_range.text


# --- REST: request-changes, the deprecated reject, and a pr_url that stays -------------------------


async def test_request_changes_and_its_deprecated_alias_keep_the_pr_url(client, factory, app):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    r = await client.post(
        "/api/v1/tasks", json={"title": "t", "repo": f"t-{secrets.token_hex(4)}"}, headers=agent
    )
    task_id = r.json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200

    async def submit(n: int) -> None:
        r = await client.post(
            f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"a.py": f"x = {n}\n"}}, headers=agent
        )
        assert r.status_code == 201, r.text
        await drain(factory.runtime)

    await submit(1)
    pr_url = (await client.get(f"/api/v1/tasks/{task_id}", headers=reviewer)).json()["pr_url"]
    assert pr_url and pr_url.endswith(f"/tasks/{task_id}#work")  # a page a person can open

    r = await client.post(
        f"/api/v1/tasks/{task_id}/request-changes", json={"feedback": "more"}, headers=reviewer
    )
    assert r.status_code == 200 and r.json()["status"] == "IN_PROGRESS" and r.json()["pr_url"] == pr_url
    assert (
        await client.post(f"/api/v1/tasks/{task_id}/request-changes", json={}, headers=reviewer)
    ).status_code == 422

    await submit(2)
    r = await client.post(f"/api/v1/tasks/{task_id}/reject", json={"feedback": "again"}, headers=reviewer)
    assert r.status_code == 200 and r.json()["status"] == "IN_PROGRESS" and r.json()["pr_url"] == pr_url

    await submit(3)
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", json={}, headers=reviewer)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "DONE" and r.json()["pr_url"] == pr_url
    await drain(factory.runtime)
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=reviewer)).json()["pr_url"] == pr_url

    spec = (await client.get("/openapi.json")).json()["paths"]
    assert spec["/api/v1/tasks/{task_id}/reject"]["post"].get("deprecated") is True
    assert not spec["/api/v1/tasks/{task_id}/request-changes"]["post"].get("deprecated")


async def test_cancel_keeps_the_pr_url(client, factory):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    r = await client.post(
        "/api/v1/tasks", json={"title": "t", "repo": f"t-{secrets.token_hex(4)}"}, headers=agent
    )
    task_id = r.json()["id"]
    await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"a.py": "x\n"}}, headers=agent
    )
    assert r.status_code == 201
    await drain(factory.runtime)
    r = await client.post(f"/api/v1/tasks/{task_id}/cancel", json={"reason": "no"}, headers=reviewer)
    assert r.status_code == 200 and r.json()["status"] == "REJECTED"  # the API value stays
    assert r.json()["pr_url"] and r.json()["pr_url"].endswith(f"/tasks/{task_id}#work")


async def test_legacy_api_change_request_links_open_the_task_page():
    from osiris.portal.rendering import _web_url

    assert _web_url("http://osiris.test/api/v1/tasks/7/change-request") == "/tasks/7#work"
    assert _web_url("https://github.com/o/r/pull/7") == "https://github.com/o/r/pull/7"
    assert _web_url("javascript:alert(1)") is None
