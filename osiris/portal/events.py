"""TaskEvents as live clients receive them: the replay from the table and the live rows, shared.

A notification carries only ids; each process loads an event row once and serves every one of its
clients from that, so a change seen by a thousand browsers costs one query per process.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from osiris.app.actors import Actor
from osiris.app.models import TaskEvent
from osiris.app.schemas import EventRead


def encode(event: TaskEvent) -> str:
    body = EventRead.model_validate(event).model_dump(mode="json")
    return json.dumps({"type": "event", **body}, separators=(",", ":"))


# Ids are taken at INSERT but events reach clients in COMMIT order, so a lower id can commit after
# a higher one the client already has. A resuming client is therefore also sent the events created
# shortly before its last one (transactions here last well under this); it skips ids it has seen.
RESUME_OVERLAP = timedelta(seconds=10)


async def replay(
    session: AsyncSession, actor: Actor, *, after: int, task_id: int | None, limit: int
) -> Sequence[TaskEvent]:
    """What a client missed: the organization's (or one task's) events after `after`, by id, plus
    the ones below `after` that may have committed after it (see RESUME_OVERLAP)."""
    last_seen = select(TaskEvent.created_at).where(TaskEvent.id == after).scalar_subquery()
    late = and_(TaskEvent.id < after, TaskEvent.created_at >= last_seen - RESUME_OVERLAP)
    stmt = select(TaskEvent).where(TaskEvent.org_id == actor.org_id, or_(TaskEvent.id > after, late))
    if task_id is not None:
        stmt = stmt.where(TaskEvent.task_id == task_id)
    return (await session.execute(stmt.order_by(TaskEvent.id).limit(limit))).scalars().all()


class EventCache:
    """Encoded events by id, loaded in batches and kept for the most recent few thousand."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], size: int = 4096) -> None:
        self._sessions = sessions
        self._size = size
        self._entries: OrderedDict[int, asyncio.Future[tuple[int, str] | None]] = OrderedDict()
        self._loads: set[asyncio.Task[None]] = set()

    async def get_many(self, ids: Iterable[int]) -> dict[int, tuple[int, str]]:
        """id → (org_id, encoded event), for the ids that have a row."""
        loop = asyncio.get_running_loop()
        futures: dict[int, asyncio.Future[tuple[int, str] | None]] = {}
        missing: dict[int, asyncio.Future[tuple[int, str] | None]] = {}
        for i in dict.fromkeys(ids):
            fut = self._entries.get(i)
            if fut is None:
                fut = missing[i] = self._entries[i] = loop.create_future()
            futures[i] = fut
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        if missing:
            # A task of its own: a client that goes away mid-load must not fail the others waiting.
            load = asyncio.create_task(self._load(missing))
            self._loads.add(load)
            load.add_done_callback(self._loads.discard)
        out: dict[int, tuple[int, str]] = {}
        for i, fut in futures.items():
            value = await asyncio.shield(fut)
            if value is not None:
                out[i] = value
        return out

    async def _load(self, futures: dict[int, asyncio.Future[tuple[int, str] | None]]) -> None:
        try:
            async with self._sessions() as session:
                stmt = select(TaskEvent).where(TaskEvent.id.in_(list(futures)))
                found = {row.id: (row.org_id, encode(row)) for row in (await session.execute(stmt)).scalars()}
        except Exception as exc:
            for i, fut in futures.items():
                if self._entries.get(i) is fut:
                    del self._entries[i]  # the next client asks again
                if not fut.done():
                    fut.set_exception(exc)
            return
        for i, fut in futures.items():
            if not fut.done():
                fut.set_result(found.get(i))
