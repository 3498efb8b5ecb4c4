"""MCP fixtures: a real OSIRIS on a free port (its own thread, event loop and app instance, sharing
this run's database), and official MCP clients over streamable HTTP and over stdio (`osiris mcp`)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_helpers import osiris_command

from osiris.app.config import Settings
from osiris.app.main import create_app

ClientFactory = Callable[[str], AbstractAsyncContextManager[Client]]


class LiveServer:
    """uvicorn serving a fresh create_app() on a free port, in a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings.model_copy(update={"public_url": self.url})
        self.app = create_app(self.settings, run_background=False)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-mcp-{self.port}", daemon=True)

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


@pytest.fixture(scope="session")
def live_server(settings: Settings, database_url: str) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def rest(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the live server, as reviewers and scripts use the REST API."""
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as c:
        yield c


@pytest.fixture
def http_mcp(live_server: LiveServer) -> ClientFactory:
    """`async with http_mcp(token) as client:` — the official client over streamable HTTP."""

    @asynccontextmanager
    async def connect(token: str) -> AsyncIterator[Client]:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with http, Client(streamable_http_client(f"{live_server.url}/mcp", http_client=http)) as client:
            yield client

    return connect


@pytest.fixture
def stdio_mcp(live_server: LiveServer) -> ClientFactory:
    """`async with stdio_mcp(token) as client:` — the official client running `osiris mcp`."""

    @asynccontextmanager
    async def connect(token: str) -> AsyncIterator[Client]:
        command, *args = osiris_command()
        env = {
            "OSIRIS_URL": live_server.url,
            "OSIRIS_TOKEN": token,
            "OSIRIS_MCP_POLL_SECONDS": "0.2",
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        params = StdioServerParameters(
            command=command, args=args, env=env, cwd=str(Path(__file__).parents[2])
        )
        async with Client(params, read_timeout_seconds=30) as client:
            yield client

    return connect


@pytest.fixture(params=["http", "stdio"])
def connect(request: pytest.FixtureRequest) -> ClientFactory:
    """The same test over streamable HTTP (in the server) and over stdio (`osiris mcp` via REST)."""
    return request.getfixturevalue(f"{request.param}_mcp")
