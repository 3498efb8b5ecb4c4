"""Streamable HTTP MCP at /mcp inside the main app, its session manager run in the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from mcp.server.auth.routes import build_resource_metadata_url
from starlette.routing import Route

from osiris.app.config import Settings
from osiris.app.runtime import Runtime
from osiris.mcp import routes
from osiris.mcp.auth import MCP_PATH, OsirisTokenVerifier, auth_settings, transport_security
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
    assert auth.resource_server_url is not None  # noqa: S101 - set by auth_settings
    metadata_path = urlsplit(str(build_resource_metadata_url(auth.resource_server_url))).path
    # Plain routes, not a Mount: a Mount would answer /mcp with a redirect to /mcp/. The MCP app keeps
    # its own auth middleware, so REST requests never pay for it. First, so nothing can shadow them.
    for path in (metadata_path, MCP_PATH):
        app.router.routes.insert(0, Route(path, endpoint=mcp_app))
    app.include_router(routes.router)
    app.state.mcp_server = server

    @asynccontextmanager
    async def run_mcp(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
        hub = runtime.services.get("hub")
        if hub is not None:
            hub.add_listener(_notifier(subscriptions))
        async with server.session_manager.run():
            yield

    app.state.startup_hooks.append(run_mcp)


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
