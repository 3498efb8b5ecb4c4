"""MCP fixtures: a real OSIRIS on a free port (its own thread, event loop and app instance, sharing
this run's database), and official MCP clients over streamable HTTP and over stdio (`osiris mcp`)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from osiris.app.config import Settings
from tests.support.servers import LiveServer, mcp_over_http

from .mcp_helpers import osiris_command

ClientFactory = Callable[[str], AbstractAsyncContextManager[Client]]


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
    return lambda token: mcp_over_http(live_server.url, token)


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
