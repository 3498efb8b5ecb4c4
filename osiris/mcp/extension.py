"""Streamable HTTP MCP at /mcp inside the main app, its session manager run in the app's lifespan."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from osiris.app import streams
from osiris.app.config import Settings
from osiris.app.runtime import Runtime
from osiris.mcp import routes
from osiris.mcp.auth import (
    MCP_PATH,
    OsirisTokenVerifier,
    auth_settings,
    protected_resource_routes,
    transport_security,
)
from osiris.mcp.gateway import DatabaseGateway
from osiris.mcp.server import build_mcp_server
from osiris.mcp.subscriptions import TaskSubscriptions

log = logging.getLogger(__name__)


def install(app: FastAPI, settings: Settings) -> None:
    def runtime() -> Runtime:
        return app.state.runtime

    gateway = DatabaseGateway(runtime)
    subscriptions = TaskSubscriptions(gateway)
    auth = auth_settings(settings)
    server = build_mcp_server(
        gateway, subscriptions=subscriptions, token_verifier=OsirisTokenVerifier(runtime), auth=auth
    )
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=transport_security(settings),
        # Same ceiling as the REST API: an artifact may be up to max_artifact_bytes, JSON-escaped.
        max_request_body_size=2 * settings.max_artifact_bytes + 65536,
    )
    # Plain routes, not a Mount: a Mount would answer /mcp with a redirect to /mcp/. The MCP app keeps
    # its own auth middleware, so REST requests never pay for it. First, so nothing can shadow them.
    # The protected-resource metadata is the SDK's handler with our scopes (protected_resource_routes).
    for route in protected_resource_routes(settings):
        app.router.routes.insert(0, route)
    app.router.routes.insert(0, Route(MCP_PATH, endpoint=RevocableRequests(mcp_app, runtime)))
    app.include_router(routes.router)
    app.state.mcp_server = server
    app.state.mcp_subscriptions = subscriptions


@asynccontextmanager
async def lifespan(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
    """Part of the app's lifespan: the MCP session manager, and resource updates from the hub."""
    hub = runtime.services.hub
    if hub is not None:
        hub.add_listener(_notifier(app.state.mcp_subscriptions))
    async with app.state.mcp_server.session_manager.run():
        yield


def _notifier(subscriptions: TaskSubscriptions) -> Any:
    """A hub listener (called for every committed event, on every replica) that notifies subscribers."""
    pending: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        pending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(pending.discard)

    def on_event(event: dict[str, Any]) -> None:
        task_id = event.get("task_id")
        if task_id is None:
            if event.get("kind") == "resync":  # the listener reconnected and may have missed events
                spawn(subscriptions.everything_changed())
        elif task_id in subscriptions.watched:
            spawn(subscriptions.task_changed(task_id))

    return on_event


class RevocableRequests:
    """Every /mcp request is authenticated by the SDK's middleware, so a revoked token's next call is
    refused; this ends the calls already running, above all the GET notification stream, which
    would otherwise stay open for as long as the client keeps it. Each request is filed in
    `open_streams` under its token's key; a revocation (on any replica) cancels it, finishing a
    started response (the stream just ends) or answering 401."""

    def __init__(self, app: ASGIApp, runtime: Callable[[], Runtime]) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _bearer(scope)
        open_streams = self.runtime().services.open_streams if token else None
        if token is None or open_streams is None:
            await self.app(scope, receive, send)
            return
        state = {"started": False, "complete": False}

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True
            await send(message)

        with anyio.CancelScope() as scope_of_call:
            handle = open_streams.open(
                (streams.token_key(token),), lambda _why: scope_of_call.cancel(), capped=False
            )
            try:
                await self.app(scope, receive, watched_send)
            finally:
                open_streams.release(handle)
        if not scope_of_call.cancelled_caught or state["complete"]:
            return
        if state["started"]:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body = json.dumps({"error": "invalid_token", "error_description": "the token was revoked"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer error="invalid_token"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _bearer(scope: Scope) -> str | None:
    if scope["type"] != "http":
        return None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None
