"""The agent's operations, over the lifecycle service and the repository, in the caller's transaction.

The MCP tools (and the REST routes the stdio bridge needs) call these; none of them sets a status:
moves go through `lifecycle`, submissions through `submissions.submit`. A call by the holder of an
IN_PROGRESS task renews its lease, so an agent that is working never loses its claim.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import lifecycle, reviews, submissions, task_queries
from osiris.app.actors import Actor
from osiris.app.api.tasks import latest_pr_url, task_read, task_with_git
from osiris.app.errors import NotFound
from osiris.app.models import Task, TaskStatus
from osiris.app.routing import Aging
from osiris.app.runtime import Runtime
from osiris.app.schemas import (
    PRIORITIES,
    ArtifactDetail,
    ArtifactRead,
    MessageRead,
    PriorityName,
    ReviewCommentRead,
)
from osiris.mcp import feedback
from osiris.mcp.schemas import (
    FEEDBACK_PAGE,
    ClaimedTask,
    FeedbackBatch,
    FeedbackItem,
    MyTasks,
    PendingTask,
    PendingTasks,
    PostedMessage,
    ReleasedTask,
    SubmissionResult,
    TaskContext,
    WhoAmI,
    claimed,
    submission_result,
    task_context,
)


def whoami(actor: Actor) -> WhoAmI:
    assert actor.user_id is not None and actor.role is not None  # noqa: S101 - tokens always name a user
    return WhoAmI(
        user_id=actor.user_id,
        org_id=actor.org_id,
        name=actor.name,
        role=actor.role.value,
        is_superuser=actor.superuser,
    )


def _holds(actor: Actor, task: Task) -> bool:
    return actor.is_agent and task.status == TaskStatus.IN_PROGRESS and task.assignee_id == actor.user_id


async def _renew(session: AsyncSession, runtime: Runtime, actor: Actor, task: Task) -> Task:
    if not _holds(actor, task):
        return task
    return await lifecycle.heartbeat(
        session, actor, task.id, lease_seconds=runtime.settings.tasks.lease_seconds
    )


async def _context(session: AsyncSession, runtime: Runtime, actor: Actor, task: Task) -> TaskContext:
    artifacts = (  # most claims are of fresh tasks: skip the query there is nothing for
        [
            ArtifactRead.model_validate(a)
            for a in await task_queries.artifacts_of(session, task, content=False)
        ]
        if task.artifact_count
        else []
    )
    messages = [MessageRead.model_validate(m) for m in await task_queries.messages_of(session, task)]
    return task_context(
        await task_with_git(runtime, task, pr_url=latest_pr_url(artifacts)),
        you=actor.user_id,
        messages=messages,
        artifacts=artifacts,
    )


async def read_pending_tasks(
    session: AsyncSession,
    actor: Actor,
    *,
    limit: int,
    repo: str | None = None,
    priority: PriorityName | None = None,
    aging: Aging,
) -> PendingTasks:
    tasks = await task_queries.pending_tasks(
        session,
        actor,
        limit=limit,
        repo=repo,
        min_priority=PRIORITIES[priority] if priority else None,
        aging=aging,
    )
    return PendingTasks(tasks=[PendingTask.from_row(t) for t in tasks])


async def claim_task(session: AsyncSession, runtime: Runtime, actor: Actor, task_id: int) -> ClaimedTask:
    task = await lifecycle.claim_task(
        session, actor, task_id, lease_seconds=runtime.settings.tasks.lease_seconds
    )
    context = await _context(session, runtime, actor, task)
    if context.feedback:  # the claim hands over all earlier feedback: read_feedback continues after it
        await feedback.advance(session, actor, task, context.feedback[-1].id)
    return claimed(context)


async def submit_artifact(
    session: AsyncSession,
    runtime: Runtime,
    actor: Actor,
    task_id: int,
    *,
    content: str | dict[str, str],
    kind: str = "auto",
    summary: str | None = None,
    idempotency_key: str | None = None,
) -> SubmissionResult:
    sub = await submissions.submit(
        session,
        runtime,
        actor,
        task_id,
        content=content,
        kind=kind,
        summary=summary,
        idempotency_key=idempotency_key,
    )
    task = await task_queries.get_task(session, actor, task_id)
    return submission_result(
        ArtifactRead.model_validate(sub.artifact), status=task.status, created=sub.created, job_id=sub.job_id
    )


async def read_feedback(
    session: AsyncSession,
    runtime: Runtime,
    actor: Actor,
    task_id: int,
    *,
    since: int | None = None,
    limit: int = FEEDBACK_PAGE,
) -> FeedbackBatch:
    task = await _renew(session, runtime, actor, await task_queries.get_task(session, actor, task_id))
    after = since if since is not None else await feedback.cursor_of(session, actor, task)
    rows = await feedback.messages_to_agent(session, task, after_id=after, limit=limit)
    items = [FeedbackItem.from_message(MessageRead.model_validate(m)) for m in rows]
    if items:
        await feedback.advance(session, actor, task, items[-1].id)
    cursor = items[-1].id if items else after
    threads = [ReviewCommentRead.model_validate(c) for c in await reviews.threads_of(session, task)]
    return FeedbackBatch(
        task_id=task.id,
        task_status=task.status,
        items=feedback.with_thread_states(items, {t.id: t.resolved for t in threads}),
        cursor=cursor,
        threads=threads,
    )


async def get_task(session: AsyncSession, runtime: Runtime, actor: Actor, task_id: int) -> TaskContext:
    task = await _renew(session, runtime, actor, await task_queries.get_task(session, actor, task_id))
    return await _context(session, runtime, actor, task)


async def get_artifact(
    session: AsyncSession, runtime: Runtime, actor: Actor, task_id: int, *, version: int
) -> ArtifactDetail:
    task = await _renew(session, runtime, actor, await task_queries.get_task(session, actor, task_id))
    artifact = await task_queries.artifact_version(session, task, version)
    if artifact is None:
        raise NotFound(f"task {task_id} has no version {version}")
    return ArtifactDetail.model_validate(artifact)


async def list_my_tasks(session: AsyncSession, runtime: Runtime, actor: Actor) -> MyTasks:
    mine: list[Task] = []
    for status in (TaskStatus.IN_PROGRESS, TaskStatus.REVIEW):
        tasks = await task_queries.list_tasks(
            session, actor, status=status.value, assignee_id=actor.user_id, limit=200
        )
        mine.extend([await _renew(session, runtime, actor, t) for t in tasks])
    mine.sort(key=lambda t: t.id)
    return MyTasks(tasks=[task_read(t) for t in mine])


async def post_message(
    session: AsyncSession, runtime: Runtime, actor: Actor, task_id: int, *, body: str
) -> PostedMessage:
    message = await lifecycle.post_message(session, actor, task_id, body=body, source="mcp")
    await _renew(session, runtime, actor, await task_queries.get_task(session, actor, task_id))
    return PostedMessage(message=MessageRead.model_validate(message))


async def release_task(
    session: AsyncSession, actor: Actor, task_id: int, *, reason: str = ""
) -> ReleasedTask:
    return ReleasedTask(task=task_read(await lifecycle.release_task(session, actor, task_id, reason=reason)))


async def check_readable(session: AsyncSession, actor: Actor, task_id: int) -> None:
    """Raise TaskNotFound unless the actor's organization owns the task."""
    await task_queries.get_task(session, actor, task_id)
