"""Live events: one LISTEN connection per process, fanned out in-process to bounded subscriber queues.

Events are published with `pg_notify` inside the transaction that writes them (see lifecycle), or
right after the commit of a statement that commits alone (announcements), so every replica hears
every committed change. A subscriber that falls behind is marked `overflowed` and
dropped; it catches up from the TaskEvent table by id and subscribes again, so a slow client never
slows the others and loses nothing. Subscribers are also marked when the listener loses its
connection and again once it listens anew (they may have missed notifications in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

log = logging.getLogger(__name__)
CHANNEL = "osiris_events"
PREPARE_TIMEOUT = 5.0  # seconds a batch waits for its preparation at most; subscribers then load it
PENDING_MAX = 10_000  # events waiting for a preparation at most; beyond, they go out unprepared


@dataclass(eq=False)
class Subscription:
    org_id: int
    task_id: int | None  # None: every task of the organization
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=256))
    overflowed: bool = False

    def wants(self, event: dict[str, Any]) -> bool:
        return event.get("org_id") == self.org_id and self.task_id in (None, event.get("task_id"))


class Hub:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._channels: dict[str, list[Callable[[str], None]]] = {}
        self._prepare: Callable[[list[dict[str, Any]]], Awaitable[object]] | None = None
        self._pending: list[dict[str, Any]] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Another NOTIFY channel on the same connection (call before start); several callbacks
        may listen to one channel (a token revocation evicts the cache and closes streams)."""
        self._channels.setdefault(channel, []).append(callback)

    def subscribe(self, org_id: int, task_id: int | None = None) -> Subscription:
        sub = Subscription(org_id, task_id)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def add_listener(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """A plain callback for every event (e.g. the MCP resource notifier)."""
        self._listeners.append(fn)

    def prepare_with(self, fn: Callable[[list[dict[str, Any]]], Awaitable[object]]) -> None:
        """An async step each batch of notified events goes through before subscribers are woken
        (it replaces the previous one). The portal loads and encodes the rows there, once per
        process, so each of a thousand clients of an event wakes once and finds it ready. Plain
        listeners are called at once, without waiting for it."""
        self._prepare = fn

    def publish_local(self, event: dict[str, Any]) -> None:
        self._deliver([event])
        self._call_listeners(event)

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        """Into every interested subscriber's queue, in order; a full queue marks it behind."""
        for sub in list(self._subs):
            for event in events:
                if not sub.wants(event):
                    continue
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    sub.overflowed = True
                    self._subs.discard(sub)
                    break

    def _call_listeners(self, event: dict[str, Any]) -> None:
        for fn in self._listeners:
            try:
                fn(event)
            except Exception:
                log.exception("event listener failed")

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            return
        self._call_listeners(event)
        if self._prepare is None or len(self._pending) >= PENDING_MAX:
            self._deliver([event])
            return
        # Events that arrive while a batch is being prepared form the next batch: a burst is
        # prepared (one query) and handed to each subscriber (one wake-up) together.
        self._pending.append(event)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _dispatch(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            orgs = {sub.org_id for sub in self._subs}
            wanted = [event for event in batch if event.get("org_id") in orgs]
            if wanted and self._prepare is not None:
                try:
                    async with asyncio.timeout(PREPARE_TIMEOUT):
                        await self._prepare(wanted)
                except Exception:  # the subscribers load what they need themselves
                    log.warning("preparing live events failed", exc_info=True)
            self._deliver(batch)

    def _mark_all_behind(self) -> None:
        for sub in list(self._subs):
            sub.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait({"kind": "resync"})  # wakes a subscriber waiting on its queue

    async def _run(self) -> None:
        delay = 0.5
        reconnecting = False
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn)
                await conn.add_listener(CHANNEL, self._on_notify)
                for channel, callbacks in self._channels.items():
                    await conn.add_listener(
                        channel, lambda _c, _p, _ch, payload, cbs=callbacks: _each(cbs, payload)
                    )
                self.connected.set()
                if reconnecting:
                    # Subscribed while nobody listened (e.g. during the pause below): catch up again.
                    self._mark_all_behind()
                delay = 0.5
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                while not lost.is_set():
                    # a ping now and then notices a peer that vanished without closing the socket
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 15)
                    if not lost.is_set():
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event listener lost its connection (%s); reconnecting", type(exc).__name__)
            finally:
                self.connected.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            # Tell subscribers they may have missed events: they catch up from the table.
            self.publish_local({"kind": "resync"} | {"org_id": None})
            self._mark_all_behind()
            reconnecting = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="osiris-event-hub")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 10)

    async def stop(self) -> None:
        for task in (self._task, self._dispatcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _each(callbacks: list[Callable[[str], None]], payload: str) -> None:
    for callback in callbacks:
        try:
            callback(payload)
        except Exception:
            log.exception("NOTIFY listener failed")
