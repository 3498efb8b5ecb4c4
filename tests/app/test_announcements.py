"""Claims in autocommit are announced after their commit, batched per process (osiris.app.announcements):
every listener hears each claim once with the payload a NOTIFY in the statement would have sent, the
claimer returns only once it is sent (what it does next is heard after it), and a failed announcement
never fails a claim that has committed."""

from __future__ import annotations

import asyncio
import json
import logging

import asyncpg
from sqlalchemy import select

from osiris.app import announcements, db, lifecycle, metrics
from osiris.app.events import EVENTS_CHANNEL, record_event
from osiris.app.models import TaskEvent
from osiris.app.routing import Aging


class Listener:
    """A LISTEN connection of its own, as another replica's hub has."""

    def __init__(self) -> None:
        self.heard: list[dict] = []
        self.arrived = asyncio.Event()
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Listener:
        return self

    async def start(self, dsn: str) -> None:
        self.conn = await asyncpg.connect(dsn)
        await self.conn.add_listener(EVENTS_CHANNEL, self._heard)

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.heard.append(json.loads(payload))
        self.arrived.set()

    async def until(self, count: int) -> list[dict]:
        async with asyncio.timeout(10):
            while len(self.heard) < count:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.sleep(0.2)  # and nothing more than that arrives
        return self.heard

    async def __aexit__(self, *_exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()


async def _pending(runtime, admin, n: int) -> list[int]:
    async with db.transaction(runtime.sessions) as s:
        return [
            (await lifecycle.create_task(s, admin, title=f"t{i}", repo="default", base_branch="main")).id
            for i in range(n)
        ]


async def test_concurrent_claims_are_each_announced_once_with_the_logged_event(runtime, factory):
    org = await factory.org()
    admin = factory.actor(await factory.user("admin", org=org))
    ids = await _pending(runtime, admin, 20)
    agents = [factory.actor(await factory.user("agent", org=org)) for _ in range(20)]
    batches = metrics.ANNOUNCEMENT_BATCHES._value.get()
    async with Listener() as listener:
        await listener.start(runtime.dsn)

        async def claim(agent):
            async with runtime.sessions() as s:
                return await lifecycle.claim_next_autocommit(
                    runtime.engine, s, agent, lease_seconds=60, aging=Aging.of(runtime.settings)
                )

        claimed = await asyncio.gather(*(claim(a) for a in agents))
        heard = await listener.until(len(ids))
    assert sorted(t.id for t in claimed) == sorted(ids)
    async with runtime.sessions() as s:
        logged = (await s.execute(select(TaskEvent).where(TaskEvent.task_id.in_(ids)))).scalars().all()
    claims = {e.id: e for e in logged if e.kind == "claim"}
    assert sorted(e["id"] for e in heard) == sorted(claims)  # each once, nothing else
    for event in heard:
        row = claims[event["id"]]
        assert event == {
            "id": row.id,
            "task_id": row.task_id,
            "org_id": org.id,
            "kind": "claim",
            "status": "IN_PROGRESS",
        }
    sent = metrics.ANNOUNCEMENT_BATCHES._value.get() - batches
    assert 1 <= sent <= len(ids)


async def test_a_claim_returns_after_its_announcement_so_the_next_change_is_heard_after_it(runtime, factory):
    org = await factory.org()
    admin = factory.actor(await factory.user("admin", org=org))
    agent = factory.actor(await factory.user("agent", org=org))
    [task_id] = await _pending(runtime, admin, 1)
    async with Listener() as listener:
        await listener.start(runtime.dsn)
        async with runtime.sessions() as s:
            task = await lifecycle.claim_task_autocommit(runtime.engine, s, agent, task_id, lease_seconds=60)
        # at once, in a transaction of its own, as the agent's next call would
        async with db.transaction(runtime.sessions) as s:
            await record_event(s, task, agent, "message", data={})
        heard = await listener.until(2)
    assert [e["kind"] for e in heard] == ["claim", "message"]


async def test_a_failed_announcement_leaves_the_claim_standing(runtime, factory, monkeypatch, caplog):
    org = await factory.org()
    admin = factory.actor(await factory.user("admin", org=org))
    agent = factory.actor(await factory.user("agent", org=org))
    [task_id] = await _pending(runtime, admin, 1)
    monkeypatch.setattr(
        announcements, "SEND_SQL", "SELECT pg_notify($1, $2::text[]::text) FROM no_such_table"
    )
    lost = metrics.ANNOUNCEMENTS_LOST._value.get()
    with caplog.at_level(logging.WARNING, logger="osiris.app.announcements"):
        async with runtime.sessions() as s:
            task = await lifecycle.claim_task_autocommit(runtime.engine, s, agent, task_id, lease_seconds=60)
    assert task.id == task_id and task.status == "IN_PROGRESS"
    assert metrics.ANNOUNCEMENTS_LOST._value.get() == lost + 1
    assert "live clients catch up from the log" in caplog.text
    async with runtime.sessions() as s:
        kinds = (await s.execute(select(TaskEvent.kind).where(TaskEvent.task_id == task_id))).scalars().all()
    assert "claim" in kinds  # the log has it: a resync finds it
