"""Streamable HTTP MCP at /mcp inside the main app.

The MCP SDK is a good share of what a start imports (issue 17: cold start), and no MCP request needs
it before the first one arrives: `/mcp` and its protected-resource metadata are served by `LazyMCP`,
which imports the SDK and builds the server on the first such request (off the event loop), then
runs the SDK's session manager from then until the app's lifespan ends.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import anyio
from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from osiris.app import streams
from osiris.app.config import Settings
from osiris.app.oauth import MCP_PATH
from osiris.app.runtime import Runtime
from osiris.mcp import routes

if TYPE_CHECKING:
    from osiris.mcp.subscriptions import TaskSubscriptions

log = logging.getLogger(__name__)


def install(app: FastAPI, settings: Settings) -> None:
    lazy = LazyMCP(app, settings)
    # Plain routes, not a Mount: a Mount would answer /mcp with a redirect to /mcp/. The MCP app keeps
    # its own auth middleware, so REST requests never pay for it. First, so nothing can shadow them.
    # The protected-resource metadata is the SDK's handler with our scopes (protected_resource_routes).
    app.router.routes.insert(
        0, Route(metadata_path(settings), endpoint=lazy.metadata, methods=["GET", "OPTIONS"])
    )
    app.router.routes.insert(0, Route(MCP_PATH, endpoint=lazy))
    app.include_router(routes.router)
    app.state.mcp = lazy


def metadata_path(settings: Settings) -> str:
    """Where the SDK serves /mcp's RFC 9728 metadata: the well-known prefix, then the resource's path."""
    path = urlparse(settings.server.public_url.rstrip("/") + MCP_PATH).path
    return "/.well-known/oauth-protected-resource" + (path if path != "/" else "")


class LazyMCP:
    """The /mcp endpoint (an ASGI app), built with the SDK on its first request."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self.metadata = _Delegate(self, "_metadata")
        self.reset()

    def reset(self) -> None:
        """Nothing built yet: each run of the app's lifespan has a session manager of its own."""
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._running: asyncio.Task[None] | None = None
        self._mcp: ASGIApp | None = None
        self._metadata: ASGIApp | None = None
        self.server: Any = None  # the SDK's MCPServer, once built
        self.subscriptions: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self._mcp or await self._build("_mcp"))(scope, receive, send)

    async def _build(self, which: str) -> ASGIApp:
        async with self._lock:
            if self._mcp is None:
                await asyncio.to_thread(_import_sdk)  # the import itself never blocks the loop
                await self._start()
        found = getattr(self, which)
        assert found is not None  # noqa: S101 - set by _start
        return found

    async def _start(self) -> None:
        from osiris.mcp.auth import (
            OsirisTokenVerifier,
            auth_settings,
            protected_resource_routes,
            transport_security,
        )
        from osiris.mcp.gateway import DatabaseGateway
        from osiris.mcp.server import build_mcp_server
        from osiris.mcp.subscriptions import TaskSubscriptions

        settings = self._settings

        def runtime() -> Runtime:
            return self._app.state.runtime

        gateway = DatabaseGateway(runtime)
        subscriptions = TaskSubscriptions(gateway)
        server = build_mcp_server(
            gateway,
            subscriptions=subscriptions,
            token_verifier=OsirisTokenVerifier(runtime),
            auth=auth_settings(settings),
        )
        mcp_app = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=transport_security(settings),
            # Same ceiling as the REST API: an artifact may be up to max_artifact_bytes, JSON-escaped.
            max_request_body_size=2 * settings.tasks.max_artifact_bytes + 65536,
        )
        [metadata] = protected_resource_routes(settings)
        hub = runtime().services.hub
        if hub is not None:
            hub.add_listener(_notifier(subscriptions))
        started = asyncio.get_running_loop().create_future()
        self._running = asyncio.create_task(self._run(server, started), name="mcp-session-manager")
        await started  # the session manager takes requests from here on (or its error is raised)
        self.server, self.subscriptions = server, subscriptions
        self._metadata = metadata.app
        self._mcp = RevocableRequests(mcp_app, runtime)

    async def _run(self, server: Any, started: asyncio.Future[None]) -> None:
        try:
            async with server.session_manager.run():
                started.set_result(None)
                await self._stopping.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    async def stop(self) -> None:
        self._stopping.set()
        if self._running is not None:
            await self._running


class _Delegate:
    """An ASGI app that is one of LazyMCP's, built on first use."""

    def __init__(self, owner: LazyMCP, which: str) -> None:
        self._owner, self._which = owner, which

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = getattr(self._owner, self._which) or await self._owner._build(self._which)
        await found(scope, receive, send)


def _import_sdk() -> None:
    for name in ("osiris.mcp.auth", "osiris.mcp.gateway", "osiris.mcp.server", "osiris.mcp.subscriptions"):
        importlib.import_module(name)


@asynccontextmanager
async def lifespan(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
    """Part of the app's lifespan: the MCP session manager (if the SDK was needed) ends with it."""
    app.state.mcp.reset()
    try:
        yield
    finally:
        await app.state.mcp.stop()


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
