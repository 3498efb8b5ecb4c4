"""read_feedback: what reached the agent since its last read, oldest first, with review context."""

from __future__ import annotations

from osiris.app import db, lifecycle, task_queries
from osiris.app.actors import Actor, requester_actor

from .mcp_helpers import error_code, new_task, ok, token_of


async def _say(runtime, actor: Actor, task_id: int, body: str, *, source: str, meta: dict | None = None):
    """A message as a channel or the GitHub bridge records it (through the lifecycle service)."""
    async with db.transaction(runtime.sessions) as session:
        task = await task_queries.get_task(session, actor, task_id)
        await lifecycle.add_message(session, task, actor, body=body, source=source, meta=meta)


async def test_review_comments_follow_ups_and_the_cursor(connect, factory, rest, runtime):
    reviewer_user, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    async with connect(token_of(agent)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
        await _say(
            runtime,
            factory.actor(reviewer_user),
            task_id,
            "Use a heading here.",
            source="github_review",
            meta={
                "path": "README.md",
                "line": 3,
                "diff_hunk": "@@ -1,3 +1,3 @@\n-# old\n+# new",
                "url": "https://x",
            },
        )
        org_id = reviewer_user.org_id
        await _say(
            runtime, requester_actor(org_id, "+15551234567"), task_id, "Also the FAQ?", source="whatsapp"
        )
        r = await rest.post(
            f"/api/v1/tasks/{task_id}/messages", json={"body": "From the portal."}, headers=reviewer
        )
        assert r.status_code == 201
        ok(await client.call_tool("post_message", {"task_id": task_id, "body": "my own words"}))

        batch = ok(await client.call_tool("read_feedback", {"task_id": task_id}))
        items = batch["items"]
        assert [i["body"] for i in items] == ["Use a heading here.", "Also the FAQ?", "From the portal."]
        assert [i["id"] for i in items] == sorted(i["id"] for i in items)
        comment = items[0]
        assert comment["kind"] == "review_comment" and comment["source"] == "github_review"
        assert (comment["file"], comment["line"]) == ("README.md", 3)
        assert comment["diff_hunk"].startswith("@@ -1,3")
        assert items[1]["source"] == "whatsapp" and items[1]["author"] == "+15551234567"
        assert batch["cursor"] == items[-1]["id"]

        assert ok(await client.call_tool("read_feedback", {"task_id": task_id}))["items"] == []
        again = ok(await client.call_tool("read_feedback", {"task_id": task_id, "since": items[0]["id"]}))
        assert [i["body"] for i in again["items"]] == ["Also the FAQ?", "From the portal."]

    # The cursor is the reader's own: a reviewer reading does not move the agent's.
    async with connect(token_of(reviewer)) as client:
        mine = ok(await client.call_tool("read_feedback", {"task_id": task_id}))
        assert len(mine["items"]) == 3


async def test_changes_requested_carries_the_inline_comments(http_mcp, factory, rest, runtime):
    reviewer_user, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    async with http_mcp(token_of(agent)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
        ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": {"README.md": "# a\n"}}))
        inline = [
            {"id": 9, "path": "README.md", "line": 1, "diff_hunk": "@@ -0,0 +1 @@\n+# a", "body": "Longer."}
        ]
        async with db.transaction(runtime.sessions) as session:
            await lifecycle.request_changes(
                session,
                factory.actor(reviewer_user),
                task_id,
                feedback="Changes requested on GitHub.",
                lease_seconds=600,
                source="github_review",
                meta={"comments": inline, "url": "https://github.com/o/r/pull/1#review"},
            )
        (item,) = ok(await client.call_tool("read_feedback", {"task_id": task_id}))["items"]
        assert item["kind"] == "feedback"
        # A GitHub review's comments name no side, version or portal thread: those stay None.
        assert [{k: v for k, v in c.items() if v is not None} for c in item["comments"]] == [
            {"file": "README.md", "line": 1, "diff_hunk": "@@ -0,0 +1 @@\n+# a", "body": "Longer."}
        ]


async def test_a_new_holder_gets_earlier_feedback_with_the_claim(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, first = await factory.member("agent")
    _, second = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    async with connect(token_of(first)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
        ok(
            await client.call_tool(
                "submit_artifact", {"task_id": task_id, "content": "A plan.", "kind": "text"}
            )
        )
    r = await rest.post(f"/api/v1/tasks/{task_id}/reject", json={"feedback": "Too vague."}, headers=reviewer)
    assert r.status_code == 200
    async with connect(token_of(first)) as client:
        ok(await client.call_tool("release_task", {"task_id": task_id}))
    async with connect(token_of(second)) as client:
        claim = ok(await client.call_tool("claim_task", {"task_id": task_id}))
        assert [f["body"] for f in claim["feedback"]] == ["Too vague."]
        assert [a["version"] for a in claim["artifacts"]] == [1]
        assert ok(await client.call_tool("read_feedback", {"task_id": task_id}))["items"] == []
        assert error_code(await client.call_tool("read_feedback", {"task_id": 10**9})) == "task_not_found"
