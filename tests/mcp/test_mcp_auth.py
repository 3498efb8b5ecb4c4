"""Who may use /mcp: bearer tokens through the SDK's auth (401 + protected-resource metadata), one
organization per token, humans read but cannot act as agents, and DNS-rebinding protection."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from osiris.app import accounts, db
from tests.support.servers import MCP_ACCEPT, MCP_INITIALIZE

from .mcp_helpers import error_code, new_task, ok, osiris_command, token_of

ACCEPT, INITIALIZE = MCP_ACCEPT, MCP_INITIALIZE


async def test_no_token_is_401_with_resource_metadata(rest, live_server):
    r = await rest.post("/mcp", json=INITIALIZE, headers=ACCEPT)
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    metadata_url = f"{live_server.url}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in challenge

    metadata = (await rest.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert metadata["resource"] == f"{live_server.url}/mcp"
    assert metadata["authorization_servers"] == [live_server.url]
    assert metadata["bearer_methods_supported"] == ["header"]


@pytest.mark.parametrize("token", ["osr_not-a-real-token", "not-even-a-jwt", "Basic-looking"])
async def test_bad_token_is_401(rest, token):
    r = await rest.post("/mcp", json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_revoked_token_is_401(rest, factory, runtime):
    user, agent = await factory.member("agent")
    r = await rest.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **agent})
    assert r.status_code == 200, r.text
    async with db.transaction(runtime.sessions) as session:
        token = (await accounts.list_tokens(session, factory.actor(user)))[0]
        await accounts.revoke_token(session, factory.actor(user), token.id)
    # Replicas cache tokens briefly; the revocation's NOTIFY evicts them within moments.
    for _ in range(50):
        r = await rest.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **agent})
        if r.status_code == 401:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 401


async def test_the_official_client_is_refused_without_a_valid_token(http_mcp):
    with pytest.raises(ExceptionGroup) as caught:
        async with http_mcp("osr_wrong") as client:
            await client.list_tools()
    assert caught.group_contains(MCPError, match="error response")


async def test_a_non_bearer_scheme_is_401(rest, factory):
    _, agent = await factory.member("agent")
    basic = {"Authorization": "Basic " + token_of(agent)}
    r = await rest.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **basic})
    assert r.status_code == 401


async def test_a_token_from_another_organization_sees_nothing(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(rest, reviewer)
    other = await factory.org("elsewhere")
    _, outsider = await factory.member("agent", org=other)
    async with connect(token_of(outsider)) as client:
        assert ok(await client.call_tool("read_pending_tasks", {}))["tasks"] == []
        for tool in ("claim_task", "get_task", "read_feedback", "release_task"):
            assert error_code(await client.call_tool(tool, {"task_id": task_id})) == "task_not_found", tool
        result = await client.call_tool("submit_artifact", {"task_id": task_id, "content": "x"})
        assert error_code(result) == "task_not_found"
        result = await client.call_tool("post_message", {"task_id": task_id, "body": "hello?"})
        assert error_code(result) == "task_not_found"
        with pytest.raises(MCPError, match="task_not_found"):
            await client.read_resource(f"osiris://tasks/{task_id}")
    r = await rest.get(f"/api/v1/tasks/{task_id}", headers=reviewer)
    assert r.json()["status"] == "PENDING" and r.json()["messages"] == []


async def test_humans_may_read_but_not_act_as_agents(http_mcp, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, admin = await factory.member("admin")
    task_id = await new_task(rest, reviewer)
    for human in (reviewer, admin):
        async with http_mcp(token_of(human)) as client:
            assert [t["id"] for t in ok(await client.call_tool("read_pending_tasks", {}))["tasks"]] == [
                task_id
            ]
            assert ok(await client.call_tool("get_task", {"task_id": task_id}))["held_by_you"] is False
            assert error_code(await client.call_tool("claim_task", {"task_id": task_id})) == "forbidden"
            result = await client.call_tool("submit_artifact", {"task_id": task_id, "content": "x"})
            assert error_code(result) == "forbidden"


async def test_sessions_belong_to_the_token_that_opened_them(rest, factory):
    _, first = await factory.member("agent")
    _, second = await factory.member("agent")
    r = await rest.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **first})
    session_id = r.headers["mcp-session-id"]
    r = await rest.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        headers={**ACCEPT, **second, "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"},
    )
    assert r.status_code == 404


async def test_dns_rebinding_protection_refuses_foreign_hosts_and_origins(live_server, factory):
    _, agent = await factory.member("agent")
    headers = {**ACCEPT, **agent}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as raw:
        r = await raw.post("/mcp", json=INITIALIZE, headers={**headers, "Host": "evil.example.com"})
        assert r.status_code == 421
        r = await raw.post("/mcp", json=INITIALIZE, headers={**headers, "Origin": "http://evil.example.com"})
        assert r.status_code == 403
        modern = {**headers, "Origin": "https://evil.example.com", "mcp-protocol-version": "2026-07-28"}
        r = await raw.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=modern)
        assert r.status_code == 403
        # Local tools (an inspector on localhost) and the server's own public origin are allowed.
        for origin in ("http://localhost:6274", live_server.url):
            r = await raw.post("/mcp", json=INITIALIZE, headers={**headers, "Origin": origin})
            assert r.status_code == 200, (origin, r.text)


async def test_concurrent_sessions_of_many_agents(http_mcp, factory, rest):
    _, reviewer = await factory.member("reviewer")
    ids = [await new_task(rest, reviewer, title=f"task {n}") for n in range(5)]
    agents = [await factory.member("agent") for _ in range(5)]

    async def work(headers, task_id):
        async with http_mcp(token_of(headers)) as client:
            return ok(await client.call_tool("claim_task", {"task_id": task_id}))["task"]["assignee_id"]

    holders = await asyncio.gather(*(work(h, t) for (_, h), t in zip(agents, ids, strict=True)))
    assert holders == [u.id for u, _ in agents]


async def test_osiris_mcp_reports_a_bad_token_on_every_call(stdio_mcp):
    async with stdio_mcp("osr_wrong") as client:
        assert error_code(await client.call_tool("read_pending_tasks", {})) == "unauthenticated"
        assert error_code(await client.call_tool("claim_task", {"task_id": 1})) == "unauthenticated"


async def test_osiris_mcp_needs_a_token(live_server):
    command, *args = osiris_command()
    env = {**os.environ, "OSIRIS_URL": live_server.url}
    env.pop("OSIRIS_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        command, *args, env=env, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"OSIRIS_TOKEN" in stderr


async def test_a_humans_jwt_from_the_login_endpoint_works_too(http_mcp, factory, rest):
    reviewer = await factory.user("reviewer", password="a-long-password")
    r = await rest.post(
        "/api/v1/auth/token", data={"username": reviewer.username, "password": "a-long-password"}
    )
    assert r.status_code == 200, r.text
    async with http_mcp(r.json()["access_token"]) as client:
        assert ok(await client.call_tool("list_my_tasks", {}))["tasks"] == []
