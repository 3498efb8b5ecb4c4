"""The whole loop an agent goes through, over streamable HTTP and over stdio: claim, submit, changes
requested by a reviewer through REST, feedback read, resubmit, approved by a reviewer: DONE."""

from __future__ import annotations

import secrets

from tests.support.jobs import drain

from .mcp_helpers import error_code, new_task, ok, token_of

README_V1 = {"README.md": "# Thing\n\nRun it.\n"}
README_V2 = {"README.md": "# Thing\n\nRun it with `make run`.\n"}


async def test_claim_submit_feedback_resubmit_approve(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    agent_user, agent = await factory.member("agent")
    # A repository of its own: the worker below publishes to it, and task ids restart every test.
    task_id = await new_task(rest, reviewer, priority="high", repo=f"t-{secrets.token_hex(4)}")

    async with connect(token_of(agent)) as client:
        pending = ok(await client.call_tool("read_pending_tasks", {}))
        assert [t["id"] for t in pending["tasks"]] == [task_id]
        assert pending["tasks"][0]["priority"] == "high"

        claim = ok(await client.call_tool("claim_task", {"task_id": task_id}))
        assert claim["task"]["status"] == "IN_PROGRESS"
        assert claim["task"]["description"] == "Explain how to run the thing."
        assert claim["held_by_you"] is True and claim["task"]["assignee_id"] == agent_user.id
        assert claim["branch"] == f"osiris/task-{task_id}"
        assert claim["base_branch"] and claim["repo"]
        assert claim["lease_expires_at"] and claim["next_steps"]
        assert ok(await client.call_tool("read_pending_tasks", {}))["tasks"] == []
        assert [t["id"] for t in ok(await client.call_tool("list_my_tasks", {}))["tasks"]] == [task_id]

        v1 = ok(
            await client.call_tool(
                "submit_artifact", {"task_id": task_id, "content": README_V1, "summary": "first cut"}
            )
        )
        assert v1["version"] == 1 and v1["status"] == "REVIEW" and v1["created"] is True
        assert v1["branch"] == f"osiris/task-{task_id}" and v1["kind"] == "files"
        assert v1["publish_state"] in ("publishing", "published")
        if v1["publish_state"] == "publishing":
            assert v1["publish_job_id"] is not None
        assert ok(await client.call_tool("read_feedback", {"task_id": task_id}))["items"] == []

        r = await rest.post(
            f"/api/v1/tasks/{task_id}/reject", json={"feedback": "Say which make target."}, headers=reviewer
        )
        assert r.status_code == 200 and r.json()["status"] == "IN_PROGRESS", r.text

        batch = ok(await client.call_tool("read_feedback", {"task_id": task_id}))
        assert batch["task_status"] == "IN_PROGRESS"
        assert [(i["kind"], i["body"]) for i in batch["items"]] == [("feedback", "Say which make target.")]
        assert batch["cursor"] == batch["items"][-1]["id"]
        assert ok(await client.call_tool("read_feedback", {"task_id": task_id}))["items"] == []

        v2 = ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": README_V2}))
        assert v2["version"] == 2 and v2["status"] == "REVIEW"

        # The agent cannot approve its own work: there is no tool for it, and REST refuses its token.
        r = await rest.post(f"/api/v1/tasks/{task_id}/approve", headers=agent)
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        runtime = factory.runtime  # the worker: a version is approvable once published
        await drain(runtime)
        r = await rest.post(f"/api/v1/tasks/{task_id}/approve", json={"comment": "thanks"}, headers=reviewer)
        assert r.status_code == 200 and r.json()["status"] == "DONE", r.text

        done = ok(await client.call_tool("get_task", {"task_id": task_id}))
        assert done["task"]["status"] == "DONE"
        assert [a["version"] for a in done["artifacts"]] == [1, 2]
        assert ok(await client.call_tool("list_my_tasks", {}))["tasks"] == []
        code = error_code(await client.call_tool("submit_artifact", {"task_id": task_id, "content": "more"}))
        assert code == "illegal_transition"


async def test_post_message_and_release(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    async with connect(token_of(agent)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
        posted = ok(await client.call_tool("post_message", {"task_id": task_id, "body": "Which README?"}))
        assert posted["message"]["direction"] == "from_agent"
        assert posted["message"]["body"] == "Which README?"
        r = await rest.post(
            f"/api/v1/tasks/{task_id}/messages", json={"body": "The top one."}, headers=reviewer
        )
        assert r.status_code == 201
        answers = ok(await client.call_tool("read_feedback", {"task_id": task_id}))["items"]
        assert [a["body"] for a in answers] == ["The top one."]

        released = ok(await client.call_tool("release_task", {"task_id": task_id}))
        assert released["task"]["status"] == "PENDING" and released["task"]["assignee_id"] is None
        assert [t["id"] for t in ok(await client.call_tool("read_pending_tasks", {}))["tasks"]] == [task_id]
        assert error_code(await client.call_tool("release_task", {"task_id": task_id})) == "not_your_task"


async def test_the_queue_is_ordered_and_filtered(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    low = await new_task(rest, reviewer, title="low", priority="low")
    urgent = await new_task(rest, reviewer, title="urgent", priority="urgent")
    normal = await new_task(rest, reviewer, title="normal")
    elsewhere = await new_task(rest, reviewer, title="other repo", repo="website", priority="urgent")
    async with connect(token_of(agent)) as client:

        async def queue(**args) -> list[int]:
            return [t["id"] for t in ok(await client.call_tool("read_pending_tasks", args))["tasks"]]

        assert await queue() == [urgent, elsewhere, normal, low]
        assert await queue(limit=2) == [urgent, elsewhere]
        assert await queue(priority="normal") == [urgent, elsewhere, normal]
        assert await queue(repo="website") == [elsewhere]
        assert await queue(repo="website", priority="low") == [elsewhere]
        assert await queue(repo="nowhere") == []
        first = ok(await client.call_tool("read_pending_tasks", {"limit": 1}))["tasks"][0]
        assert first == {
            "id": urgent,
            "title": "urgent",
            "description": "Explain how to run the thing.",
            "priority": "urgent",
            "repo": first["repo"],
            "requester": first["requester"],
            "created_at": first["created_at"],
        }
