"""Task queries, always scoped to one organization: callers cannot forget the filter."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from osiris.app import routing
from osiris.app.actors import Actor
from osiris.app.errors import TaskNotFound
from osiris.app.models import Artifact, Message, Task, TaskEvent


def readable_tasks(actor: Actor) -> Select[tuple[Task]]:
    return select(Task).where(Task.org_id == actor.org_id)


async def get_task(session: AsyncSession, actor: Actor, task_id: int, *, for_update: bool = False) -> Task:
    stmt = readable_tasks(actor).where(Task.id == task_id)
    if for_update:
        stmt = stmt.with_for_update()
    task = (await session.execute(stmt)).scalar_one_or_none()
    if task is None:  # another organization's task is indistinguishable from a missing one
        raise TaskNotFound(f"task {task_id} not found")
    return task


async def list_tasks(
    session: AsyncSession,
    actor: Actor,
    *,
    status: str | None = None,
    assignee_id: int | None = None,
    priority: int | None = None,
    repo: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> Sequence[Task]:
    stmt = readable_tasks(actor)
    if status is not None:
        stmt = stmt.where(Task.status == status)
    if assignee_id is not None:
        stmt = stmt.where(Task.assignee_id == assignee_id)
    if priority is not None:
        stmt = stmt.where(Task.priority == priority)
    if repo is not None:
        stmt = stmt.where(Task.repo == repo)
    if after_id is not None:
        stmt = stmt.where(Task.id < after_id)  # newest first: the cursor walks down
    stmt = stmt.order_by(Task.id.desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def pending_tasks(
    session: AsyncSession,
    actor: Actor,
    *,
    limit: int = 20,
    repo: str | None = None,
    min_priority: int | None = None,
    aging: routing.Aging,
) -> Sequence[Task]:
    """The queue an agent sees: only what it may claim (routing), highest effective priority
    (priority lifted by age) first, then oldest. People see every pending task."""
    stmt = readable_tasks(actor).where(Task.status == "PENDING")
    if actor.is_agent:
        stmt = stmt.where(routing.claimable_by(actor))
    if repo is not None:
        stmt = stmt.where(Task.repo == repo)
    if min_priority is not None:
        stmt = stmt.where(Task.priority >= min_priority)
    effective = routing.effective_priority(aging)
    stmt = stmt.order_by(effective.desc(), Task.id).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def artifacts_of(session: AsyncSession, task: Task, *, content: bool = True) -> Sequence[Artifact]:
    """The task's versions, oldest first. `content=False` for listings: a version may hold
    OSIRIS_MAX_ARTIFACT_BYTES, so many of them are not read into memory to be dropped (and reading
    `.content` then raises instead of loading it)."""
    stmt = select(Artifact).where(Artifact.task_id == task.id).order_by(Artifact.version)
    if not content:
        stmt = stmt.options(defer(Artifact.content, raiseload=True))
    return (await session.execute(stmt)).scalars().all()


async def pr_url_of(session: AsyncSession, task: Task) -> str | None:
    """The task's change request link: the newest version that has one. Kept by every transition,
    so an answer about a closed task still links to what was merged or closed."""
    return await session.scalar(
        select(Artifact.pr_url)
        .where(Artifact.task_id == task.id, Artifact.pr_url.is_not(None))
        .order_by(Artifact.version.desc())
        .limit(1)
    )


async def artifact_version(session: AsyncSession, task: Task, version: int) -> Artifact | None:
    stmt = select(Artifact).where(Artifact.task_id == task.id, Artifact.version == version)
    return (await session.execute(stmt)).scalar_one_or_none()


async def messages_of(
    session: AsyncSession, task: Task, *, after_id: int | None = None, direction: str | None = None
) -> Sequence[Message]:
    stmt = select(Message).where(Message.task_id == task.id)
    if after_id is not None:
        stmt = stmt.where(Message.id > after_id)
    if direction is not None:
        stmt = stmt.where(Message.direction == direction)
    return (await session.execute(stmt.order_by(Message.id))).scalars().all()


async def events_of(
    session: AsyncSession, task: Task, *, after_id: int | None = None, limit: int = 500
) -> Sequence[TaskEvent]:
    stmt = select(TaskEvent).where(TaskEvent.task_id == task.id)
    if after_id is not None:
        stmt = stmt.where(TaskEvent.id > after_id)
    return (await session.execute(stmt.order_by(TaskEvent.id).limit(limit))).scalars().all()
