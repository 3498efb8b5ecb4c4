"""Task resources clients subscribe to, and telling them when a task changes.

Both protocol eras are served. At 2026-07-28 a client opens `subscriptions/listen` with the task URIs
it wants; earlier clients send `resources/subscribe` and get `notifications/resources/updated` on the
session's standalone stream. Either way a URI is checked against the caller's organization before it
is honoured, so nobody hears about another organization's tasks.

What feeds `task_changed`: in the server, the realtime hub (PostgreSQL LISTEN/NOTIFY, so a change
committed on any replica reaches subscribers on every replica); in `osiris mcp`, a poller of the REST
replay log (`TaskEventPoller`).
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from osiris.app.errors import OsirisError
from osiris.mcp.gateway import Gateway

log = logging.getLogger(__name__)
TASK_URI = "osiris://tasks/{task_id}"
_TASK_URI = re.compile(r"^osiris://tasks/(\d+)$")


def task_uri(task_id: int) -> str:
    return TASK_URI.format(task_id=task_id)


def task_id_of(uri: str) -> int | None:
    match = _TASK_URI.match(uri)
    return int(match.group(1)) if match else None


class TaskSubscriptions:
    def __init__(self, gateway: Gateway, *, on_watch: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.bus = InMemorySubscriptionBus()
        self._listen = ListenHandler(self.bus)
        self._gateway = gateway
        self._on_watch = on_watch  # lets a poller take its starting point before the client is told "ok"
        self._streams: Counter[int] = Counter()  # open listen streams per task
        self._sessions: defaultdict[int, set[Connection]] = defaultdict(set)  # handshake-era subscribers
        self._cleanup_registered: set[int] = set()

    @property
    def watched(self) -> set[int]:
        return {t for t, n in self._streams.items() if n > 0} | {t for t, s in self._sessions.items() if s}

    async def _authorize(self, uri: str) -> int:
        task_id = task_id_of(uri)
        if task_id is None:
            raise MCPError(INVALID_PARAMS, f"not a task resource: {uri!r}; use osiris://tasks/<id>")
        try:
            await self._gateway.check_readable(task_id)
        except OsirisError as exc:
            raise MCPError(INVALID_PARAMS, f"{exc.code}: {exc.detail}", data={"code": exc.code}) from exc
        if self._on_watch is not None:
            await self._on_watch(task_id)
        return task_id

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        ids = [await self._authorize(uri) for uri in params.notifications.resource_subscriptions or ()]
        self._streams.update(ids)
        try:
            return await self._listen(ctx, params)
        finally:
            self._streams.subtract(ids)

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        task_id = await self._authorize(str(params.uri))
        connection = _connection(ctx)
        self._sessions[task_id].add(connection)
        if id(connection) not in self._cleanup_registered:
            self._cleanup_registered.add(id(connection))
            connection.exit_stack.callback(self._forget, connection)
        return EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        task_id = task_id_of(str(params.uri))
        if task_id is not None:
            self._sessions[task_id].discard(_connection(ctx))
        return EmptyResult()

    def _forget(self, connection: Connection) -> None:
        self._cleanup_registered.discard(id(connection))
        for subscribers in self._sessions.values():
            subscribers.discard(connection)

    async def task_changed(self, task_id: int) -> None:
        uri = task_uri(task_id)
        await self.bus.publish(ResourceUpdated(uri=uri))
        for connection in list(self._sessions.get(task_id, ())):
            await connection.outbound.notify("notifications/resources/updated", {"uri": uri})

    async def everything_changed(self) -> None:
        """After a gap in the event feed: tell every subscriber to read again (updates are level triggers)."""
        for task_id in self.watched:
            await self.task_changed(task_id)


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection:
    # The runner builds the request context without the connection (the SDK's TODO L54); its session
    # holds it. A subscription outlives the request, so it is kept on the connection, not the request.
    return ctx.session._connection  # noqa: SLF001


class TaskEventPoller:
    """For `osiris mcp`: notice changes to watched tasks by reading the REST replay log now and then."""

    def __init__(self, last_event_id: Callable[..., Awaitable[int | None]], *, interval: float) -> None:
        self._last_event_id = last_event_id
        self._interval = interval
        self._seen: dict[int, int | None] = {}

    async def watch(self, task_id: int) -> None:
        """Take the starting point when a subscription is made, so no later change is missed."""
        if task_id not in self._seen:
            self._seen[task_id] = await self._last_event_id(task_id)

    async def run(self, subscriptions: TaskSubscriptions) -> None:
        while True:
            await anyio.sleep(self._interval)
            watched = subscriptions.watched
            for task_id in set(self._seen) - watched:
                del self._seen[task_id]
            for task_id in watched:
                seen = self._seen.get(task_id)
                try:
                    newest = await self._last_event_id(task_id, after=seen)
                except OsirisError as exc:
                    log.warning("cannot poll task %s: %s", task_id, exc.code)
                    continue
                if newest != seen:
                    self._seen[task_id] = newest
                    await subscriptions.task_changed(task_id)
