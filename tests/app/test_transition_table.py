"""Every (state, action, actor) → outcome, generated from the product's rules as DESIGN.md states them.

The oracle below is written from the design's words, independently of lifecycle.RULES, and each case
runs against the real service and database: the task is driven into the state through legal moves,
the action is attempted, and the stored status, the event log and the error code are checked.
"""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select, update

from osiris.app import db, lifecycle
from osiris.app.actors import requester_actor, system_actor
from osiris.app.artifacts import validate_artifact
from osiris.app.errors import OsirisError
from osiris.app.models import Artifact, Task, TaskEvent

STATES = ["PENDING", "IN_PROGRESS", "REVIEW", "DONE", "REJECTED"]
ACTIONS = [
    "claim", "release", "expire", "submit", "request_changes", "approve", "cancel", "merge_failed", "reopen",
    "checks_failed",
]  # fmt: skip
ACTORS = ["admin", "reviewer", "holder", "other_agent", "system", "requester"]
OPEN = {"PENDING", "IN_PROGRESS", "REVIEW"}
HUMANS = {"admin", "reviewer"}
AGENTS = {"holder", "other_agent"}


def holds(state: str, who: str) -> bool:
    # The claimant stays the task's assignee from the claim on (the record of who did the work);
    # only a pending task has no holder.
    return who == "holder" and state != "PENDING"


def oracle(state: str, action: str, who: str) -> tuple[str | None, str | None]:
    """(new state, None) if allowed, else (None, error code)."""
    if action == "claim":
        if who not in AGENTS:
            return None, "forbidden"
        return ("IN_PROGRESS", None) if state == "PENDING" else (None, "not_claimable")
    if action == "release":  # the holder gives it back; an admin may take it off them
        if who not in {"holder", "other_agent", "admin"}:
            return None, "forbidden"
        if who in AGENTS and not holds(state, who):
            return None, "not_your_task"
        return ("PENDING", None) if state == "IN_PROGRESS" else (None, "illegal_transition")
    if action == "expire":
        if who != "system":
            return None, "forbidden"
        return ("PENDING", None) if state == "IN_PROGRESS" else (None, "illegal_transition")
    if action == "submit":
        if who not in AGENTS:
            return None, "forbidden"
        if not holds(state, who):
            return None, "not_your_task"
        return ("REVIEW", None) if state == "IN_PROGRESS" else (None, "illegal_transition")
    if action in ("request_changes", "approve"):
        if who not in HUMANS:  # only a person reviews; never an agent, never the system
            return None, "forbidden"
        target = "IN_PROGRESS" if action == "request_changes" else "DONE"
        return (target, None) if state == "REVIEW" else (None, "illegal_transition")
    if action == "cancel":
        if who not in HUMANS | {"requester"}:
            return None, "forbidden"
        return ("REJECTED", None) if state in OPEN else (None, "illegal_transition")
    if action == "merge_failed":  # the code host could not merge an approval: only the system says so
        if who != "system":
            return None, "forbidden"
        return ("IN_PROGRESS", None) if state == "DONE" else (None, "illegal_transition")
    if action == "reopen":  # a rejected pull request reopened by a person goes back to review
        if who not in HUMANS:
            return None, "forbidden"
        return ("REVIEW", None) if state == "REJECTED" else (None, "illegal_transition")
    if action == "checks_failed":  # blocking pre-review checks failed: the system sends it back
        if who != "system":
            return None, "forbidden"
        return ("IN_PROGRESS", None) if state == "REVIEW" else (None, "illegal_transition")
    raise AssertionError(action)


PATCH = validate_artifact({"notes.txt": "hello\n"}, "files", max_bytes=10_000)


async def _drive(runtime, task_id: int, state: str, *, holder, reviewer) -> None:
    """Bring a fresh task into `state` through legal moves only."""
    lease = runtime.settings.tasks.lease_seconds
    path = {
        "PENDING": [],
        "IN_PROGRESS": ["claim"],
        "REVIEW": ["claim", "submit"],
        "DONE": ["claim", "submit", "approve"],
        "REJECTED": ["claim", "submit", "cancel"],
    }[state]
    for step in path:
        async with db.transaction(runtime.sessions) as s:
            if step == "claim":
                await lifecycle.claim_task(s, holder, task_id, lease_seconds=lease)
            elif step == "submit":
                done = await lifecycle.submit_artifact(s, holder, task_id, artifact=PATCH)
                # What the publish job records: only a published version can be approved.
                await s.execute(
                    update(Artifact).where(Artifact.id == done.artifact.id).values(commit_sha="a" * 40)
                )
            elif step == "approve":
                await lifecycle.approve_task(s, reviewer, task_id)
            else:
                await lifecycle.cancel_task(s, reviewer, task_id)


async def _attempt(runtime, task_id: int, action: str, actor, holder) -> None:
    lease = runtime.settings.tasks.lease_seconds
    async with db.transaction(runtime.sessions) as s:
        if action == "claim":
            await lifecycle.claim_task(s, actor, task_id, lease_seconds=lease)
        elif action == "release":
            await lifecycle.release_task(s, actor, task_id)
        elif action == "expire":
            task = await s.get(Task, task_id, with_for_update=True)
            await lifecycle._move(s, task, actor, lifecycle.Action.EXPIRE, assignee_id=None)
        elif action == "submit":
            await lifecycle.submit_artifact(s, actor, task_id, artifact=PATCH)
        elif action == "request_changes":
            await lifecycle.request_changes(s, actor, task_id, feedback="please fix", lease_seconds=lease)
        elif action == "approve":
            await lifecycle.approve_task(s, actor, task_id)
        elif action == "cancel":
            await lifecycle.cancel_task(s, actor, task_id, reason="no longer needed")
        elif action == "merge_failed":
            await lifecycle.merge_failed(s, actor, task_id, feedback="conflict in a.txt", lease_seconds=lease)
        elif action == "reopen":
            await lifecycle.reopen_task(s, actor, task_id)
        elif action == "checks_failed":
            await lifecycle.checks_failed(
                s, actor, task_id, feedback="$ make test -> exit 1", lease_seconds=lease
            )


CASES = list(itertools.product(STATES, ACTIONS, ACTORS))


async def test_the_table_covers_every_rule():
    assert len(CASES) == len(STATES) * len(ACTIONS) * len(ACTORS) == 300
    assert {a.value for a in lifecycle.Action} == set(ACTIONS)  # a new action must join the table


@pytest.mark.parametrize(("state", "action", "who"), CASES, ids=["-".join(c) for c in CASES])
async def test_transition(runtime, factory, state, action, who):
    org = await factory.org()
    admin, reviewer = await factory.user("admin", org=org), await factory.user("reviewer", org=org)
    holder, other = await factory.user("agent", org=org), await factory.user("agent", org=org)
    actors = {
        "admin": factory.actor(admin),
        "reviewer": factory.actor(reviewer),
        "holder": factory.actor(holder),
        "other_agent": factory.actor(other),
        "system": system_actor(org.id),
        "requester": requester_actor(org.id, "whatsapp:+15550001"),
    }
    async with db.transaction(runtime.sessions) as s:
        task = await lifecycle.create_task(
            s, actors["admin"], title="t", repo="default", base_branch="main", channel="api"
        )
    await _drive(runtime, task.id, state, holder=actors["holder"], reviewer=actors["reviewer"])

    async with runtime.sessions() as s:
        events_before = await s.scalar(
            select(func.count()).select_from(TaskEvent).where(TaskEvent.task_id == task.id)
        )

    want_state, want_error = oracle(state, action, who)
    error = None
    try:
        await _attempt(runtime, task.id, action, actors[who], actors["holder"])
    except OsirisError as exc:
        error = exc.code

    async with runtime.sessions() as s:
        stored = await s.get(Task, task.id)
        events = (
            (await s.execute(select(TaskEvent).where(TaskEvent.task_id == task.id).order_by(TaskEvent.id)))
            .scalars()
            .all()
        )

    assert error == want_error
    if want_error is None:
        assert stored.status == want_state
        last_transition = [e for e in events if e.to_status is not None][-1]
        assert (last_transition.from_status, last_transition.to_status) == (state, want_state)
        assert last_transition.kind == action
        if want_state in ("DONE", "REJECTED"):
            assert actors[who].is_human or actors[who].requester  # only people finish a task
    else:
        assert stored.status == state  # a refused move leaves nothing half-written
        assert len(events) == events_before
