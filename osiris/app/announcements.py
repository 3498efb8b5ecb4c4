"""Announcing committed events to every replica, batched per process.

A NOTIFY inside a transaction serialises that transaction's commit with every other notifying commit
in the database (PostgreSQL holds one lock from queueing the notification through the commit's WAL
flush): fifty agents claiming at once queue behind each other, and the claim statement runs about a
quarter as fast as without its NOTIFY (bench/claim.py prints both). A statement that is a whole
transaction by itself (the autocommit claim, `lifecycle._claim_alone`) therefore leaves the NOTIFY
out and hands its event here once it has committed. The events waiting in this process go out
together in one short transaction, one notification per event with the payload `events.ANNOUNCE_SQL`
builds, so listeners cannot tell the difference. While one batch is being sent the next one gathers.

The caller waits until its event is sent: whatever it does next (the agent's submit, announced by its
own transaction) is heard after it, as when the NOTIFY was part of the claim. If the send fails twice
the event is still in the log (`task_events`); live clients catch up from there at their next resync,
and the failure is logged, never raised to a caller whose change has already committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref

from sqlalchemy.ext.asyncio import AsyncEngine

from osiris.app import db, metrics
from osiris.app.events import EVENTS_CHANNEL

log = logging.getLogger(__name__)
SEND_SQL = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"
ATTEMPTS = 2  # a broken pooled connection is dropped by db.autocommit; the second try gets a new one


def payload(event_id: int, task_id: int, org_id: int, kind: str, status: str | None) -> str:
    """What `events.ANNOUNCE_SQL` sends for an event."""
    return json.dumps({"id": event_id, "task_id": task_id, "org_id": org_id, "kind": kind, "status": status})


class _Batcher:
    """One engine's waiting announcements on one event loop."""

    def __init__(self, engine: AsyncEngine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.waiting: list[tuple[str, asyncio.Future[None]]] = []
        self.sender: asyncio.Task[None] | None = None

    async def announce(self, text: str) -> None:
        done = self.loop.create_future()
        self.waiting.append((text, done))
        if self.sender is None or self.sender.done():
            self.sender = self.loop.create_task(self._send_all(), name="osiris-announcer")
        await asyncio.shield(done)  # a caller that goes away does not take the batch with it

    async def _send_all(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                await self._send([text for text, _ in batch])
            finally:  # sent, given up on, or cancelled at shutdown: nobody waits for ever
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _send(self, texts: list[str]) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with db.autocommit(self.engine) as conn:
                    await conn.execute(SEND_SQL, EVENTS_CHANNEL, texts)
            except Exception as exc:
                if attempt < ATTEMPTS:
                    continue
                metrics.ANNOUNCEMENTS_LOST.inc(len(texts))
                log.warning(
                    "announcing %d committed event(s) failed (%s): live clients catch up from the log",
                    len(texts),
                    type(exc).__name__,
                )
            else:
                metrics.ANNOUNCEMENT_BATCHES.inc()
                return


_batchers: weakref.WeakKeyDictionary[AsyncEngine, _Batcher] = weakref.WeakKeyDictionary()


async def announce(engine: AsyncEngine, text: str) -> None:
    """Send one committed event's announcement with whatever else is waiting; returns once sent."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(engine)
    if batcher is None or batcher.loop is not loop:
        batcher = _batchers[engine] = _Batcher(engine, loop)
    await batcher.announce(text)
