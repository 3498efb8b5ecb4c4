"""A real OSIRIS for tests that need sockets: uvicorn serving a fresh create_app() on a free port, in a
thread with its own event loop, sharing the run's database (the MCP clients, the portal's WebSockets
and browser), and the official MCP client over streamable HTTP to it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import uvicorn
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from osiris.app.config import Settings
from osiris.app.runtime import Runtime
from osiris.server import create_app

T = TypeVar("T")

# A raw MCP client's first request over streamable HTTP, and the Accept it must send with every POST.
MCP_ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MCP_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-http-test", "version": "1"},
    },
}


class LiveServer:
    """`LiveServer(settings, portal_ws_send_timeout_seconds=2.0, uvicorn_options={...})`: keyword
    arguments override the settings; `uvicorn_options` go to `uvicorn.Config`."""

    def __init__(
        self, settings: Settings, *, uvicorn_options: dict[str, Any] | None = None, **overrides: Any
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings.model_copy(update={"server": {"public_url": self.url}}).model_copy(
            update=overrides
        )
        self.app = create_app(self.settings, run_background=False)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", **(uvicorn_options or {}))
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self.sock])

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

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the server's own loop, where its runtime's connections live."""
        assert self.loop is not None, "the server is not running"
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wrap_future(future)


@asynccontextmanager
async def mcp_over_http(base_url: str, token: str) -> AsyncIterator[Client]:
    """The official MCP client, as an agent holding `token` connects to `base_url`/mcp."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client:
        yield client
