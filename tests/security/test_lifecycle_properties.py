"""Hypothesis: any sequence of lifecycle actions by any actor keeps the lifecycle's invariants.

Each example is a fresh task in a repository of its own (so `claim_next` only sees it), driven
through the real services against the real database, one transaction per action as the edges do.
"""

from __future__ import annotations

import secrets

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from osiris.app import db, lifecycle
from osiris.app.actors import requester_actor, system_actor
from osiris.app.artifacts import validate_artifact
from osiris.app.errors import OsirisError
from osiris.app.models import Artifact, Message, Task, TaskEvent
from osiris.app.routing import Aging

ACTIONS = (
    "claim",
    "claim_next",
    "heartbeat",
    "release",
    "expire",
    "submit",
    "request_changes",
    "approve",
    "cancel",
    "reopen",
    "merge_failed",
)
ACTORS = ("admin", "reviewer", "agent_a", "agent_b", "system", "requester")
# "fitting" (resolved per step: the holder, a reviewer, the system) is weighted in so that random
# scripts walk far into the machine rather than being refused at the first step.
LIKELY = (*ACTORS, "fitting", "fitting", "fitting", "fitting")
FITTING = {"claim": "agent_a", "claim_next": "agent_b", "expire": "system", "merge_failed": "system"}
FITTING |= dict.fromkeys(("request_changes", "approve", "cancel", "reopen"), "reviewer")
REACHED: set[str] = set()
HUMANS = ("admin", "reviewer")
steps = st.lists(
    st.tuples(
        st.sampled_from(ACTIONS + ("claim", "submit", "approve", "merge_failed", "reopen")),
        st.sampled_from(LIKELY),
        st.sampled_from(("k1", "k2", None)),
    ),
    min_size=10,
    max_size=30,
)


async def _do(runtime, actor, action: str, task: Task, key: str | None) -> None:
    async with db.transaction(runtime.sessions) as s:
        if action == "claim":
            await lifecycle.claim_task(s, actor, task.id, lease_seconds=600)
        elif action == "claim_next":
            aging = Aging.of(runtime.settings)
            if await lifecycle.claim_next(s, actor, lease_seconds=600, repo=task.repo, aging=aging) is None:
                raise LookupError("nothing pending")
        elif action == "heartbeat":
            await lifecycle.heartbeat(s, actor, task.id, lease_seconds=600)
        elif action == "release":
            await lifecycle.release_task(s, actor, task.id)
        elif action == "expire":  # the lease is forced into the past, then the real sweeper runs
            await s.execute(
                update(Task)
                .where(Task.id == task.id, Task.status == "IN_PROGRESS")
                .values(lease_expires_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1))
            )
            if task.id not in await lifecycle.expire_leases(s):
                raise LookupError("no lease to expire")
        elif action == "submit":
            art = validate_artifact(
                f"version by {actor.name} {secrets.token_hex(2)}\n", "text", max_bytes=1000
            )
            done = await lifecycle.submit_artifact(s, actor, task.id, artifact=art, idempotency_key=key)
            # What the publish job records (approval needs a published version); a replayed key's
            # earlier version keeps its own commit.
            await s.execute(
                update(Artifact)
                .where(Artifact.id == done.artifact.id, Artifact.commit_sha.is_(None))
                .values(commit_sha=secrets.token_hex(20))
            )
        elif action == "request_changes":
            await lifecycle.request_changes(s, actor, task.id, feedback="again", lease_seconds=600)
        elif action == "approve":
            await lifecycle.approve_task(s, actor, task.id)
        elif action == "cancel":
            await lifecycle.cancel_task(s, actor, task.id, reason="no")
        elif action == "reopen":
            await lifecycle.reopen_task(s, actor, task.id)
        elif action == "merge_failed":
            await lifecycle.merge_failed(s, actor, task.id, feedback="conflict", lease_seconds=600)


async def _snapshot(runtime, task_id: int) -> dict:
    async with runtime.sessions() as s:
        task = await s.get(Task, task_id)
        events = (
            (await s.execute(select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)))
            .scalars()
            .all()
        )
        versions = (
            (await s.execute(select(Artifact.version).where(Artifact.task_id == task_id).order_by("version")))
            .scalars()
            .all()
        )
        messages = await s.scalar(select(func.count()).select_from(Message).where(Message.task_id == task_id))
    return {
        "row": (task.status, task.assignee_id, task.artifact_count, task.lease_expires_at, task.updated_at),
        "task": task,
        "events": events,
        "versions": versions,
        "messages": messages,
    }


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=steps)
# Every edge of the machine at least once, whatever the random examples happen to reach.
@example(
    script=[
        (a, "fitting", None)
        for a in (
            "claim",
            "submit",
            "request_changes",
            "submit",
            "approve",
            "merge_failed",
            "submit",
            "cancel",
            "reopen",
            "approve",
        )
    ]
)
@example(script=[(a, "fitting", None) for a in ("claim_next", "expire", "claim", "release", "cancel")])
@example(script=[(a, "fitting", "k1") for a in ("claim", "cancel", "submit", "submit")])
async def test_any_sequence_of_actions_keeps_the_invariants(runtime, people, script):
    """Up to 30 of claim, claim_next, heartbeat, release, expire (the sweeper, lease forced into the
    past), submit (with or without an idempotency key), request_changes, approve, cancel, reopen,
    merge_failed, by admin, reviewer, two agents, the system and a requester: only humans make DONE,
    at most one holder, versions 1..n, an event per state change with matching from/to, refused
    moves write nothing (63 scripts, derandomized)."""
    org_id, users = people
    actors = {
        **{name: users[name] for name in ("admin", "reviewer", "agent_a", "agent_b")},
        "system": system_actor(org_id, "chaos"),
        "requester": requester_actor(org_id, "+15550001"),
    }
    human_ids = {actors[h].user_id for h in HUMANS}
    agent_ids = {actors["agent_a"].user_id, actors["agent_b"].user_id}
    repo = f"prop-{secrets.token_hex(4)}"
    async with db.transaction(runtime.sessions) as s:
        task = await lifecycle.create_task(
            s, actors["admin"], title="property", repo=repo, base_branch="main"
        )
    before = await _snapshot(runtime, task.id)
    moves = 0
    for action, who, key in script:
        if who == "fitting":
            holder = {u.user_id: n for n, u in actors.items()}.get(before["row"][1], "agent_a")
            who = FITTING.get(action, holder)
        try:
            await _do(runtime, actors[who], action, task, key)
            refused = False
        except (OsirisError, LookupError):
            refused = True
        after = await _snapshot(runtime, task.id)
        if refused:  # a refused move writes nothing at all
            assert after["row"] == before["row"], (action, who)
            assert len(after["events"]) == len(before["events"]), (action, who)
            assert after["versions"] == before["versions"] and after["messages"] == before["messages"]
        elif after["row"][0] != before["row"][0]:
            moves += 1
            REACHED.add(f"{before['row'][0]}->{after['row'][0]}")
        _check_invariants(after, human_ids, agent_ids)
        before = after
    changes = [e for e in before["events"] if e.to_status is not None]
    assert len(changes) == moves + 1  # "created", then exactly one event per state change


def _check_invariants(snap: dict, human_ids: set[int], agent_ids: set[int]) -> None:
    task: Task = snap["task"]
    # versions contiguous 1..n, and the task's counter agrees
    assert snap["versions"] == list(range(1, len(snap["versions"]) + 1))
    assert task.artifact_count == len(snap["versions"])
    # at most one holder: an IN_PROGRESS task is held by exactly one agent with a lease
    if task.status == "IN_PROGRESS":
        assert task.assignee_id in agent_ids and task.lease_expires_at is not None
    if task.status == "PENDING":
        assert task.assignee_id is None
    # every state change has its event, chained from -> to, ending at the current state
    changes = [e for e in snap["events"] if e.to_status is not None]
    assert changes[0].kind == "created" and changes[0].from_status is None
    for prev, ev in zip(changes, changes[1:], strict=False):
        assert ev.from_status == prev.to_status, (prev.kind, ev.kind)
        assert ev.from_status != ev.to_status
    assert changes[-1].to_status == task.status
    # only humans produce DONE (and REJECTED, except the requester's own cancel)
    for ev in changes:
        if ev.to_status == "DONE":
            assert ev.actor_id in human_ids and ev.kind == "approve"
        if ev.kind in ("claim", "submit"):
            assert ev.actor_id in agent_ids


def test_the_properties_reached_every_transition(record_property):
    """The random scripts (plus three explicit ones) walked every edge of the state machine."""
    expected = {
        "PENDING->IN_PROGRESS",
        "IN_PROGRESS->PENDING",
        "IN_PROGRESS->REVIEW",
        "REVIEW->IN_PROGRESS",
        "REVIEW->DONE",
        "DONE->IN_PROGRESS",
        "REVIEW->REJECTED",
        "REJECTED->REVIEW",
        "PENDING->REJECTED",
        "IN_PROGRESS->REJECTED",
    }
    record_property("transitions walked", ", ".join(sorted(REACHED)))
    assert expected <= REACHED, expected - REACHED
