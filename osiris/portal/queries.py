"""The portal's reads. Every query starts from task_queries.readable_tasks, so it is org-scoped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import task_queries
from osiris.app.actors import Actor
from osiris.app.models import Task, TaskEvent, TaskStatus, User

COLUMN_LIMIT = 50  # cards shown per column; the count above it is the full number
ARCHIVE_PAGE = 50  # closed tasks per archive page
CLOSED = (TaskStatus.DONE, TaskStatus.REJECTED)
CLOSED_VALUES = tuple(s.value for s in CLOSED)


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
    count: int = 0  # a closed column: those closed within the board's window
    tasks: list[Task] = field(default_factory=list)
    older: int = 0  # a closed column: closed before the window, on the archive page


@dataclass
class CardFacts:
    """What a card says beyond the task row: since when it is in its state, and who closed it."""

    since: datetime | None = None
    closed_by: str | None = None  # the approver (Done) or who cancelled (Cancelled)


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
    stmt = task_queries.readable_tasks(actor)
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


async def board(session: AsyncSession, actor: Actor, f: BoardFilters, *, closed_since: datetime) -> Board:
    """Open columns in full; Done and Cancelled only for tasks closed since `closed_since` (a closed
    task is not updated again, so its updated_at is when it closed)."""
    last_id = await last_event_id(session, actor)
    base = filtered(actor, f).subquery()
    # Per status, split into inside the window (always, for open statuses) and before it.
    marked = select(
        base.c.status,
        (base.c.status.notin_(CLOSED_VALUES) | (base.c.updated_at >= closed_since)).label("recent"),
    ).subquery()
    grouped = select(marked.c.status, marked.c.recent, func.count()).group_by(
        marked.c.status, marked.c.recent
    )
    counts: dict[tuple[str, bool], int] = {
        (status, bool(recent)): n for status, recent, n in await session.execute(grouped)
    }
    columns = []
    for status in TaskStatus:
        # Open work: most urgent first; finished work: most recent first.
        order = (
            (Task.priority.desc(), Task.updated_at.desc())
            if status not in CLOSED
            else (Task.updated_at.desc(),)
        )
        stmt = filtered(actor, f).where(Task.status == status.value).order_by(*order, Task.id.desc())
        if status in CLOSED:
            stmt = stmt.where(Task.updated_at >= closed_since)
        tasks = (await session.execute(stmt.limit(COLUMN_LIMIT))).scalars().all()
        column = Column(status, counts.get((status.value, True), 0), list(tasks))
        column.older = counts.get((status.value, False), 0)
        columns.append(column)
    org_tasks = task_queries.readable_tasks(actor).subquery()
    repos = (await session.execute(select(org_tasks.c.repo).distinct().order_by(org_tasks.c.repo))).scalars()
    channels = (
        await session.execute(select(org_tasks.c.channel).distinct().order_by(org_tasks.c.channel))
    ).scalars()
    return Board(columns, last_id, list(repos), list(channels), await people(session, actor))


async def card_facts(session: AsyncSession, actor: Actor, tasks: Sequence[Task]) -> dict[int, CardFacts]:
    """Per task: when it entered its current state (its latest status change) and, if closed, who
    closed it (the latest approve or cancel). Two queries for the whole board."""
    ids = [t.id for t in tasks]
    facts = {i: CardFacts() for i in ids}
    if not ids:
        return facts
    mine = (TaskEvent.org_id == actor.org_id, TaskEvent.task_id.in_(ids))
    since = select(TaskEvent.task_id, func.max(TaskEvent.created_at)).where(
        *mine, TaskEvent.to_status.is_not(None)
    )
    for task_id, at in await session.execute(since.group_by(TaskEvent.task_id)):
        facts[task_id].since = at
    closers = (
        select(TaskEvent.task_id, TaskEvent.actor_name)
        .where(*mine, TaskEvent.kind.in_(("approve", "cancel")))
        .ext(distinct_on(TaskEvent.task_id))
        .order_by(TaskEvent.task_id, TaskEvent.id.desc())
    )
    status = {t.id: t.status for t in tasks}
    for task_id, name in await session.execute(closers):
        if status[task_id] in CLOSED_VALUES:
            facts[task_id].closed_by = name
    return facts


async def archive(
    session: AsyncSession, actor: Actor, *, closed_before: datetime, page: int
) -> tuple[Sequence[Task], int]:
    """Tasks closed before the board's window, most recently closed first, a page at a time; and
    how many there are in all."""
    stmt = task_queries.readable_tasks(actor).where(
        Task.status.in_(CLOSED_VALUES), Task.updated_at < closed_before
    )
    total = int(await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = await session.execute(
        stmt.order_by(Task.updated_at.desc(), Task.id.desc())
        .offset((page - 1) * ARCHIVE_PAGE)
        .limit(ARCHIVE_PAGE)
    )
    return rows.scalars().all(), total


async def people(session: AsyncSession, actor: Actor) -> dict[int, User]:
    users = await session.execute(select(User).where(User.org_id == actor.org_id).order_by(User.username))
    return {u.id: u for u in users.scalars()}


async def audit_log(  # noqa: PLR0913 - the audit page's filters, each optional and keyword-only
    session: AsyncSession,
    actor: Actor,
    *,
    before_id: int | None = None,
    kind: str | None = None,
    actor_name: str | None = None,
    task_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> Sequence[tuple[TaskEvent, str]]:
    """The organization's events, newest first, each with its task's title; `until` is exclusive."""
    stmt = (
        select(TaskEvent, Task.title)
        .join(Task, Task.id == TaskEvent.task_id)
        .where(TaskEvent.org_id == actor.org_id, Task.org_id == actor.org_id)
    )
    if before_id is not None:
        stmt = stmt.where(TaskEvent.id < before_id)
    if kind:
        stmt = stmt.where(TaskEvent.kind == kind)
    if actor_name:
        stmt = stmt.where(TaskEvent.actor_name == actor_name)
    if task_id is not None:
        stmt = stmt.where(TaskEvent.task_id == task_id)
    if since is not None:
        stmt = stmt.where(TaskEvent.created_at >= since)
    if until is not None:
        stmt = stmt.where(TaskEvent.created_at < until)
    rows = await session.execute(stmt.order_by(TaskEvent.id.desc()).limit(limit))
    return [(event, title) for event, title in rows.all()]
