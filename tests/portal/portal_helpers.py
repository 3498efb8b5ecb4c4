"""Helpers shared by the portal tests: signing in, reading CSRF tokens, a live server."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import httpx
import uvicorn

from osiris.app.config import Settings
from osiris.app.main import create_app

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login", data={"username": username, "password": password, "csrf_token": csrf_of(page.text)}
    )


async def form_token(client: httpx.AsyncClient, path: str = "/") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


class LiveServer:
    """uvicorn serving a fresh create_app() on a free port, in a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short send timeout keeps the slow-client test quick; the default is a few seconds.
        self.settings = settings.model_copy(
            update={"public_url": self.url, "portal_ws_send_timeout_seconds": 2.0}
        )
        self.app = create_app(self.settings, run_background=False)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", ws_ping_interval=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def forget_cached_events(self) -> None:
        # Tests truncate tables and restart ids; a real database never reuses an event id.
        self.app.state.runtime.services.pop("portal_events", None)


# --- WebSocket clients -----------------------------------------------------------------------------


async def session_cookie(base_url: str, username: str) -> str:
    """Sign in over real HTTP and return the session cookie's value."""
    async with httpx.AsyncClient(base_url=base_url) as c:
        r = await sign_in(c, username)
        assert r.status_code == 303, r.text
        return c.cookies["osiris_session"]


async def open_socket(
    base_url: str,
    path: str,
    *,
    cookie: str | None = None,
    token: str | None = None,
    after: int | None = None,
    origin: str | None = None,
):
    from websockets.asyncio.client import connect

    url = base_url.replace("http://", "ws://") + path + (f"?after={after}" if after is not None else "")
    headers = {}
    if cookie:
        headers["Cookie"] = f"osiris_session={cookie}"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return await connect(url, additional_headers=headers, origin=origin, open_timeout=10, max_size=2**22)


async def next_message(ws, within: float = 10) -> dict:
    import json

    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def until_ready(ws) -> list[dict]:
    """Events replayed before the server's `ready`."""
    replayed = []
    while (msg := await next_message(ws))["type"] != "ready":
        replayed.append(msg)
    return replayed


async def nothing_more(ws, wait: float = 0.5) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return True
    return False


async def metric(base_url: str, name: str) -> float:
    """One sample from the server's /metrics (0 when absent)."""
    async with httpx.AsyncClient(base_url=base_url) as c:
        text = (await c.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
