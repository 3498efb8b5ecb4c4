"""The task state machine: the only code that changes a task's status.

Every move checks the actor's role and the task's state against RULES, writes the new state, a
TaskEvent and its side-effect jobs in the caller's transaction, and publishes the event with
`pg_notify`, which PostgreSQL delivers only if that transaction commits. Services flush, never commit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Text, cast, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import jobs, metrics, repository
from osiris.app.actors import Actor
from osiris.app.artifacts import ValidArtifact
from osiris.app.errors import (
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotClaimable,
    NotYourTask,
    TaskNotFound,
)
from osiris.app.models import OPEN_STATUSES, Artifact, Message, Role, Task, TaskEvent, TaskStatus

EVENTS_CHANNEL = "osiris_events"
S = TaskStatus
SYSTEM = "system"  # stands for the system actor in RULES
REQUESTER = "requester"  # the person who asked, through their channel (no account)


class Action(enum.StrEnum):
    CLAIM = "claim"
    RELEASE = "release"
    EXPIRE = "expire"
    SUBMIT = "submit"
    REQUEST_CHANGES = "request_changes"
    APPROVE = "approve"
    CANCEL = "cancel"
    MERGE_FAILED = "merge_failed"
    REOPEN = "reopen"


@dataclass(frozen=True)
class Rule:
    sources: frozenset[TaskStatus]
    target: TaskStatus
    roles: frozenset[Role | str]
    holder_only: bool = False  # an agent may do it only to a task it holds


RULES: dict[Action, Rule] = {
    Action.CLAIM: Rule(frozenset({S.PENDING}), S.IN_PROGRESS, frozenset({Role.AGENT})),
    Action.RELEASE: Rule(frozenset({S.IN_PROGRESS}), S.PENDING, frozenset({Role.AGENT, Role.ADMIN}), True),
    Action.EXPIRE: Rule(frozenset({S.IN_PROGRESS}), S.PENDING, frozenset({SYSTEM})),
    Action.SUBMIT: Rule(frozenset({S.IN_PROGRESS}), S.REVIEW, frozenset({Role.AGENT}), True),
    Action.REQUEST_CHANGES: Rule(
        frozenset({S.REVIEW}), S.IN_PROGRESS, frozenset({Role.REVIEWER, Role.ADMIN})
    ),
    # DONE and REJECTED need a human: no agent and no system actor appears in these two rules.
    Action.APPROVE: Rule(frozenset({S.REVIEW}), S.DONE, frozenset({Role.REVIEWER, Role.ADMIN})),
    # A requester may withdraw their own request (the channel edge checks it is theirs).
    Action.CANCEL: Rule(
        frozenset(OPEN_STATUSES), S.REJECTED, frozenset({Role.REVIEWER, Role.ADMIN, REQUESTER})
    ),
    # The code host could not merge an approved task (conflict, moved branch): only the system
    # reports that, and the task goes back to its agent; it undoes an approval, never grants one.
    Action.MERGE_FAILED: Rule(frozenset({S.DONE}), S.IN_PROGRESS, frozenset({SYSTEM})),
    # A rejected change request reopened by a person (e.g. the PR reopened on GitHub) is back in review.
    Action.REOPEN: Rule(frozenset({S.REJECTED}), S.REVIEW, frozenset({Role.REVIEWER, Role.ADMIN})),
}


def check(action: Action, status: str, actor: Actor, holder_id: int | None) -> TaskStatus:
    """Decide a move without touching the database; raise the typed error that explains a refusal."""
    rule = RULES[action]
    role = actor.rule_role
    if role not in rule.roles:
        raise Forbidden(f"role {role} may not {action.value} a task")
    if rule.holder_only and actor.is_agent and holder_id != actor.user_id:
        raise NotYourTask(f"you do not hold this task; you may not {action.value} it")
    if TaskStatus(status) not in rule.sources:
        if action is Action.CLAIM:
            raise NotClaimable(f"task is {status}, not PENDING")
        raise IllegalTransition(f"cannot {action.value} a task that is {status}")
    return rule.target


async def record_event(
    session: AsyncSession,
    task: Task,
    actor: Actor,
    kind: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append to the task's log and announce it; returns the event id.

    One statement inserts the row and calls pg_notify, which PostgreSQL delivers to every
    listening replica only when the transaction commits (and never if it rolls back).
    """
    ev = (
        insert(TaskEvent)
        .values(
            org_id=task.org_id,
            task_id=task.id,
            kind=kind,
            actor_id=actor.user_id,
            actor_name=actor.name,
            from_status=from_status,
            to_status=to_status,
            data=data or {},
        )
        .returning(TaskEvent.id)
        .cte("ev")
    )
    note = func.json_build_object(
        literal("id"), ev.c.id,
        literal("task_id"), literal(task.id, BigInteger),
        literal("org_id"), literal(task.org_id, BigInteger),
        literal("kind"), literal(kind),
        literal("status"), literal(task.status),
    )  # fmt: skip
    stmt = select(ev.c.id, func.pg_notify(literal(EVENTS_CHANNEL), cast(note, Text)))
    return (await session.execute(stmt)).scalar_one()


async def _move(
    session: AsyncSession,
    task: Task,
    actor: Actor,
    action: Action,
    *,
    data: dict[str, Any] | None = None,
    **changes: Any,
) -> int:
    source = task.status
    target = check(action, source, actor, task.assignee_id)
    task.status = target.value
    for key, value in changes.items():
        setattr(task, key, value)
    task.updated_at = _now()
    await session.flush()
    metrics.TRANSITIONS.labels(action.value, target.value).inc()
    event_id = await record_event(
        session, task, actor, action.value, from_status=source, to_status=target, data=data
    )
    if task.channel != "api":
        await jobs.enqueue(session, jobs.NOTIFY_REQUESTER, {"task_id": task.id, "event_id": event_id})
    return event_id


def _now() -> datetime:
    return datetime.now(UTC)


def _lease(seconds: int) -> datetime:
    # Python's clock, not the database's: values stay readable after flush without a round trip.
    # The sweeper compares with the database's now(); replicas' clocks are assumed NTP-synced.
    return _now() + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Submission:
    artifact: Artifact
    created: bool  # False when an idempotency key matched an earlier submission
    job_id: int | None  # the publishing job, while it runs


# --- creation ----------------------------------------------------------------------------------


async def create_task(
    session: AsyncSession,
    actor: Actor,
    *,
    title: str,
    description: str = "",
    priority: int = 1,
    repo: str,
    base_branch: str,
    requester: str | None = None,
    channel: str = "api",
    channel_thread: str | None = None,
) -> Task:
    if not title.strip():
        raise InvalidInput("title must not be empty")
    task = Task(
        org_id=actor.org_id,
        title=title.strip(),
        description=description,
        priority=priority,
        repo=repo,
        base_branch=base_branch,
        requester=requester or actor.name,
        channel=channel,
        channel_thread=channel_thread,
        created_by_id=actor.user_id,
        status=TaskStatus.PENDING.value,
    )
    session.add(task)
    await session.flush()
    await session.refresh(task)
    await record_event(session, task, actor, "created", to_status=task.status)
    return task


# --- the agent's side --------------------------------------------------------------------------


async def _claim(session: AsyncSession, actor: Actor, which: Any, *, lease_seconds: int) -> Task | None:
    """One conditional UPDATE decides a race: whoever's statement matches PENDING first wins."""
    stmt = (
        update(Task)
        .where(Task.id == which, Task.org_id == actor.org_id, Task.status == TaskStatus.PENDING.value)
        .values(
            status=TaskStatus.IN_PROGRESS.value,
            assignee_id=actor.user_id,
            lease_expires_at=_lease(lease_seconds),
            updated_at=_now(),
        )
        .returning(Task)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    task = (await session.execute(stmt)).scalar_one_or_none()
    if task is None:
        return None
    metrics.TRANSITIONS.labels(Action.CLAIM.value, task.status).inc()
    event_id = await record_event(
        session, task, actor, Action.CLAIM.value, from_status=TaskStatus.PENDING, to_status=task.status
    )
    if task.channel != "api":
        await jobs.enqueue(session, jobs.NOTIFY_REQUESTER, {"task_id": task.id, "event_id": event_id})
    return task


async def claim_task(session: AsyncSession, actor: Actor, task_id: int, *, lease_seconds: int) -> Task:
    check(Action.CLAIM, TaskStatus.PENDING, actor, None)  # the role check, before any SQL
    task = await _claim(session, actor, task_id, lease_seconds=lease_seconds)
    if task is None:
        current = await repository.get_task(session, actor, task_id)  # TaskNotFound if absent
        raise NotClaimable(f"task {task_id} is {current.status}, not PENDING")
    return task


async def claim_next(
    session: AsyncSession, actor: Actor, *, lease_seconds: int, repo: str | None = None
) -> Task | None:
    """Take the best pending task; concurrent callers skip the rows others are taking."""
    check(Action.CLAIM, TaskStatus.PENDING, actor, None)
    pick = (
        select(Task.id)
        .where(Task.org_id == actor.org_id, Task.status == TaskStatus.PENDING.value)
        .order_by(Task.priority.desc(), Task.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if repo is not None:
        pick = pick.where(Task.repo == repo)
    return await _claim(session, actor, pick.scalar_subquery(), lease_seconds=lease_seconds)


async def heartbeat(session: AsyncSession, actor: Actor, task_id: int, *, lease_seconds: int) -> Task:
    """Renew the holder's lease; any call by the holder does this."""
    stmt = (
        update(Task)
        .where(
            Task.id == task_id,
            Task.org_id == actor.org_id,
            Task.assignee_id == actor.user_id,
            Task.status == TaskStatus.IN_PROGRESS.value,
        )
        .values(lease_expires_at=_lease(lease_seconds))
        .returning(Task)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    task = (await session.execute(stmt)).scalar_one_or_none()
    if task is None:
        current = await repository.get_task(session, actor, task_id)
        if current.assignee_id != actor.user_id:
            raise NotYourTask(f"you do not hold task {task_id}")
        raise IllegalTransition(f"task {task_id} is {current.status}; there is no lease to renew")
    return task


async def release_task(session: AsyncSession, actor: Actor, task_id: int, *, reason: str = "") -> Task:
    task = await repository.get_task(session, actor, task_id, for_update=True)
    await _move(
        session, task, actor, Action.RELEASE, data={"reason": reason}, assignee_id=None, lease_expires_at=None
    )
    return task


async def submit_artifact(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    artifact: ValidArtifact,
    summary: str | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """Store the next version and move the task to REVIEW.

    The task row lock serialises submissions, so versions are 1..n without gaps; the unique
    (task, version) constraint backs that up. A repeated idempotency key returns the first result.
    """
    task = await repository.get_task(session, actor, task_id, for_update=True)
    if idempotency_key:
        existing = (
            await session.execute(
                select(Artifact).where(
                    Artifact.task_id == task.id, Artifact.idempotency_key == idempotency_key
                )
            )
        ).scalar_one_or_none()
        if existing is not None:
            if existing.author_id != actor.user_id:
                raise NotYourTask("that idempotency key belongs to another agent's submission")
            return Submission(existing, created=False, job_id=None)
    check(Action.SUBMIT, task.status, actor, task.assignee_id)  # refuse before writing anything
    version = task.artifact_count + 1
    row = Artifact(
        org_id=task.org_id,
        task_id=task.id,
        version=version,
        kind=artifact.kind.value,
        content=artifact.content,
        summary=summary,
        size_bytes=len(artifact.content.encode()),
        author_id=actor.user_id,
        idempotency_key=idempotency_key,
        branch=f"osiris/task-{task.id}",
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:  # the database disagrees with our lock: refuse rather than guess
        raise IllegalTransition("a concurrent submission took this version") from exc
    await _move(
        session,
        task,
        actor,
        Action.SUBMIT,
        data={"version": version, "artifact_id": row.id},
        artifact_count=version,
    )
    job_id = await jobs.enqueue(
        session,
        jobs.PUBLISH_ARTIFACT,
        {"artifact_id": row.id, "task_id": task.id},
        dedupe_key=f"publish-{row.id}",
    )
    return Submission(row, created=True, job_id=job_id)


# --- the humans' side --------------------------------------------------------------------------


async def request_changes(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    feedback: str,
    lease_seconds: int,
    source: str = "api",
    provider_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Task:
    if not feedback.strip():
        raise InvalidInput("feedback must say what to change")
    task = await repository.get_task(session, actor, task_id, for_update=True)
    # The holder keeps the task, with a fresh lease to address the feedback.
    await _move(session, task, actor, Action.REQUEST_CHANGES, lease_expires_at=_lease(lease_seconds))
    await add_message(
        session,
        task,
        actor,
        body=feedback,
        source=source,
        provider_id=provider_id,
        meta=meta,
        kind="feedback",
    )
    return task


async def approve_task(
    session: AsyncSession, actor: Actor, task_id: int, *, comment: str | None = None
) -> Task:
    task = await repository.get_task(session, actor, task_id, for_update=True)
    await _move(
        session,
        task,
        actor,
        Action.APPROVE,
        data={"comment": comment} if comment else None,
        lease_expires_at=None,
    )
    await jobs.enqueue(session, jobs.MERGE_TASK, {"task_id": task.id}, dedupe_key=f"merge-{task.id}")
    return task


async def cancel_task(
    session: AsyncSession, actor: Actor, task_id: int, *, reason: str | None = None
) -> Task:
    task = await repository.get_task(session, actor, task_id, for_update=True)
    had_artifacts = task.artifact_count > 0
    await _move(
        session,
        task,
        actor,
        Action.CANCEL,
        data={"reason": reason} if reason else None,
        lease_expires_at=None,
    )
    if had_artifacts:
        await jobs.enqueue(session, jobs.CLOSE_TASK, {"task_id": task.id}, dedupe_key=f"close-{task.id}")
    return task


async def merge_failed(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    feedback: str,
    lease_seconds: int,
    meta: dict[str, Any] | None = None,
) -> Task:
    """An approved task could not be merged: back to its holder, with the reason as feedback."""
    task = await repository.get_task(session, actor, task_id, for_update=True)
    await _move(session, task, actor, Action.MERGE_FAILED, data=meta, lease_expires_at=_lease(lease_seconds))
    await add_message(session, task, actor, body=feedback, source="code_host", meta=meta, kind="feedback")
    return task


async def reopen_task(
    session: AsyncSession, actor: Actor, task_id: int, *, reason: str | None = None
) -> Task:
    """A rejected task whose change request a person reopened goes back to REVIEW."""
    task = await repository.get_task(session, actor, task_id, for_update=True)
    check(Action.REOPEN, task.status, actor, task.assignee_id)  # role and state first
    if task.artifact_count == 0:
        raise IllegalTransition("only a task with a submitted version can be reopened for review")
    await _move(session, task, actor, Action.REOPEN, data={"reason": reason} if reason else None)
    return task


# --- messages ----------------------------------------------------------------------------------


async def add_message(
    session: AsyncSession,
    task: Task,
    actor: Actor,
    *,
    body: str,
    source: str,
    provider_id: str | None = None,
    meta: dict[str, Any] | None = None,
    kind: str = "message",
    author_name: str | None = None,
) -> Message | None:
    """Append to the task's thread; a provider id seen before is ignored (returns None)."""
    if not body.strip():
        raise InvalidInput("message body must not be empty")
    if provider_id is not None:
        seen = await session.scalar(
            select(Message.id).where(
                Message.task_id == task.id, Message.source == source, Message.provider_id == provider_id
            )
        )
        if seen is not None:
            return None
    msg = Message(
        org_id=task.org_id,
        task_id=task.id,
        author_id=actor.user_id,
        author_name=author_name or actor.name,
        direction="from_agent" if actor.is_agent else "to_agent",
        source=source,
        body=body,
        provider_id=provider_id,
        meta={"kind": kind, **(meta or {})},
    )
    session.add(msg)
    await session.flush()
    await record_event(session, task, actor, "message", data={"message_id": msg.id, "source": source})
    if source in ("api", "portal", "mcp"):  # our own words go out; imported ones came from there
        await jobs.enqueue(session, jobs.DELIVER_MESSAGE, {"message_id": msg.id, "task_id": task.id})
    return msg


async def post_message(
    session: AsyncSession, actor: Actor, task_id: int, *, body: str, source: str
) -> Message:
    task = await repository.get_task(session, actor, task_id, for_update=actor.is_agent)
    if actor.is_agent and task.assignee_id != actor.user_id:
        raise NotYourTask("an agent may only write on a task it holds")
    msg = await add_message(session, task, actor, body=body, source=source)
    assert msg is not None  # noqa: S101 - no provider id, so never deduplicated
    return msg


# --- the lease sweeper -------------------------------------------------------------------------


async def expire_leases(session: AsyncSession, *, limit: int = 100) -> list[int]:
    """Return expired claims to PENDING, each with an event. Safe to run on every replica at once."""
    from osiris.app.actors import system_actor

    stale = (
        select(Task)
        .where(Task.status == TaskStatus.IN_PROGRESS.value, Task.lease_expires_at < func.now())
        .order_by(Task.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    returned = []
    for task in (await session.execute(stale)).scalars().all():
        holder = task.assignee_id
        await _move(
            session,
            task,
            system_actor(task.org_id, "lease-sweeper"),
            Action.EXPIRE,
            data={"previous_holder_id": holder},
            assignee_id=None,
            lease_expires_at=None,
        )
        returned.append(task.id)
    return returned


__all__ = ["RULES", "Action", "TaskNotFound", "check"]
