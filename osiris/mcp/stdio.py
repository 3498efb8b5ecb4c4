"""`osiris mcp`: a stdio MCP server for desktop clients, talking to a running OSIRIS over REST.

Configured by the environment (`config.McpClientSettings`): OSIRIS_URL (default
http://127.0.0.1:8000), OSIRIS_TOKEN (an agent's API token) and OSIRIS_MCP_POLL_SECONDS (how often
subscribed tasks are checked for changes, default 2).
stdout carries the protocol, so everything else goes to stderr.
"""

from __future__ import annotations

import logging
import sys

import anyio
from pydantic import ValidationError

from osiris.app.config import McpClientSettings
from osiris.mcp.rest_gateway import RestGateway
from osiris.mcp.server import build_mcp_server
from osiris.mcp.subscriptions import TaskEventPoller, TaskSubscriptions

log = logging.getLogger(__name__)


async def serve(url: str, token: str, *, poll_seconds: float) -> None:
    async with RestGateway(url, token) as gateway:
        poller = TaskEventPoller(gateway.last_event_id, interval=poll_seconds)
        subscriptions = TaskSubscriptions(gateway, on_watch=poller.watch)
        server = build_mcp_server(gateway, subscriptions=subscriptions)
        async with anyio.create_task_group() as tg:
            tg.start_soon(poller.run, subscriptions)
            await server.run_stdio_async()  # returns when the client closes stdin
            tg.cancel_scope.cancel()


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="osiris mcp: %(message)s")
    try:
        config = McpClientSettings()
    except ValidationError:  # a string is always a string: only the poll interval can be wrong
        print("osiris mcp: OSIRIS_MCP_POLL_SECONDS must be a number of seconds", file=sys.stderr)
        return 2
    url, token = config.url, config.token.strip()
    if not token:
        print(
            "osiris mcp: set OSIRIS_TOKEN to an agent's API token (osiris token create <name>)",
            file=sys.stderr,
        )
        return 2
    anyio.run(lambda: serve(url, token, poll_seconds=max(config.mcp_poll_seconds, 0.2)))
    return 0
