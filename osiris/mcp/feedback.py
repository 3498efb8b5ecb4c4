"""Feedback "since the last read": one cursor per (user, task) in the database.

A cursor only moves forward (GREATEST), so two sessions of one agent reading at once never make it
skip back and repeat, and it survives reconnects and replica hops.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app.actors import Actor
from osiris.app.errors import Forbidden
from osiris.app.models import FeedbackCursor, Message, Task
from osiris.mcp.schemas import TO_AGENT, FeedbackItem


def _reader(actor: Actor) -> int:
    if actor.user_id is None:
        raise Forbidden("only a user has a feedback cursor")
    return actor.user_id


async def cursor_of(session: AsyncSession, actor: Actor, task: Task) -> int | None:
    return await session.scalar(
        select(FeedbackCursor.last_message_id).where(
            FeedbackCursor.user_id == _reader(actor), FeedbackCursor.task_id == task.id
        )
    )


async def advance(session: AsyncSession, actor: Actor, task: Task, message_id: int) -> None:
    stmt = insert(FeedbackCursor).values(
        user_id=_reader(actor), task_id=task.id, org_id=task.org_id, last_message_id=message_id
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[FeedbackCursor.user_id, FeedbackCursor.task_id],
        set_={
            "last_message_id": func.greatest(FeedbackCursor.last_message_id, stmt.excluded.last_message_id),
            "updated_at": func.now(),
        },
    )
    await session.execute(stmt)


async def messages_to_agent(
    session: AsyncSession, task: Task, *, after_id: int | None, limit: int
) -> Sequence[Message]:
    stmt = select(Message).where(Message.task_id == task.id, Message.direction == TO_AGENT)
    if after_id is not None:
        stmt = stmt.where(Message.id > after_id)
    return (await session.execute(stmt.order_by(Message.id).limit(limit))).scalars().all()


def with_thread_states(items: list[FeedbackItem], resolved: dict[int, bool]) -> list[FeedbackItem]:
    """Each portal line comment as its thread is now (resolved or open), not as it was written."""

    def state(thread_id: int | None) -> bool | None:
        return resolved.get(thread_id) if thread_id is not None else None

    return [
        item.model_copy(
            update={
                "resolved": state(item.thread_id),
                "comments": [c.model_copy(update={"resolved": state(c.thread_id)}) for c in item.comments],
            }
        )
        if item.thread_id is not None or any(c.thread_id is not None for c in item.comments)
        else item
        for item in items
    ]
