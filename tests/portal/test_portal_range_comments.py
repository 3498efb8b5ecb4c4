"""A comment on a range of lines (`start_line`..`line`) of "Files changed" reaches the agent with its
range: over REST (`POST …/review-comments`, then the agent's `POST …/feedback/read`) and through the
official MCP client's `read_feedback`, on a real server; the review that requests changes lists it as
a range. Ranges that are not one run of lines in a hunk, backwards or across hunks, are refused."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.support.servers import mcp_over_http

from .browser_helpers import run_jobs, structured

pytestmark = pytest.mark.asyncio

# Adds a section of three lines after the base README (`# repo`, ``, `A project managed by OSIRIS.`).
ADD_SECTION = (
    "--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,6 @@\n # {repo}\n \n A project managed by OSIRIS.\n"
    "+\n+## Running\n+Run `make run`, then open the portal.\n"
)


async def _published(live, agent_token: str) -> int:
    repo = f"range-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {agent_token}"}
    ) as api:
        task = (await api.post("/api/v1/tasks", json={"title": "Say how to run it", "repo": repo})).json()
        assert (await api.post(f"/api/v1/tasks/{task['id']}/claim")).status_code == 200
        body = {"content": ADD_SECTION.format(repo=repo), "kind": "patch"}
        assert (await api.post(f"/api/v1/tasks/{task['id']}/artifacts", json=body)).status_code == 201
    await run_jobs(live)
    return task["id"]


async def test_a_range_comment_reaches_the_agent_over_rest_and_mcp(live, factory):
    agent_token = await factory.token(await factory.user("agent"))
    _, reviewer = await factory.member("reviewer")
    task_id = await _published(live, agent_token)
    agent = {"Authorization": f"Bearer {agent_token}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as rest:
        shown = (await rest.get(f"/api/v1/tasks/{task_id}/changes", headers=reviewer)).json()
        pin = {"version": shown["version"], "head_sha": shown["head_sha"]}
        body = {"path": "README.md", "start_line": 4, "line": 6, "side": "new", **pin}
        r = await rest.post(
            f"/api/v1/tasks/{task_id}/review-comments",
            json={**body, "body": "This whole section: say which port."},
            headers=reviewer,
        )
        assert r.status_code == 201, r.text
        thread = r.json()
        assert (thread["start_line"], thread["line"], thread["side"]) == (4, 6, "new")
        assert "+## Running" in thread["diff_hunk"] and "+Run `make run`" in thread["diff_hunk"]

        # Not a run of lines in one hunk, or an agent writing it: refused, nothing stored.
        for bad, status in (
            ({"start_line": 6, "line": 4}, 422),  # backwards
            ({"start_line": 0, "line": 4}, 422),
            ({"start_line": 1, "line": 9}, 422),  # past the hunk
            ({"start_line": 2, "line": 5, "side": "old"}, 422),  # old lines 4.. do not exist
        ):
            r = await rest.post(
                f"/api/v1/tasks/{task_id}/review-comments",
                json={**body, **bad, "body": "x"},
                headers=reviewer,
            )
            assert r.status_code == status, (bad, r.text)
        r = await rest.post(
            f"/api/v1/tasks/{task_id}/review-comments", json={**body, "body": "mine"}, headers=agent
        )
        assert r.status_code == 403
        listed = (await rest.get(f"/api/v1/tasks/{task_id}/review-comments", headers=agent)).json()
        assert [(t["id"], t["start_line"], t["line"]) for t in listed] == [(thread["id"], 4, 6)]

        # The agent's REST read: the range, the side, the hunk, the version.
        r = await rest.post(f"/api/v1/tasks/{task_id}/feedback/read", json={"since": 0}, headers=agent)
        assert r.status_code == 200, r.text
        (item,) = [i for i in r.json()["items"] if i["kind"] == "review_comment"]
        assert (item["file"], item["start_line"], item["line"], item["side"], item["version"]) == (
            "README.md",
            4,
            6,
            "new",
            pin["version"],
        )
        assert item["thread_id"] == thread["id"] and item["diff_hunk"] == thread["diff_hunk"]
        assert [(t["start_line"], t["line"]) for t in r.json()["threads"]] == [(4, 6)]

        # The review that requests changes carries it too, as a range.
        r = await rest.post(
            f"/api/v1/tasks/{task_id}/reviews",
            json={"verdict": "request_changes", "body": "One thing.", **pin},
            headers=reviewer,
        )
        assert r.status_code == 200 and r.json()["status"] == "IN_PROGRESS", r.text

    async with mcp_over_http(live.url, agent_token) as mcp:
        batch = structured(await mcp.call_tool("read_feedback", {"task_id": task_id, "since": 0}))
    (item,) = [i for i in batch["items"] if i["kind"] == "review_comment"]
    assert (item["file"], item["start_line"], item["line"], item["side"]) == ("README.md", 4, 6, "new")
    assert "+## Running" in item["diff_hunk"]
    (request,) = [i for i in batch["items"] if i["kind"] == "feedback"]
    assert "`README.md` line 4–6 (new, version 1)" in request["body"]
    assert [(c["file"], c["start_line"], c["line"]) for c in request["comments"]] == [("README.md", 4, 6)]
    assert [(t["start_line"], t["line"], t["resolved"]) for t in batch["threads"]] == [(4, 6, False)]


async def test_a_range_of_one_line_is_a_line(live, factory):
    agent_token = await factory.token(await factory.user("agent"))
    _, reviewer = await factory.member("reviewer")
    task_id = await _published(live, agent_token)
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as rest:
        shown = (await rest.get(f"/api/v1/tasks/{task_id}/changes", headers=reviewer)).json()
        body = {
            "path": "README.md",
            "start_line": 5,
            "line": 5,
            "side": "new",
            "body": "Just this heading.",
            "version": shown["version"],
            "head_sha": shown["head_sha"],
        }
        r = await rest.post(f"/api/v1/tasks/{task_id}/review-comments", json=body, headers=reviewer)
        assert r.status_code == 201 and (r.json()["start_line"], r.json()["line"]) == (None, 5), r.text
    async with mcp_over_http(live.url, agent_token) as mcp:
        batch = structured(await mcp.call_tool("read_feedback", {"task_id": task_id}))
    (item,) = [i for i in batch["items"] if i["kind"] == "review_comment"]
    assert (item["start_line"], item["line"]) == (None, 5)
