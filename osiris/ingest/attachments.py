"""REST: the files that came with a chat request, for agents and reviewers."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from osiris.app import task_queries
from osiris.app.auth import ActorDep, SessionDep
from osiris.app.errors import NotFound
from osiris.app.models import ChannelAttachment

router = APIRouter(prefix="/api/v1/tasks", tags=["channels"])


class AttachmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: int
    message_id: int | None
    filename: str
    content_type: str
    size_bytes: int
    url: str | None  # a provider's reference (WhatsApp media), not fetched by OSIRIS
    stored: bool


@router.get("/{task_id}/attachments", response_model=list[AttachmentRead])
async def list_attachments(task_id: int, actor: ActorDep, session: SessionDep) -> list[AttachmentRead]:
    task = await task_queries.get_task(session, actor, task_id)
    rows = (
        await session.execute(
            select(ChannelAttachment)
            .where(ChannelAttachment.task_id == task.id)
            .order_by(ChannelAttachment.id)
        )
    ).scalars()
    return [AttachmentRead.model_validate({**_fields(r), "stored": r.content is not None}) for r in rows]


@router.get("/{task_id}/attachments/{attachment_id}")
async def download_attachment(
    task_id: int, attachment_id: int, actor: ActorDep, session: SessionDep
) -> Response:
    task = await task_queries.get_task(session, actor, task_id)
    row = await session.scalar(
        select(ChannelAttachment).where(
            ChannelAttachment.task_id == task.id, ChannelAttachment.id == attachment_id
        )
    )
    if row is None or row.content is None:
        raise NotFound("no stored attachment with that id on this task")
    filename = row.filename.replace('"', "")
    return Response(
        row.content,
        # Served as a download, never rendered: the bytes came from a stranger's email.
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


def _fields(row: ChannelAttachment) -> dict:
    return {c: getattr(row, c) for c in AttachmentRead.model_fields if c != "stored"}
