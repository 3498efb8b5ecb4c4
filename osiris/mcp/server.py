"""build_mcp_server(): the one MCP surface, whichever gateway is behind it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp_types import SubscribeRequestParams, SubscriptionsListenRequestParams, UnsubscribeRequestParams

from osiris import __version__
from osiris.mcp.gateway import Gateway
from osiris.mcp.resources import register_resources
from osiris.mcp.subscriptions import TaskSubscriptions
from osiris.mcp.tools import register_tools

INSTRUCTIONS = (
    "OSIRIS hands out software tasks and puts every change before a human reviewer. Find work with "
    "read_pending_tasks, take it with claim_task, hand it in with submit_artifact, and address review "
    "with read_feedback (or subscribe to osiris://tasks/<id>). The work_on_task prompt walks through it."
)


@contextmanager
def _logging_left_alone() -> Iterator[None]:
    """MCPServer() calls logging.basicConfig (INFO, rich) when the root logger has no handler yet;
    logging belongs to the process (osiris.app.logs, or stderr in `osiris mcp`), so give it one."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    if not root.handlers:
        root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)


def build_mcp_server(
    gateway: Gateway,
    *,
    subscriptions: TaskSubscriptions | None = None,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> MCPServer:
    subscriptions = subscriptions or TaskSubscriptions(gateway)
    with _logging_left_alone():
        server: MCPServer = MCPServer(
            "osiris",
            title="OSIRIS",
            instructions=INSTRUCTIONS,
            version=__version__,
            token_verifier=token_verifier,
            auth=auth,
            subscriptions=subscriptions.bus,
        )
    register_tools(server, gateway)
    register_resources(server, gateway)
    # Task subscriptions are checked against the caller's organization, so our handlers replace the
    # SDK's unchecked listen handler and add the handshake-era subscribe pair (MCPServer has none).
    lowlevel = server._lowlevel_server  # noqa: SLF001 - the SDK exposes handler registration only here
    lowlevel.add_request_handler(
        "subscriptions/listen", SubscriptionsListenRequestParams, subscriptions.listen
    )
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscriptions.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, subscriptions.unsubscribe)
    return server
