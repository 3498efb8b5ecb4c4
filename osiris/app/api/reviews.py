"""REST: reviews as on a pull request — comments on lines of "Files changed", resolving threads,
and one review submission. Parse, authenticate, call `osiris.app.reviews`."""

from __future__ import annotations

from fastapi import APIRouter

from osiris.app import reviews, task_queries
from osiris.app.api.tasks import task_read
from osiris.app.auth import ActorDep, RuntimeDep, SessionDep
from osiris.app.schemas import (
    ReviewCommentCreate,
    ReviewCommentRead,
    ReviewCommentUpdate,
    ReviewCreate,
    TaskRead,
)

router = APIRouter(prefix="/api/v1/tasks", tags=["reviews"])


@router.get("/{task_id}/review-comments", response_model=list[ReviewCommentRead])
async def list_review_comments(task_id: int, actor: ActorDep, session: SessionDep) -> list[ReviewCommentRead]:
    """The task's comments on lines, oldest first, each with whether its thread is resolved."""
    task = await task_queries.get_task(session, actor, task_id)
    return [ReviewCommentRead.model_validate(c) for c in await reviews.threads_of(session, task)]


@router.post("/{task_id}/review-comments", status_code=201, response_model=ReviewCommentRead)
async def add_review_comment(
    task_id: int, body: ReviewCommentCreate, actor: ActorDep, session: SessionDep, runtime: RuntimeDep
) -> ReviewCommentRead:
    """A reviewer comments on lines of the newest published version's diff (agents: 403)."""
    comment = await reviews.add_comment(
        session,
        runtime,
        actor,
        task_id,
        path=body.path,
        line=body.line,
        start_line=body.start_line,
        side=body.side,
        body=body.body,
        version=body.version,
        head_sha=body.head_sha,
        source="api",
    )
    return ReviewCommentRead.model_validate(comment)


@router.patch("/{task_id}/review-comments/{comment_id}", response_model=ReviewCommentRead)
async def resolve_review_comment(
    task_id: int, comment_id: int, body: ReviewCommentUpdate, actor: ActorDep, session: SessionDep
) -> ReviewCommentRead:
    """Resolve (`{"resolved": true}`) or reopen a thread (agents: 403)."""
    comment = await reviews.set_resolved(session, actor, task_id, comment_id, resolved=body.resolved)
    return ReviewCommentRead.model_validate(comment)


@router.post("/{task_id}/reviews", response_model=TaskRead)
async def submit_review(
    task_id: int, body: ReviewCreate, actor: ActorDep, session: SessionDep, runtime: RuntimeDep
) -> TaskRead:
    """Approve, request changes or comment, pinned to `version` and `head_sha` when given."""
    task = await reviews.submit_review(
        session,
        runtime,
        actor,
        task_id,
        verdict=body.verdict,
        body=body.body,
        version=body.version,
        head_sha=body.head_sha,
        source="api",
    )
    return task_read(task, pr_url=await task_queries.pr_url_of(session, task))
