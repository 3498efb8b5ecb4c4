"""Portal fixtures: signed-in HTTP clients over the ASGI app, a real uvicorn server for sockets and the
browser (started in a thread of its own, with its own event loop and app instance), and the browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from osiris.app.config import Settings
from osiris.app.models import Role, User
from osiris.portal.live import forget_events
from tests.support.portal_helpers import PASSWORD, sign_in
from tests.support.servers import LiveServer

from .browser_helpers import ARGS, CHROMIUM


@pytest.fixture
async def person(factory):
    """Make a human who can sign in: `await person("reviewer")`."""

    async def make(role: Role | str = Role.REVIEWER, *, org=None) -> User:
        return await factory.user(role, org=org, password=PASSWORD)

    return make


@pytest.fixture
async def browser_client(app) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies, as a browser does (the `client` fixture is for the REST API)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def signed_in(browser_client, person):
    """A browser client signed in as a new user of the given role."""

    async def make(role: Role | str = Role.REVIEWER, *, org=None) -> tuple[httpx.AsyncClient, User]:
        user = await person(role, org=org)
        r = await sign_in(browser_client, user.username)
        assert r.status_code == 303, r.text
        return browser_client, user

    return make


# --- a real server ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server(settings: Settings, database_url: str) -> Iterator[LiveServer]:
    # A short send timeout keeps the slow-client test quick (the default is a few seconds); no pings,
    # so a client that stops reading is dropped by the send timeout alone.
    server = LiveServer(
        settings, portal={"ws_send_timeout_seconds": 2.0}, uvicorn_options={"ws_ping_interval": None}
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def live(live_server: LiveServer) -> LiveServer:
    # Tests truncate tables and restart ids; a real database never reuses an event id.
    forget_events(live_server.runtime)
    return live_server


@pytest.fixture
async def browser():
    """Debian's chromium, headless, through Playwright (a test module skips without it: BROWSER_TEST)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            await instance.close()
