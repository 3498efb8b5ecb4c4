"""Routing: skills, reservations and aging, decided by the database under real races."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from osiris.app import db, lifecycle, routing, task_queries
from osiris.app.errors import InvalidInput, NotClaimable
from osiris.app.models import User


async def _agent(factory, *skills: str):
    user = await factory.user("agent")
    if skills:
        async with db.transaction(factory.runtime.sessions) as s:
            row = await s.get(User, user.id)
            row.skills = routing.normalize_skills(skills)
        user.skills = list(skills)
    return factory.actor(user)


async def _task(
    runtime, actor, title: str = "t", *, priority: int = 1, skills: list[str] | None = None
) -> int:
    async with db.transaction(runtime.sessions) as s:
        task = await lifecycle.create_task(
            s, actor, title=title, priority=priority, repo="default", base_branch="main", skills=skills
        )
        return task.id


async def _claim(runtime, actor, task_id: int):
    async with db.transaction(runtime.sessions) as s:
        return await lifecycle.claim_task(s, actor, task_id, lease_seconds=600)


async def test_only_an_agent_with_the_skills_can_win_the_race(runtime, factory):
    admin = factory.actor(await factory.user("admin"))
    skilled = [await _agent(factory, "rust", "sql") for _ in range(4)]
    unskilled = [await _agent(factory, "python") for _ in range(4)] + [await _agent(factory)]
    for _ in range(5):
        task_id = await _task(runtime, admin, skills=["Rust"])
        racers = [*unskilled, *skilled]
        outcomes = await asyncio.gather(
            *(_claim(runtime, a, task_id) for a in racers), return_exceptions=True
        )
        winners = [a for a, o in zip(racers, outcomes, strict=True) if not isinstance(o, Exception)]
        assert len(winners) == 1 and winners[0] in skilled
        assert all(isinstance(o, NotClaimable) for o in outcomes if isinstance(o, Exception))
        lacking = [o for a, o in zip(racers, outcomes, strict=True) if a in unskilled]
        assert all(isinstance(o, NotClaimable) for o in lacking)


async def test_claim_next_races_skip_what_an_agent_cannot_take(runtime, factory):
    admin = factory.actor(await factory.user("admin"))
    labelled = await _task(runtime, admin, "needs go", priority=3, skills=["go"])
    gopher, other = await _agent(factory, "go"), await _agent(factory, "python")
    open_task = await _task(runtime, admin, "anyone", priority=0)

    async def next_for(actor):
        async with db.transaction(runtime.sessions) as s:
            task = await lifecycle.claim_next(
                s, actor, lease_seconds=600, aging=routing.Aging.of(runtime.settings)
            )
            return task.id if task else None

    got = await asyncio.gather(next_for(other), next_for(gopher))
    assert got == [open_task, labelled]  # the urgent labelled task was never offered to `other`


async def test_pending_shows_only_claimable_tasks(client, runtime, factory):
    admin_user, admin_headers = await factory.member("admin")
    agent, agent_headers = await factory.member("agent")
    r = await client.post(
        "/api/v1/tasks", json={"title": "a db job", "skills": ["SQL", "postgres"]}, headers=admin_headers
    )
    assert r.status_code == 201 and r.json()["skills"] == ["postgres", "sql"]
    labelled = r.json()["id"]
    plain = (await client.post("/api/v1/tasks", json={"title": "anyone"}, headers=admin_headers)).json()["id"]

    ids = lambda r: [t["id"] for t in r.json()]  # noqa: E731
    assert ids(await client.get("/api/v1/tasks/pending", headers=agent_headers)) == [plain]
    assert set(ids(await client.get("/api/v1/tasks/pending", headers=admin_headers))) == {labelled, plain}
    r = await client.post(f"/api/v1/tasks/{labelled}/claim", headers=agent_headers)
    assert r.status_code == 409 and r.json()["code"] == "not_claimable" and "skills" in r.json()["detail"]

    # Only an admin gives an agent skills; then the task is offered and can be taken.
    r = await client.put(f"/api/v1/users/{agent.id}/skills", json={"skills": ["sql"]}, headers=agent_headers)
    assert r.status_code == 403
    r = await client.put(
        f"/api/v1/users/{agent.id}/skills", json={"skills": ["sql", "postgres", "go"]}, headers=admin_headers
    )
    assert r.status_code == 200 and r.json()["skills"] == ["go", "postgres", "sql"]
    assert set(ids(await client.get("/api/v1/tasks/pending", headers=agent_headers))) == {labelled, plain}
    assert (await client.post(f"/api/v1/tasks/{labelled}/claim", headers=agent_headers)).status_code == 200


async def test_a_supervisor_routes_a_task_by_skills_and_reservation(client, runtime, factory):
    _, reviewer = await factory.member("reviewer")
    first, first_headers = await factory.member("agent")
    _, second_headers = await factory.member("agent")
    task_id = (await client.post("/api/v1/tasks", json={"title": "x"}, headers=reviewer)).json()["id"]

    r = await client.put(
        f"/api/v1/tasks/{task_id}/assignee", json={"agent_id": first.id}, headers=first_headers
    )
    assert r.status_code == 403  # an agent cannot route work to itself
    r = await client.put(f"/api/v1/tasks/{task_id}/assignee", json={"agent_id": first.id}, headers=reviewer)
    assert r.status_code == 200 and r.json()["reserved_for_id"] == first.id
    r = await client.put(f"/api/v1/tasks/{task_id}/skills", json={"skills": ["bad skill!"]}, headers=reviewer)
    assert r.status_code == 422

    assert (await client.get("/api/v1/tasks/pending", headers=second_headers)).json() == []
    r = await client.post(f"/api/v1/tasks/{task_id}/claim", headers=second_headers)
    assert r.status_code == 409 and r.json()["code"] == "not_claimable" and "reserved" in r.json()["detail"]
    assert (await client.post("/api/v1/tasks/claim-next", headers=second_headers)).status_code == 204
    r = await client.post(f"/api/v1/tasks/{task_id}/claim", headers=first_headers)
    assert r.status_code == 200 and r.json()["assignee_id"] == first.id
    kinds = [
        e["kind"] for e in (await client.get(f"/api/v1/tasks/{task_id}/events", headers=reviewer)).json()
    ]
    assert kinds == ["created", "reserved", "claim"]


async def test_reserved_race_only_the_named_agent_wins(runtime, factory):
    reviewer = factory.actor(await factory.user("reviewer"))
    agents = [await _agent(factory) for _ in range(6)]
    task_id = await _task(runtime, reviewer)
    async with db.transaction(runtime.sessions) as s:
        await lifecycle.reserve_task(s, reviewer, task_id, agent_id=agents[3].user_id)
    outcomes = await asyncio.gather(*(_claim(runtime, a, task_id) for a in agents), return_exceptions=True)
    assert [not isinstance(o, Exception) for o in outcomes] == [False, False, False, True, False, False]


async def test_aging_lifts_old_tasks(runtime, factory):
    admin = factory.actor(await factory.user("admin"))
    agent = await _agent(factory)
    old_low = await _task(runtime, admin, "old low", priority=0)
    old_normal = await _task(runtime, admin, "old normal", priority=1)
    new_high = await _task(runtime, admin, "new high", priority=2)
    new_urgent = await _task(runtime, admin, "new urgent", priority=3)
    new_normal = await _task(runtime, admin, "new normal", priority=1)
    async with db.transaction(runtime.sessions) as s:
        # 5 hours old: +2 steps (the cap), not +5
        await s.execute(
            text("UPDATE tasks SET created_at = now() - interval '5 hours' WHERE id = ANY(:ids)"),
            {"ids": [old_low, old_normal]},
        )
    async with runtime.sessions() as s:
        queue = await task_queries.pending_tasks(s, agent, aging=routing.Aging(seconds=3600, max_boost=2))
    # effective: old normal 3, new urgent 3, old low 2, new high 2, new normal 1; ties go to the older
    assert [t.id for t in queue] == [old_normal, new_urgent, old_low, new_high, new_normal]
    async with runtime.sessions() as s:
        plain = await task_queries.pending_tasks(s, agent, aging=routing.Aging(seconds=3600, max_boost=0))
    assert [t.id for t in plain] == [new_urgent, new_high, old_normal, new_normal, old_low]
    async with db.transaction(runtime.sessions) as s:
        first = await lifecycle.claim_next(
            s, agent, lease_seconds=600, aging=routing.Aging(seconds=3600, max_boost=2)
        )
    assert first.id == old_normal


def test_skills_are_normalized_and_keywords_match_whole_words():
    assert routing.normalize_skills([" Rust", "rust", "SQL"]) == ["rust", "sql"]
    with pytest.raises(InvalidInput):
        routing.normalize_skills(["no spaces"])
    words = {"rust": "rust", "go": "go", "front end": "frontend"}
    assert routing.skills_from_text(words, "Good news: fix the Rust front end") == ["frontend", "rust"]
