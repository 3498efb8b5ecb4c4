"""No polling needed: a client subscribed to osiris://tasks/{id} is told when the task changes state
or feedback arrives — also when the change is committed by another replica (LISTEN/NOTIFY)."""

from __future__ import annotations

import warnings

import anyio
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import ResourceUpdatedNotification

from osiris.mcp.subscriptions import task_uri

from .mcp_helpers import new_task, ok, token_of


async def _next_update(subscription, uri: str) -> None:
    with anyio.fail_after(15):
        async for event in subscription:
            if event == ResourceUpdated(uri=uri):
                return


async def test_a_listening_client_hears_changes_made_on_another_replica(connect, factory, rest, client):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    uri = task_uri(task_id)
    messages = f"/api/v1/tasks/{task_id}/messages"
    submission = {"task_id": task_id, "content": "done", "kind": "text"}
    async with connect(token_of(agent)) as mcp:
        ok(await mcp.call_tool("claim_task", {"task_id": task_id}))
        async with mcp.listen(resource_subscriptions=[uri]) as subscription:
            assert subscription.honored.resource_subscriptions == [uri]
            # Feedback arrives through `client`: the test's own app instance, not the server the MCP
            # client is connected to, so only PostgreSQL NOTIFY can carry the news across.
            r = await client.post(messages, json={"body": "ping"}, headers=reviewer)
            assert r.status_code == 201
            await _next_update(subscription, uri)

            ok(await mcp.call_tool("submit_artifact", submission))
            await _next_update(subscription, uri)
            r = await client.post(
                f"/api/v1/tasks/{task_id}/reject", json={"feedback": "more"}, headers=reviewer
            )
            assert r.status_code == 200
            await _next_update(subscription, uri)
        batch = ok(await mcp.call_tool("read_feedback", {"task_id": task_id}))
        assert [i["body"] for i in batch["items"]] == ["ping", "more"]


async def test_handshake_era_clients_subscribe_with_resources_subscribe(live_server, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    task_id = await new_task(rest, reviewer)
    uri = task_uri(task_id)
    updates: list[str] = []
    arrived = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            arrived.set()

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token_of(agent)}"})
    transport = streamable_http_client(f"{live_server.url}/mcp", http_client=http)
    async with http, Client(transport, mode="legacy", message_handler=on_message) as mcp:
        assert mcp.protocol_version < "2026"
        assert mcp.server_capabilities.resources.subscribe is True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # resources/subscribe is the deprecated, earlier-era way
            await mcp.subscribe_resource(uri)
        ok(await mcp.call_tool("claim_task", {"task_id": task_id}))
        with anyio.fail_after(15):
            await arrived.wait()
        assert updates[0] == uri


async def test_subscribing_to_another_organizations_task_is_refused(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(rest, reviewer)
    _, outsider = await factory.member("agent", org=await factory.org("elsewhere"))
    async with connect(token_of(outsider)) as mcp:
        with pytest.raises(MCPError, match="task_not_found"):
            async with mcp.listen(resource_subscriptions=[task_uri(task_id)]):
                pass
        with pytest.raises(MCPError, match="not a task resource"):
            async with mcp.listen(resource_subscriptions=["file:///etc/passwd"]):
                pass
