"""Helpers shared by the portal tests: signing in, reading CSRF tokens, WebSocket clients."""

from __future__ import annotations

import asyncio
import re

import httpx

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


# The review form (its approve verdict is the old approve form's pin: version and commit).
APPROVE_FORM = re.compile(r'<form method="post" action="/tasks/\d+/(?:approve|review)".*?</form>', re.DOTALL)
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')


def approve_form(html: str, **extra: str) -> dict[str, str]:
    """The approve form's fields as the page rendered them: its CSRF token and the version and
    commit it approves (an approval is pinned to what the page showed)."""
    match = APPROVE_FORM.search(html)
    assert match, "the page has no approve form"
    return {**dict(HIDDEN.findall(match.group(0))), **extra}
