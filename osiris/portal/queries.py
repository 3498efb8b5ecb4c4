"""The portal's reads. Every query starts from repository.readable_tasks, so it is org-scoped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import repository
from osiris.app.actors import Actor
from osiris.app.models import Task, TaskEvent, TaskStatus, User

COLUMN_LIMIT = 50  # cards shown per column; the count above it is the full number


@dataclass(frozen=True)
class BoardFilters:
    repo: str | None = None
    assignee_id: int | None = None
    priority: int | None = None
    channel: str | None = None
    q: str | None = None

    @property
    def active(self) -> bool:
        return any(
            v not in (None, "") for v in (self.repo, self.assignee_id, self.priority, self.channel, self.q)
        )


@dataclass
class Column:
    status: TaskStatus
    count: int = 0
    tasks: list[Task] = field(default_factory=list)


@dataclass
class Board:
    columns: list[Column]
    last_event_id: int
    repos: Sequence[str]
    channels: Sequence[str]
    people: dict[int, User]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filtered(actor: Actor, f: BoardFilters) -> Select[tuple[Task]]:
    stmt = repository.readable_tasks(actor)
    if f.repo:
        stmt = stmt.where(Task.repo == f.repo)
    if f.assignee_id is not None:
        stmt = stmt.where(Task.assignee_id == f.assignee_id)
    if f.priority is not None:
        stmt = stmt.where(Task.priority == f.priority)
    if f.channel:
        stmt = stmt.where(Task.channel == f.channel)
    if f.q:
        text = f.q.strip()
        if text.lstrip("#").isdigit():  # "#12" finds task 12 as well as titles mentioning it
            number = int(text.lstrip("#"))
            if number < 2**63:
                stmt = stmt.where(or_(Task.id == number, Task.title.ilike(f"%{_escape_like(text)}%")))
        else:
            pattern = f"%{_escape_like(text)}%"
            stmt = stmt.where(or_(Task.title.ilike(pattern), Task.description.ilike(pattern)))
    return stmt


async def last_event_id(session: AsyncSession, actor: Actor, task_id: int | None = None) -> int:
    """Where a freshly rendered page's live stream resumes from. Read before the page's data, so an
    event that lands in between is replayed rather than lost."""
    stmt = select(func.coalesce(func.max(TaskEvent.id), 0)).where(TaskEvent.org_id == actor.org_id)
    if task_id is not None:
        stmt = stmt.where(TaskEvent.task_id == task_id)
    return int(await session.scalar(stmt) or 0)


async def board(session: AsyncSession, actor: Actor, f: BoardFilters) -> Board:
    last_id = await last_event_id(session, actor)
    base = filtered(actor, f).subquery()
    counts = dict((await session.execute(select(base.c.status, func.count()).group_by(base.c.status))).all())
    columns = []
    for status in TaskStatus:
        # Open work: most urgent first; finished work: most recent first.
        order = (
            (Task.priority.desc(), Task.updated_at.desc())
            if status in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW)
            else (Task.updated_at.desc(),)
        )
        stmt = filtered(actor, f).where(Task.status == status.value).order_by(*order, Task.id.desc())
        tasks = (await session.execute(stmt.limit(COLUMN_LIMIT))).scalars().all()
        columns.append(Column(status, counts.get(status.value, 0), list(tasks)))
    org_tasks = repository.readable_tasks(actor).subquery()
    repos = (await session.execute(select(org_tasks.c.repo).distinct().order_by(org_tasks.c.repo))).scalars()
    channels = (
        await session.execute(select(org_tasks.c.channel).distinct().order_by(org_tasks.c.channel))
    ).scalars()
    return Board(columns, last_id, list(repos), list(channels), await people(session, actor))


async def people(session: AsyncSession, actor: Actor) -> dict[int, User]:
    users = await session.execute(select(User).where(User.org_id == actor.org_id).order_by(User.username))
    return {u.id: u for u in users.scalars()}


async def audit_log(
    session: AsyncSession,
    actor: Actor,
    *,
    before_id: int | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> Sequence[TaskEvent]:
    stmt = select(TaskEvent).where(TaskEvent.org_id == actor.org_id)
    if before_id is not None:
        stmt = stmt.where(TaskEvent.id < before_id)
    if kind:
        stmt = stmt.where(TaskEvent.kind == kind)
    return (await session.execute(stmt.order_by(TaskEvent.id.desc()).limit(limit))).scalars().all()
