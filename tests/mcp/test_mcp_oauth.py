"""The official MCP client's OAuth flow against a running OSIRIS: the SDK's client credentials
provider discovers the protected-resource metadata (RFC 9728), OSIRIS's authorization-server
metadata (RFC 8414), gets an audience-bound token from /oauth/token and calls tools with it; scopes
are enforced per tool; a revoked client's token stops at once."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from mcp.client import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from tests.support.servers import MCP_ACCEPT, MCP_INITIALIZE

from .mcp_helpers import error_code, new_task, ok

ACCEPT, INITIALIZE = MCP_ACCEPT, MCP_INITIALIZE


class MemoryStorage:
    """The SDK's TokenStorage, in memory: what the flow obtained, for the test to look at."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@asynccontextmanager
async def oauth_client(
    base_url: str, client_id: str, secret: str, storage: MemoryStorage, *, method: str = "client_secret_basic"
) -> AsyncIterator[Client]:
    provider = ClientCredentialsOAuthProvider(
        server_url=f"{base_url}/mcp",
        storage=storage,
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method=method,  # type: ignore[arg-type]
        issuer=base_url,
    )
    http = create_mcp_http_client(auth=provider)
    async with http, Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client:
        yield client


async def _register(rest: httpx.AsyncClient, factory, scopes: list[str] | None = None):
    _, admin = await factory.member("admin")
    bot, _ = await factory.member("agent")
    body = {"username": bot.username, **({"scopes": scopes} if scopes is not None else {})}
    r = await rest.post("/api/v1/oauth-clients", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return bot, admin, r.json()


async def test_metadata_points_at_osiris_itself(rest, live_server):
    prm = (await rest.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert prm["resource"] == f"{live_server.url}/mcp"
    assert prm["authorization_servers"] == [live_server.url]
    assert prm["scopes_supported"] == ["tasks:read", "tasks:claim", "tasks:submit", "tasks:message"]
    asm = (await rest.get("/.well-known/oauth-authorization-server")).json()
    assert asm["issuer"] == live_server.url
    assert asm["token_endpoint"] == f"{live_server.url}/oauth/token"
    assert "client_credentials" in asm["grant_types_supported"]


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_the_sdks_client_credentials_flow_end_to_end(rest, live_server, factory, method):
    bot, _admin, made = await _register(rest, factory)
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(rest, reviewer)
    storage = MemoryStorage()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # issuer given: no deprecation path taken
        async with oauth_client(
            live_server.url, made["client_id"], made["client_secret"], storage, method=method
        ) as c:
            pending = ok(await c.call_tool("read_pending_tasks", {}))
            assert task_id in [t["id"] for t in pending["tasks"]]
            claimed = ok(await c.call_tool("claim_task", {"task_id": task_id}))
            assert claimed["task"]["id"] == task_id if "task" in claimed else claimed["id"] == task_id
            sub = ok(
                await c.call_tool("submit_artifact", {"task_id": task_id, "content": "notes", "kind": "text"})
            )
            assert sub["version"] == 1
    assert storage.tokens is not None and storage.tokens.access_token.startswith("osa_")
    # the flow asked for what the resource lists, narrowed to what the client holds
    assert storage.tokens.scope == "tasks:read tasks:claim tasks:submit tasks:message"
    # the token it got names the MCP endpoint: the REST API does not take it
    r = await rest.get("/api/v1/tasks", headers={"Authorization": f"Bearer {storage.tokens.access_token}"})
    assert r.status_code == 401


async def test_a_tool_outside_the_tokens_scopes_is_refused(rest, live_server, factory):
    _bot, _admin, made = await _register(rest, factory, scopes=["tasks:read", "tasks:claim"])
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(rest, reviewer)
    async with oauth_client(live_server.url, made["client_id"], made["client_secret"], MemoryStorage()) as c:
        ok(await c.call_tool("claim_task", {"task_id": task_id}))
        result = await c.call_tool(
            "submit_artifact", {"task_id": task_id, "content": "notes", "kind": "text"}
        )
        assert error_code(result) == "insufficient_scope"
        assert "tasks:submit" in result.content[0].text
        assert (
            error_code(await c.call_tool("post_message", {"task_id": task_id, "body": "hi"}))
            == "insufficient_scope"
        )


async def test_a_rest_token_is_refused_on_mcp(rest, live_server, factory):
    _bot, _admin, made = await _register(rest, factory)
    r = await rest.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": f"{live_server.url}/api/v1"},
        auth=(made["client_id"], made["client_secret"]),
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = await rest.post("/mcp", json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_revoking_the_client_ends_its_mcp_token_at_once(rest, live_server, factory):
    _bot, admin, made = await _register(rest, factory)
    r = await rest.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": f"{live_server.url}/mcp"},
        auth=(made["client_id"], made["client_secret"]),
    )
    token = r.json()["access_token"]
    headers = {**ACCEPT, "Authorization": f"Bearer {token}"}
    assert (await rest.post("/mcp", json=INITIALIZE, headers=headers)).status_code == 200
    r = await rest.delete(f"/api/v1/oauth-clients/{made['client_id']}", headers=admin)
    assert r.status_code == 200
    # the live server evicts its cached copy when the NOTIFY arrives (the revoking process at once)
    for _ in range(50):
        r = await rest.post("/mcp", json=INITIALIZE, headers=headers)
        if r.status_code == 401:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 401
    # and a replay later is refused too
    assert (await rest.post("/mcp", json=INITIALIZE, headers=headers)).status_code == 401


async def test_a_revoked_clients_open_stream_is_closed(rest, live_server, factory):
    """The notification stream (GET /mcp) of a token ends when its client is revoked."""
    _bot, admin, made = await _register(rest, factory)
    storage = MemoryStorage()
    async with oauth_client(live_server.url, made["client_id"], made["client_secret"], storage) as c:
        ok(await c.call_tool("list_my_tasks", {}))
        open_streams = live_server.runtime.services.open_streams
        from osiris.app import security, streams

        key = streams.token_key(storage.tokens.access_token)
        assert key == f"token:{security.hash_token(storage.tokens.access_token)}"
        r = await rest.delete(f"/api/v1/oauth-clients/{made['client_id']}", headers=admin)
        assert r.status_code == 200
        for _ in range(50):
            if open_streams.count(key) == 0:
                break
            await asyncio.sleep(0.1)
        assert open_streams.count(key) == 0
