"""REST routes `osiris mcp` needs beyond the core API: who the token is, and the feedback cursor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from osiris.app.auth import ActorDep, RuntimeDep, SessionDep
from osiris.mcp import service
from osiris.mcp.schemas import FeedbackBatch, WhoAmI

router = APIRouter(prefix="/api/v1", tags=["agents"])


class FeedbackReadIn(BaseModel):
    since: int | None = Field(
        default=None, ge=0, description="a message id; omit to continue after your last read"
    )


@router.get("/agent/me", response_model=WhoAmI)
async def whoami(actor: ActorDep) -> WhoAmI:
    return service.whoami(actor)


@router.post("/tasks/{task_id}/feedback/read", response_model=FeedbackBatch)
async def read_feedback(
    task_id: int,
    actor: ActorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    body: Annotated[FeedbackReadIn | None, Body()] = None,
) -> FeedbackBatch:
    """Messages to the agent since the caller's last read (or `since`), oldest first; moves the cursor."""
    since = body.since if body else None
    return await service.read_feedback(session, runtime, actor, task_id, since=since)
