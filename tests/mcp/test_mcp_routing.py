"""Routing reaches MCP: read_pending_tasks shows, and claim_task allows, only what an agent's skills
match (over streamable HTTP and over stdio through REST)."""

from __future__ import annotations

from .mcp_helpers import error_code, new_task, ok, token_of


async def test_an_agent_sees_and_claims_only_tasks_its_skills_match(connect, factory, rest):
    _, admin = await factory.member("admin")
    _, novice = await factory.member("agent")
    expert, expert_h = await factory.member("agent")
    labelled = await new_task(rest, admin, title="Tune the query planner", skills=["postgres"])
    plain = await new_task(rest, admin, title="Fix a typo")
    r = await rest.put(f"/api/v1/users/{expert.id}/skills", json={"skills": ["postgres"]}, headers=admin)
    assert r.status_code == 200, r.text

    async with connect(token_of(novice)) as client:
        seen = ok(await client.call_tool("read_pending_tasks", {}))
        assert [t["id"] for t in seen["tasks"]] == [plain]
        assert error_code(await client.call_tool("claim_task", {"task_id": labelled})) == "not_claimable"
    async with connect(token_of(expert_h)) as client:
        seen = ok(await client.call_tool("read_pending_tasks", {}))
        assert {t["id"] for t in seen["tasks"]} == {labelled, plain}
        claimed = ok(await client.call_tool("claim_task", {"task_id": labelled}))
        assert claimed["task"]["assignee_id"] == expert.id
