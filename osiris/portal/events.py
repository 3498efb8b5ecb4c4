"""TaskEvents as live clients receive them: the replay from the table and the live rows, shared.

A notification carries only ids; each process loads an event row once and serves every one of its
clients from that, so a change seen by a thousand browsers costs one query per process. A client
that resumes or falls behind pages through the table by id (`page_ids`) and takes the encoded rows
from the same cache, so twenty clients catching up at once cost one load per row, not twenty.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import BigInteger, all_, and_, bindparam, func, or_, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
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


async def page_ids(
    session: AsyncSession,
    org_id: int,
    *,
    after: int,
    task_id: int | None,
    limit: int,
    sent: Collection[int] = (),
    floor: int | None = None,
) -> list[int]:
    """One page of what a client has not been sent yet, by id: the events after `after`, and the
    ones below it that committed late (RESUME_OVERLAP) unless in `sent`. `floor` bounds that late
    part from below when the caller knows no late event can be that old (it saves a scan)."""
    scope = [TaskEvent.org_id == org_id] + ([TaskEvent.task_id == task_id] if task_id is not None else [])
    newer = select(TaskEvent.id).where(*scope, TaskEvent.id > after).order_by(TaskEvent.id).limit(limit)
    last_seen = select(TaskEvent.created_at).where(TaskEvent.id == after).scalar_subquery()
    since = last_seen - RESUME_OVERLAP
    # Any event created a further overlap before `since` has a lower id than every late one (its
    # transaction had ended before theirs began), so the highest such id bounds the scan: found
    # walking the primary key down from `after`, it stops at the first.
    settled = (
        select(TaskEvent.id)
        .where(TaskEvent.id < after, TaskEvent.created_at < since - RESUME_OVERLAP)
        .order_by(TaskEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    late_where = [
        *scope,
        TaskEvent.id < after,
        TaskEvent.id > func.coalesce(settled, 0),
        TaskEvent.created_at >= since,
    ]
    if floor is not None:
        late_where.append(TaskEvent.id > floor)
    if sent:
        # One array parameter, however many ids: NOT IN would bind one parameter per id.
        late_where.append(TaskEvent.id != all_(bindparam("sent", list(sent), type_=ARRAY(BigInteger))))
    late = select(TaskEvent.id).where(*late_where).order_by(TaskEvent.id).limit(limit)
    both = union_all(newer, late).subquery()
    stmt = select(both.c.id).order_by(both.c.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


class Loaded(NamedTuple):
    org_id: int
    created_at: float  # seconds since the epoch: the commit-order window in live.py counts in these
    text: str  # the message as sent to clients


class EventCache:
    """Encoded events by id, loaded in batches and kept for the most recent few thousand."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], size: int = 4096) -> None:
        self._sessions = sessions
        self._size = size
        self._entries: OrderedDict[int, asyncio.Future[Loaded | None]] = OrderedDict()
        self._loads: set[asyncio.Task[None]] = set()

    def loaded(self, ids: Iterable[int]) -> dict[int, Loaded] | None:
        """id → the loaded event, without waiting: None unless every id is loaded already (a live
        event's second and later clients in a process, which then need not wait on anything)."""
        out: dict[int, Loaded] = {}
        for i in ids:
            fut = self._entries.get(i)
            if fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
                return None
            value = fut.result()
            if value is not None:
                out[i] = value
        return out

    async def get_many(self, ids: Iterable[int]) -> dict[int, Loaded]:
        """id → the loaded event, for the ids that have a row."""
        loop = asyncio.get_running_loop()
        futures: dict[int, asyncio.Future[Loaded | None]] = {}
        missing: dict[int, asyncio.Future[Loaded | None]] = {}
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
        out: dict[int, Loaded] = {}
        for i, fut in futures.items():
            # shield: a client that goes away must not cancel a load others wait for (a done one
            # needs no shield, and a thousand clients of one event make that the common case)
            value = fut.result() if fut.done() else await asyncio.shield(fut)
            if value is not None:
                out[i] = value
        return out

    async def _load(self, futures: dict[int, asyncio.Future[Loaded | None]]) -> None:
        try:
            async with self._sessions() as session:
                stmt = select(TaskEvent).where(TaskEvent.id.in_(list(futures)))
                found = {
                    row.id: Loaded(row.org_id, row.created_at.timestamp(), encode(row))
                    for row in (await session.execute(stmt)).scalars()
                }
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
