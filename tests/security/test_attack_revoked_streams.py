"""A credential that stops being valid takes its open streams with it, on every replica.

Two real servers share the database (one replica each): a token's WebSockets on both close within
seconds of its revocation on one; signing out closes that browser's sockets; a user deactivated in
the database is noticed by the periodic recheck; one token holds at most `live_max_per_credential`
sockets; and MCP refuses a revoked token's next call and ends its open notification stream.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from sqlalchemy import select, update
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from osiris.app import db, security
from osiris.app.models import ApiToken, User
from tests.support.servers import MCP_ACCEPT, MCP_INITIALIZE, LiveServer

pytestmark = pytest.mark.asyncio
CAP = 3
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def replicas(settings, app):
    """Two replicas on the run's database (the in-process `app` bootstrapped it first)."""
    servers = [
        LiveServer(settings, live={"max_per_credential": CAP, "recheck_seconds": 1.0}) for _ in range(2)
    ]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


async def open_socket(base_url: str, path: str = "/ws/board", **headers: str):
    url = base_url.replace("http://", "ws://") + path
    return await connect(url, additional_headers=headers, open_timeout=10)


async def until_ready(ws) -> None:
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "ready":
        pass


async def closed_within(ws, seconds: float) -> tuple[int | None, str | None]:
    """Read until the server closes the socket; fail if it is still open after `seconds`."""
    deadline = time.monotonic() + seconds
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
    return ws.close_code, ws.close_reason


async def token_id(runtime, secret: str) -> int:
    async with runtime.sessions() as session:
        return await session.scalar(
            select(ApiToken.id).where(ApiToken.token_hash == security.hash_token(secret))
        )


async def test_revoking_a_token_closes_its_sockets_on_every_replica(replicas, factory):
    a, b = replicas
    agent = await factory.user("agent")
    token = await factory.token(agent)
    other = await factory.token(agent)  # the same user's other token keeps its socket
    _, admin = await factory.member("admin")
    bearer = {"Authorization": f"Bearer {token}"}
    sockets = [await open_socket(server.url, **bearer) for server in (a, b, a, b)]
    survivor = await open_socket(b.url, Authorization=f"Bearer {other}")
    for ws in [*sockets, survivor]:
        await until_ready(ws)

    async with httpx.AsyncClient(base_url=a.url, headers=admin) as api:
        r = await api.delete(f"/api/v1/tokens/{await token_id(factory.runtime, token)}")
        assert r.status_code == 200, r.text
    started = time.monotonic()
    closes = await asyncio.gather(*(closed_within(ws, 5) for ws in sockets))
    assert closes == [(1008, "token revoked")] * 4
    assert time.monotonic() - started < 5
    await survivor.ping()  # still open
    await survivor.close()
    # And the revoked token cannot open a new one on either replica (refused at the handshake).
    for server in (a, b):
        with pytest.raises(InvalidStatus) as refused:
            await open_socket(server.url, **bearer)
        assert refused.value.response.status_code == 403


async def test_signing_out_closes_that_browsers_sockets_on_the_other_replica(replicas, factory):
    a, b = replicas
    user = await factory.user("reviewer", password=PASSWORD)
    async with httpx.AsyncClient(base_url=a.url) as browser:
        page = await browser.get("/login")
        form = {"username": user.username, "password": PASSWORD, "csrf_token": CSRF.search(page.text)[1]}
        assert (await browser.post("/login", data=form)).status_code == 303
        cookie = f"osiris_session={browser.cookies['osiris_session']}"
        ws = await open_socket(b.url, Cookie=cookie)
        await until_ready(ws)
        csrf = CSRF.search((await browser.get("/")).text)[1]
        assert (await browser.post("/logout", data={"csrf_token": csrf})).status_code == 303
    assert await closed_within(ws, 5) == (1008, "signed out")


async def test_a_deactivated_users_socket_closes_at_the_next_recheck(replicas, factory):
    """No NOTIFY announces a user switched off in the database: the recheck (every second here) does."""
    a, _ = replicas
    user = await factory.user("reviewer", password=PASSWORD)
    async with httpx.AsyncClient(base_url=a.url) as c:
        r = await c.post("/api/v1/auth/token", data={"username": user.username, "password": PASSWORD})
        assert r.status_code == 200, r.text
    ws = await open_socket(a.url, Authorization=f"Bearer {r.json()['access_token']}")  # a JWT
    await until_ready(ws)
    async with db.transaction(factory.runtime.sessions) as session:
        await session.execute(update(User).where(User.id == user.id).values(is_active=False))
    assert await closed_within(ws, 5) == (1008, "credential no longer valid")


async def test_one_token_holds_at_most_the_cap_of_sockets(replicas, factory):
    a, _ = replicas
    token = await factory.token(await factory.user("agent"))
    bearer = {"Authorization": f"Bearer {token}"}
    held = [await open_socket(a.url, **bearer) for _ in range(CAP)]
    for ws in held:
        await until_ready(ws)
    refused = await open_socket(a.url, **bearer)
    code, reason = await closed_within(refused, 5)
    assert code == 1008 and reason == f"at most {CAP} live connections per credential"
    await held.pop().close()
    for _ in range(50):  # the server notices the close a moment later
        again = await open_socket(a.url, **bearer)
        try:
            await until_ready(again)
            break
        except ConnectionClosed:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("a freed slot was never given back")
    for ws in [*held, again]:
        await ws.close()


MCP_HEADERS = MCP_ACCEPT


async def _mcp_session(api: httpx.AsyncClient) -> dict[str, str]:
    r = await api.post("/mcp", json=MCP_INITIALIZE, headers=MCP_HEADERS)
    assert r.status_code == 200, r.text
    headers = {**MCP_HEADERS, "mcp-session-id": r.headers["mcp-session-id"]}
    if version := r.headers.get("mcp-protocol-version"):
        headers["mcp-protocol-version"] = version
    r = await api.post(
        "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    assert r.status_code == 202, r.text
    return headers


async def _tools_list(api: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await api.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)


async def test_a_revoked_tokens_mcp_calls_and_notification_stream_end(replicas, factory):
    a, b = replicas
    token = await factory.token(await factory.user("agent"))
    _, admin = await factory.member("admin")
    async with httpx.AsyncClient(base_url=b.url, headers={"Authorization": f"Bearer {token}"}) as api:
        headers = await _mcp_session(api)
        assert (await _tools_list(api, headers)).status_code == 200
        get_headers = {k: v for k, v in headers.items() if k != "Content-Type"}
        get_headers["Accept"] = "text/event-stream"
        async with api.stream("GET", "/mcp", headers=get_headers, timeout=30) as stream:
            assert stream.status_code == 200
            async with httpx.AsyncClient(base_url=a.url, headers=admin) as admin_api:
                r = await admin_api.delete(f"/api/v1/tokens/{await token_id(factory.runtime, token)}")
                assert r.status_code == 200
            started = time.monotonic()

            async def drain() -> None:
                async for _ in stream.aiter_bytes():
                    pass

            await asyncio.wait_for(drain(), 5)  # the stream ends: the server finished the response
            assert time.monotonic() - started < 5
        refused = await _tools_list(api, headers)
        assert refused.status_code == 401, refused.text
