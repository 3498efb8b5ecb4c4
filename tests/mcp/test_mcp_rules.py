"""The lifecycle's rules reach MCP unchanged: the same stable error codes as REST, races decided by the
database, the code host refusing what it could not publish, leases renewed by the holder's calls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update

from osiris.app import db
from osiris.app.models import Task

from .mcp_helpers import error_code, new_task, ok, token_of

BAD_PATCH = """diff --git a/no/such/file.py b/no/such/file.py
--- a/no/such/file.py
+++ b/no/such/file.py
@@ -1,2 +1,2 @@
-this line is not there
+nor is this one
 context
"""


async def test_submitting_to_a_task_you_do_not_hold_is_not_your_task(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, holder = await factory.member("agent")
    _, intruder = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    async with connect(token_of(holder)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
    async with connect(token_of(intruder)) as client:
        result = await client.call_tool("submit_artifact", {"task_id": task_id, "content": {"a.txt": "x\n"}})
        assert error_code(result) == "not_your_task"
        assert result.structured_content["error"]["status"] == 403
        assert error_code(await client.call_tool("release_task", {"task_id": task_id})) == "not_your_task"
        result = await client.call_tool("post_message", {"task_id": task_id, "body": "mine now?"})
        assert error_code(result) == "not_your_task"
        assert error_code(await client.call_tool("claim_task", {"task_id": task_id})) == "not_claimable"
    r = await rest.get(f"/api/v1/tasks/{task_id}", headers=reviewer)
    assert r.json()["artifact_count"] == 0 and r.json()["messages"] == []


async def test_two_agents_racing_for_one_task(http_mcp, factory, rest):
    _, reviewer = await factory.member("reviewer")
    racers = [await factory.member("agent") for _ in range(2)]
    for _ in range(3):  # a few rounds, each a fresh task
        task_id = await new_task(rest, reviewer)

        async def claim(headers):
            async with http_mcp(token_of(headers)) as client:
                return await client.call_tool("claim_task", {"task_id": task_id})

        results = await asyncio.gather(*(claim(h) for _, h in racers))
        winners = [r for r in results if not r.is_error]
        losers = [r for r in results if r.is_error]
        assert len(winners) == 1 and [error_code(r) for r in losers] == ["not_claimable"]
        holder = winners[0].structured_content["task"]["assignee_id"]
        assert holder in {u.id for u, _ in racers}
        r = await rest.get(f"/api/v1/tasks/{task_id}/events", headers=reviewer)
        assert [e["kind"] for e in r.json()].count("claim") == 1


async def test_artifact_errors_carry_the_rest_codes(connect, factory, rest, settings):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    async with connect(token_of(agent)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
        result = await client.call_tool("submit_artifact", {"task_id": task_id, "content": BAD_PATCH})
        assert error_code(result) == "patch_does_not_apply"
        result = await client.call_tool(
            "submit_artifact", {"task_id": task_id, "content": {"../escape.txt": "x"}, "kind": "files"}
        )
        assert error_code(result) == "invalid_artifact"
        huge = "x" * (settings.tasks.max_artifact_bytes + 1)
        result = await client.call_tool(
            "submit_artifact", {"task_id": task_id, "content": huge, "kind": "text"}
        )
        assert error_code(result) == "too_large"
        assert error_code(await client.call_tool("get_task", {"task_id": 10**9})) == "task_not_found"
        # Nothing was written by the refused submissions; the task is still the agent's to finish.
        task = ok(await client.call_tool("get_task", {"task_id": task_id}))
        assert task["task"]["status"] == "IN_PROGRESS" and task["artifacts"] == []


async def test_invalid_arguments_are_refused_before_anything_runs(http_mcp, factory):
    _, agent = await factory.member("agent")
    async with http_mcp(token_of(agent)) as client:
        for args in ({}, {"task_id": 0}, {"task_id": "seven"}):
            result = await client.call_tool("claim_task", args)
            assert result.is_error, args
        result = await client.call_tool("read_pending_tasks", {"limit": 1000})
        assert result.is_error


async def test_a_repeated_idempotency_key_returns_the_first_submission(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    args = {"task_id": task_id, "content": "Here is the plan.", "kind": "text", "idempotency_key": "k-1"}
    async with connect(token_of(agent)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
        first = ok(await client.call_tool("submit_artifact", args))
        again = ok(await client.call_tool("submit_artifact", args))
    assert first["created"] is True and again["created"] is False
    assert again["version"] == first["version"] == 1


async def test_any_call_by_the_holder_renews_the_lease(connect, factory, rest, runtime, settings):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    _, other = await factory.member("agent")
    task_id = await new_task(rest, reviewer)

    async def lease() -> datetime:
        r = await rest.get(f"/api/v1/tasks/{task_id}", headers=reviewer)
        return datetime.fromisoformat(r.json()["lease_expires_at"])

    async def nearly_expire() -> None:
        async with db.transaction(runtime.sessions) as session:
            await session.execute(
                update(Task)
                .where(Task.id == task_id)
                .values(lease_expires_at=func.now() + timedelta(seconds=5))
            )

    async with connect(token_of(agent)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
        for tool, args in (
            ("get_task", {"task_id": task_id}),
            ("read_feedback", {"task_id": task_id}),
            ("post_message", {"task_id": task_id, "body": "still on it"}),
            ("list_my_tasks", {}),
        ):
            await nearly_expire()
            assert await lease() < datetime.now(UTC) + timedelta(seconds=30)
            ok(await client.call_tool(tool, args))
            assert await lease() > datetime.now(UTC) + timedelta(seconds=settings.tasks.lease_seconds - 60), (
                tool
            )

    await nearly_expire()
    async with connect(token_of(other)) as client:  # someone else looking does not keep it alive
        ok(await client.call_tool("get_task", {"task_id": task_id}))
    assert await lease() < datetime.now(UTC) + timedelta(seconds=30)
