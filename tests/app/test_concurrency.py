"""Races decided by the database: claims, submissions, lease expiry."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import select, update

from osiris.app import db, lifecycle
from osiris.app.artifacts import validate_artifact
from osiris.app.errors import IllegalTransition, NotClaimable, NotYourTask
from osiris.app.models import Artifact, Task, TaskEvent
from osiris.app.routing import Aging


async def _tasks(runtime, actor, n: int) -> list[int]:
    ids = []
    async with db.transaction(runtime.sessions) as s:
        for i in range(n):
            t = await lifecycle.create_task(s, actor, title=f"t{i}", repo="default", base_branch="main")
            ids.append(t.id)
    return ids


async def test_fifty_claimers_on_ten_tasks_get_exactly_ten_claims(runtime, factory):
    org = await factory.org()
    admin = factory.actor(await factory.user("admin", org=org))
    ids = await _tasks(runtime, admin, 10)
    agents = [factory.actor(await factory.user("agent", org=org)) for _ in range(50)]

    async def claim(agent):
        async with db.transaction(runtime.sessions) as s:
            task = await lifecycle.claim_next(s, agent, lease_seconds=60, aging=Aging.of(runtime.settings))
            return task.id if task else None

    won = [t for t in await asyncio.gather(*(claim(a) for a in agents)) if t is not None]
    assert sorted(won) == sorted(ids)  # every task claimed exactly once
    async with runtime.sessions() as s:
        rows = (await s.execute(select(Task.status, Task.assignee_id))).all()
        claims = (await s.execute(select(TaskEvent.task_id).where(TaskEvent.kind == "claim"))).scalars().all()
    assert {status for status, _ in rows} == {"IN_PROGRESS"}
    assert len({assignee for _, assignee in rows}) == 10  # no agent holds two, no task held twice
    assert Counter(claims) == Counter(ids)


async def test_racing_claims_on_one_task_one_wins(runtime, factory):
    org = await factory.org()
    admin = factory.actor(await factory.user("admin", org=org))
    [task_id] = await _tasks(runtime, admin, 1)
    agents = [factory.actor(await factory.user("agent", org=org)) for _ in range(20)]

    async def claim(agent):
        try:
            async with db.transaction(runtime.sessions) as s:
                await lifecycle.claim_task(s, agent, task_id, lease_seconds=60)
            return "won"
        except NotClaimable:
            return "not_claimable"

    results = Counter(await asyncio.gather(*(claim(a) for a in agents)))
    assert results == {"won": 1, "not_claimable": 19}


async def test_concurrent_submissions_number_versions_without_gaps(runtime, factory):
    org = await factory.org()
    reviewer = factory.actor(await factory.user("reviewer", org=org))
    agent = factory.actor(await factory.user("agent", org=org))
    [task_id] = await _tasks(runtime, reviewer, 1)
    async with db.transaction(runtime.sessions) as s:
        await lifecycle.claim_task(s, agent, task_id, lease_seconds=600)

    async def submit(i: int):
        art = validate_artifact({f"f{i}.txt": f"{i}\n"}, "auto", max_bytes=10_000)
        try:
            async with db.transaction(runtime.sessions) as s:
                sub = await lifecycle.submit_artifact(s, agent, task_id, artifact=art)
            return sub.artifact.version
        except IllegalTransition:
            return None

    rounds, per_round = 8, 6
    for r in range(rounds):
        versions = [v for v in await asyncio.gather(*(submit(r * 10 + i) for i in range(per_round))) if v]
        assert versions == [r + 1]  # exactly one submission per review round
        async with db.transaction(runtime.sessions) as s:
            await lifecycle.request_changes(s, reviewer, task_id, feedback=f"round {r}", lease_seconds=600)

    async with runtime.sessions() as s:
        stored = (
            (await s.execute(select(Artifact.version).where(Artifact.task_id == task_id))).scalars().all()
        )
        task = await s.get(Task, task_id)
    assert sorted(stored) == list(range(1, rounds + 1))
    assert task.artifact_count == rounds


async def test_same_idempotency_key_concurrently_stores_one_version(runtime, factory):
    org = await factory.org()
    agent = factory.actor(await factory.user("agent", org=org))
    [task_id] = await _tasks(runtime, agent, 1)
    async with db.transaction(runtime.sessions) as s:
        await lifecycle.claim_task(s, agent, task_id, lease_seconds=600)
    art = validate_artifact("# plan\n", "text", max_bytes=10_000)

    async def submit():
        try:
            async with db.transaction(runtime.sessions) as s:
                sub = await lifecycle.submit_artifact(s, agent, task_id, artifact=art, idempotency_key="k-1")
            return sub.artifact.id
        except IllegalTransition:
            return None

    ids = {i for i in await asyncio.gather(*(submit() for _ in range(8))) if i}
    assert len(ids) == 1
    async with runtime.sessions() as s:
        assert len((await s.execute(select(Artifact.id).where(Artifact.task_id == task_id))).all()) == 1


async def test_lease_expiry_returns_the_task_and_heartbeat_keeps_it(runtime, factory):
    org = await factory.org()
    agent_a = factory.actor(await factory.user("agent", org=org))
    agent_b = factory.actor(await factory.user("agent", org=org))
    kept, lost = await _tasks(runtime, agent_a, 2)
    async with db.transaction(runtime.sessions) as s:
        await lifecycle.claim_task(s, agent_a, kept, lease_seconds=1)
        await lifecycle.claim_task(s, agent_a, lost, lease_seconds=1)
    await asyncio.sleep(0.5)
    async with db.transaction(runtime.sessions) as s:
        await lifecycle.heartbeat(s, agent_a, kept, lease_seconds=60)
    await asyncio.sleep(0.8)
    async with db.transaction(runtime.sessions) as s:
        returned = await lifecycle.expire_leases(s)
    assert returned == [lost]
    async with runtime.sessions() as s:
        assert (await s.get(Task, kept)).status == "IN_PROGRESS"
        back = await s.get(Task, lost)
        assert (back.status, back.assignee_id) == ("PENDING", None)
        ev = (
            (
                await s.execute(
                    select(TaskEvent).where(TaskEvent.task_id == lost).order_by(TaskEvent.id.desc())
                )
            )
            .scalars()
            .first()
        )
        assert (ev.kind, ev.actor_name, ev.data["previous_holder_id"]) == (
            "expire",
            "lease-sweeper",
            agent_a.user_id,
        )

    # someone else takes it; the late agent's work is refused as not theirs
    async with db.transaction(runtime.sessions) as s:
        await lifecycle.claim_task(s, agent_b, lost, lease_seconds=60)
    art = validate_artifact("late\n", "text", max_bytes=100)
    with pytest.raises(NotYourTask):
        async with db.transaction(runtime.sessions) as s:
            await lifecycle.submit_artifact(s, agent_a, lost, artifact=art)


async def test_sweeper_on_two_connections_returns_each_task_once(runtime, factory):
    org = await factory.org()
    agent = factory.actor(await factory.user("agent", org=org))
    ids = await _tasks(runtime, agent, 6)
    async with db.transaction(runtime.sessions) as s:
        for t in ids:
            await lifecycle.claim_task(s, agent, t, lease_seconds=60)
        await s.execute(update(Task).values(lease_expires_at=Task.created_at))

    async def sweep():
        async with db.transaction(runtime.sessions) as s:
            return await lifecycle.expire_leases(s)

    a, b = await asyncio.gather(sweep(), sweep())
    assert sorted(a + b) == sorted(ids)
    async with runtime.sessions() as s:
        expiries = (
            (await s.execute(select(TaskEvent.task_id).where(TaskEvent.kind == "expire"))).scalars().all()
        )
    assert sorted(expiries) == sorted(ids)
