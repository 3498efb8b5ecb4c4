"""Reviewing like a pull request on the local git host: comments on lines of "Files changed" (a
deleted line, an added line), resolvable threads, and the one review form with its verdicts. The
agent reads the comments as structured feedback (REST here; MCP in the browser test and
tests/mcp/test_mcp_review_comments.py); agents cannot comment on lines or resolve threads."""

from __future__ import annotations

import re
import secrets
from html import unescape

import pytest

from tests.support.jobs import drain
from tests.support.portal_helpers import csrf_of, sign_in

from .task_helpers import published, section

pytestmark = pytest.mark.asyncio

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
# Deletes the two lines under the heading and adds one of its own.
REWRITE = (
    "--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,2 @@\n # {repo}\n-\n-A project managed by OSIRIS.\n"
    "+Managed by OSIRIS, now with tests.\n"
)


async def _reviewing(client, browser_client, runtime, factory, person, patch: str = REWRITE):
    _, agent = await factory.member("agent")
    task_id, repo = await published(client, runtime, agent, patch)
    reviewer = await person("reviewer")
    assert (await sign_in(browser_client, reviewer.username)).status_code == 303
    html = (await browser_client.get(f"/tasks/{task_id}")).text
    return task_id, repo, agent, html


def _comment_form(html: str, path: str = "README.md") -> dict[str, str]:
    forms = re.findall(
        r'<form method="post" action="/tasks/\d+/comments" class="line-comment-form">.*?</form>',
        html,
        re.DOTALL,
    )
    for form in forms:
        fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form))
        if unescape(fields.get("path", "")) == path:
            return {k: unescape(v) for k, v in fields.items()}
    raise AssertionError(f"no comment form for {path}")


def _review_form(html: str) -> dict[str, str]:
    form = re.search(r'<form method="post" action="/tasks/\d+/review".*?</form>', html, re.DOTALL)
    assert form, "no review form"
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form.group(0)))


async def _feedback(client, agent, task_id: int, since: int | None = 0) -> dict:
    r = await client.post(f"/api/v1/tasks/{task_id}/feedback/read", json={"since": since}, headers=agent)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_comment_on_a_deleted_line_reaches_the_agent_and_its_thread_resolves(
    client, browser_client, factory, person, runtime
):
    task_id, _, agent, html = await _reviewing(client, browser_client, runtime, factory, person)
    form = _comment_form(html)
    assert form["version"] == "1" and len(form["head_sha"]) == 40
    # Line 3 of the base ("A project managed by OSIRIS."), deleted: the old side.
    r = await browser_client.post(
        f"/tasks/{task_id}/comments",
        data={**form, "line": "3", "side": "old", "body": f"Keep this. {HOSTILE}"},
    )
    assert r.status_code == 303, r.text
    # And the added line 2 on the new side.
    r = await browser_client.post(
        f"/tasks/{task_id}/comments", data={**form, "line": "2", "side": "new", "body": "Say which tests."}
    )
    assert r.status_code == 303, r.text

    page = (await browser_client.get(f"/tasks/{task_id}")).text
    changes = section(page)
    # Under its line, escaped: the deleted row, then the thread.
    deleted_row = re.search(
        r'<tr class="ln ln-removed"><td class="num">3</td>.*?</tr>\s*<tr class="thread-row">(.*?)</tr>',
        changes,
        re.DOTALL,
    )
    assert deleted_row and "Keep this." in deleted_row.group(1), changes[:3000]
    assert HOSTILE not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    added_row = re.search(
        r'<tr class="ln ln-added"><td class="num"></td><td class="num">2</td>.*?</tr>\s*<tr class="thread-row">(.*?)</tr>',
        changes,
        re.DOTALL,
    )
    assert added_row and "Say which tests." in added_row.group(1)
    assert "2 open comments on lines" in page

    batch = await _feedback(client, agent, task_id)
    first, second = [i for i in batch["items"] if i["kind"] == "review_comment"]
    assert (first["file"], first["line"], first["side"], first["version"]) == ("README.md", 3, "old", 1)
    assert first["body"] == f"Keep this. {HOSTILE}" and first["resolved"] is False
    assert (
        first["diff_hunk"].startswith("@@ -1,3 +1,2 @@")
        and "-A project managed by OSIRIS." in first["diff_hunk"]
    )
    assert (second["file"], second["line"], second["side"]) == ("README.md", 2, "new")
    assert "+Managed by OSIRIS, now with tests." in second["diff_hunk"]
    assert [(t["path"], t["line"], t["resolved"]) for t in batch["threads"]] == [
        ("README.md", 3, False),
        ("README.md", 2, False),
    ]

    # Resolved in the portal: the agent sees it resolved, the other still open.
    token = csrf_of(page)
    r = await browser_client.post(
        f"/tasks/{task_id}/comments/{first['thread_id']}/resolve", data={"csrf_token": token, "resolved": "1"}
    )
    assert r.status_code == 303, r.text
    batch = await _feedback(client, agent, task_id)
    states = {i["line"]: i["resolved"] for i in batch["items"] if i["kind"] == "review_comment"}
    assert states == {3: True, 2: False}
    assert [(t["line"], t["resolved"]) for t in batch["threads"]] == [(3, True), (2, False)]
    page = (await browser_client.get(f"/tasks/{task_id}")).text
    assert "resolved by" in page and ">Reopen</button>" in page and "1 open comment on lines" in page
    # Reopened: open again.
    r = await browser_client.post(
        f"/tasks/{task_id}/comments/{first['thread_id']}/resolve", data={"csrf_token": token, "resolved": "0"}
    )
    assert r.status_code == 303
    assert all(not t["resolved"] for t in (await _feedback(client, agent, task_id))["threads"])
    kinds = [e["kind"] for e in (await client.get(f"/api/v1/tasks/{task_id}/events", headers=agent)).json()]
    assert "review_thread_resolved" in kinds and "review_thread_reopened" in kinds


async def test_request_changes_lists_the_open_comments_or_needs_a_comment(
    client, browser_client, factory, person, runtime
):
    task_id, _, agent, html = await _reviewing(client, browser_client, runtime, factory, person)
    review = _review_form(html)
    # Nothing said at all: refused, and the task stays in review.
    r = await browser_client.post(
        f"/tasks/{task_id}/review", data={**review, "verdict": "request_changes", "body": ""}
    )
    assert r.status_code == 422 and "needs a comment" in r.text
    form = _comment_form(html)
    r = await browser_client.post(
        f"/tasks/{task_id}/comments",
        data={**form, "line": "2", "side": "old", "body": "Why remove the blank line?"},
    )
    assert r.status_code == 303
    # An open comment on a line is enough.
    r = await browser_client.post(
        f"/tasks/{task_id}/review", data={**review, "verdict": "request_changes", "body": ""}
    )
    assert r.status_code == 303, r.text
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "IN_PROGRESS"
    batch = await _feedback(client, agent, task_id)
    (request,) = [i for i in batch["items"] if i["kind"] == "feedback"]
    assert "`README.md` line 2 (old, version 1): Why remove the blank line?" in request["body"]
    (inline,) = request["comments"]
    assert (inline["file"], inline["line"], inline["side"], inline["version"], inline["resolved"]) == (
        "README.md",
        2,
        "old",
        1,
        False,
    )
    assert inline["diff_hunk"].startswith("@@ -1,3 +1,2 @@")


async def test_the_review_form_comment_only_and_approve(client, browser_client, factory, person, runtime):
    task_id, _, agent, html = await _reviewing(client, browser_client, runtime, factory, person)
    review = _review_form(html)
    r = await browser_client.post(
        f"/tasks/{task_id}/review", data={**review, "verdict": "comment", "body": ""}
    )
    assert r.status_code == 422
    r = await browser_client.post(
        f"/tasks/{task_id}/review", data={**review, "verdict": "comment", "body": "Nice."}
    )
    assert r.status_code == 303
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "REVIEW"
    assert [i["body"] for i in (await _feedback(client, agent, task_id))["items"]] == ["Nice."]
    r = await browser_client.post(
        f"/tasks/{task_id}/review", data={**review, "verdict": "approve", "body": "Ship it"}
    )
    assert r.status_code == 303, r.text
    await drain(runtime)
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "DONE"


async def test_a_stale_review_form_is_refused(client, browser_client, factory, person, runtime):
    """The page showed version 1; version 2 arrived meanwhile: no verdict applies to it."""
    task_id, repo, agent, html = await _reviewing(client, browser_client, runtime, factory, person)
    review, comment = _review_form(html), _comment_form(html)
    _, other = await factory.member("reviewer")
    r = await client.post(
        f"/api/v1/tasks/{task_id}/request-changes", json={"feedback": "again"}, headers=other
    )
    assert r.status_code == 200
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts",
        json={"content": {"README.md": f"# {repo}\n"}, "kind": "files"},
        headers=agent,
    )
    assert r.status_code == 201, r.text
    await drain(runtime)
    for verdict in ("approve", "request_changes", "comment"):
        r = await browser_client.post(
            f"/tasks/{task_id}/review", data={**review, "verdict": verdict, "body": "ok"}
        )
        assert r.status_code == 409 and "<html" in r.text and "stale_approval" in r.text, (
            verdict,
            r.text[:300],
        )
    r = await browser_client.post(
        f"/tasks/{task_id}/comments", data={**comment, "line": "3", "side": "old", "body": "late"}
    )
    assert r.status_code == 409 and "reload the page" in r.text
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "REVIEW"


async def test_a_line_outside_the_diff_is_refused(client, browser_client, factory, person, runtime):
    task_id, _, _, html = await _reviewing(client, browser_client, runtime, factory, person)
    form = _comment_form(html)
    for line, side in (("9", "new"), ("3", "new")):  # not in the diff; a deleted line on the new side
        r = await browser_client.post(
            f"/tasks/{task_id}/comments", data={**form, "line": line, "side": side, "body": "x"}
        )
        assert r.status_code == 422 and "not in the diff" in r.text, r.text[:300]
    r = await browser_client.post(
        f"/tasks/{task_id}/comments", data={**form, "path": "nope.md", "line": "1", "body": "x"}
    )
    assert r.status_code == 422


async def test_agents_cannot_comment_on_lines_or_resolve_threads(
    client, browser_client, factory, person, runtime
):
    task_id, _, agent, html = await _reviewing(client, browser_client, runtime, factory, person)
    form = _comment_form(html)
    body = {
        "path": "README.md",
        "line": 2,
        "side": "new",
        "body": "I approve of myself",
        "version": int(form["version"]),
        "head_sha": form["head_sha"],
    }
    r = await client.post(f"/api/v1/tasks/{task_id}/review-comments", json=body, headers=agent)
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    _, reviewer = await factory.member("reviewer")
    r = await client.post(f"/api/v1/tasks/{task_id}/review-comments", json=body, headers=reviewer)
    assert r.status_code == 201, r.text
    thread = r.json()
    assert (thread["path"], thread["line"], thread["side"], thread["resolved"]) == (
        "README.md",
        2,
        "new",
        False,
    )
    r = await client.patch(
        f"/api/v1/tasks/{task_id}/review-comments/{thread['id']}", json={"resolved": True}, headers=agent
    )
    assert r.status_code == 403
    r = await client.post(
        f"/api/v1/tasks/{task_id}/reviews", json={"verdict": "comment", "body": "x"}, headers=agent
    )
    assert r.status_code == 403
    listed = (await client.get(f"/api/v1/tasks/{task_id}/review-comments", headers=agent)).json()
    assert [(t["id"], t["resolved"]) for t in listed] == [(thread["id"], False)]
    r = await client.patch(
        f"/api/v1/tasks/{task_id}/review-comments/{thread['id']}", json={"resolved": True}, headers=reviewer
    )
    assert r.status_code == 200 and r.json()["resolved"] is True and r.json()["resolved_by"]


async def test_another_organizations_task_is_not_found(client, browser_client, factory, person, runtime):
    task_id, _, _, html = await _reviewing(client, browser_client, runtime, factory, person)
    form = _comment_form(html)
    r = await browser_client.post(
        f"/tasks/{task_id}/comments", data={**form, "line": "2", "side": "new", "body": "mine"}
    )
    assert r.status_code == 303
    thread_id = (
        await client.get(
            f"/api/v1/tasks/{task_id}/review-comments", headers=(await factory.member("reviewer"))[1]
        )
    ).json()[0]["id"]

    other_org = await factory.org(f"other-{secrets.token_hex(4)}")
    outsider = await person("reviewer", org=other_org)
    browser_client.cookies.clear()
    assert (await sign_in(browser_client, outsider.username)).status_code == 303
    token = csrf_of((await browser_client.get("/")).text)
    r = await browser_client.post(
        f"/tasks/{task_id}/comments", data={**form, "csrf_token": token, "line": "2", "body": "x"}
    )
    assert r.status_code == 404
    r = await browser_client.post(
        f"/tasks/{task_id}/comments/{thread_id}/resolve", data={"csrf_token": token}
    )
    assert r.status_code == 404
    r = await browser_client.post(
        f"/tasks/{task_id}/review", data={"csrf_token": token, "verdict": "comment", "body": "x"}
    )
    assert r.status_code == 404
    _, theirs = await factory.member("reviewer", org=other_org)
    r = await client.get(f"/api/v1/tasks/{task_id}/review-comments", headers=theirs)
    assert r.status_code == 404
    r = await client.patch(
        f"/api/v1/tasks/{task_id}/review-comments/{thread_id}", json={"resolved": True}, headers=theirs
    )
    assert r.status_code == 404
