"""X-Forwarded-For is believed only from OSIRIS_TRUSTED_PROXIES: a sender reaching the server from
loopback (through a tunnel that passes the header on) cannot dodge the login rate limit by naming a
new address each time. The servers run with the options `osiris serve` gives uvicorn."""

from __future__ import annotations

import httpx
import pytest

from osiris.cli import proxy_options
from tests.support.servers import LiveServer

pytestmark = pytest.mark.asyncio
RATE = 3


def serve_like_the_cli(settings, **overrides) -> LiveServer:
    configured = settings.model_copy(update={"auth": {"login_rate_per_minute": RATE}}).model_copy(
        update=overrides
    )
    return LiveServer(configured, uvicorn_options=proxy_options(configured))


async def attempts(server: LiveServer, username: str, n: int) -> list[int]:
    codes = []
    async with httpx.AsyncClient(base_url=server.url) as c:
        for i in range(n):
            r = await c.post(
                "/api/v1/auth/token",
                data={"username": username, "password": "wrong"},
                headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
            )
            codes.append(r.status_code)
    return codes


@pytest.fixture(scope="module")
def untrusting(settings, app):
    server = serve_like_the_cli(settings)  # the default: no trusted proxies
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def behind_a_proxy(settings, app):
    server = serve_like_the_cli(settings, server={"trusted_proxies": ["127.0.0.0/8"]})
    server.start()
    yield server
    server.stop()


async def test_a_spoofed_forwarded_for_from_loopback_is_ignored(untrusting, factory):
    user = await factory.user("reviewer")
    assert proxy_options(untrusting.settings)["proxy_headers"] is False
    assert await attempts(untrusting, user.username, RATE + 2) == [401] * RATE + [429, 429]


async def test_a_trusted_proxys_forwarded_for_names_the_client(behind_a_proxy, factory):
    """From a listed proxy the header counts: each forwarded client has its own budget."""
    user = await factory.user("reviewer")
    assert await attempts(behind_a_proxy, user.username, RATE + 2) == [401] * (RATE + 2)
