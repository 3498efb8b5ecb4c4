"""REST: tasks, their artifacts, messages and events. Parse, authenticate, call the lifecycle."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel

from osiris.app import lifecycle, submissions, task_queries, version_diff
from osiris.app.auth import ActorDep, RuntimeDep, SessionDep
from osiris.app.errors import InvalidInput, NotFound
from osiris.app.git_access import git_access
from osiris.app.models import Task
from osiris.app.ports import branch_name
from osiris.app.routing import Aging
from osiris.app.runtime import Runtime
from osiris.app.schemas import (
    PRIORITIES,
    PRIORITY_NAMES,
    ApproveIn,
    ArtifactCreate,
    ArtifactDetail,
    ArtifactRead,
    CancelIn,
    EventRead,
    FileDiffRead,
    GitAccess,
    MessageCreate,
    MessageRead,
    PriorityName,
    RejectIn,
    SubmissionRead,
    TaskCreate,
    TaskDetail,
    TaskPage,
    TaskRead,
    VersionDiff,
)

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])


def latest_pr_url(artifacts: Sequence[ArtifactRead]) -> str | None:
    """The task's pull request: later versions may have moved it, so the newest one that has one."""
    return next((a.pr_url for a in reversed(artifacts) if a.pr_url), None)


def task_read(task: Task, *, pr_url: str | None = None, git: GitAccess | None = None) -> TaskRead:
    return TaskRead.model_validate(
        {
            **{c: getattr(task, c) for c in TaskRead.model_fields if hasattr(task, c) and c != "priority"},
            "priority": PRIORITY_NAMES[task.priority],
            "branch": branch_name(task.id),
            "pr_url": pr_url,
            "git": git,
        }
    )


async def task_with_git(runtime: Runtime, task: Task, *, pr_url: str | None = None) -> TaskRead:
    """The task and where to fetch its code: what a claim and a read of one task answer."""
    return task_read(task, pr_url=pr_url, git=await git_access(runtime.services.code_host, task))


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """The model as JSON, serialised once by pydantic: returned as a model, FastAPI would validate
    it against the response model again before serialising it (the claim's hot path, issue 17)."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


def _cursor(task_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": task_id}).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["before"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        raise InvalidInput("invalid cursor") from None


@router.post("", status_code=201, response_model=TaskRead)
async def create_task(
    body: TaskCreate, actor: ActorDep, session: SessionDep, runtime: RuntimeDep
) -> TaskRead:
    task = await lifecycle.file_task(
        session,
        actor,
        runtime.settings,
        title=body.title,
        description=body.description,
        priority=PRIORITIES[body.priority],
        repo=body.repo,
        requester=body.requester,
        skills=body.skills,
    )
    return task_read(task)


@router.get("", response_model=TaskPage)
async def list_tasks(
    actor: ActorDep,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(PENDING|IN_PROGRESS|REVIEW|DONE|REJECTED)$")] = None,
    assignee_id: int | None = None,
    priority: PriorityName | None = None,
    repo: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TaskPage:
    tasks = await task_queries.list_tasks(
        session,
        actor,
        status=status,
        assignee_id=assignee_id,
        priority=PRIORITIES[priority] if priority else None,
        repo=repo,
        after_id=_decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(tasks) > limit
    items = [task_read(t) for t in tasks[:limit]]
    return TaskPage(items=items, next_cursor=_cursor(items[-1].id) if more else None)


@router.get("/pending", response_model=list[TaskRead])
async def pending_tasks(
    actor: ActorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    repo: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    min_priority: PriorityName | None = None,
) -> list[TaskRead]:
    tasks = await task_queries.pending_tasks(
        session,
        actor,
        limit=limit,
        repo=repo,
        min_priority=PRIORITIES[min_priority] if min_priority else None,
        aging=Aging.of(runtime.settings),
    )
    return [task_read(t) for t in tasks]


@router.post("/claim-next", response_model=TaskRead, responses={204: {"description": "nothing pending"}})
async def claim_next(
    actor: ActorDep, session: SessionDep, runtime: RuntimeDep, repo: str | None = None
) -> TaskRead | Response:
    s = runtime.settings
    # In autocommit when the claim writes nothing else (the common case); `session` otherwise.
    task = await lifecycle.claim_next_autocommit(
        runtime.engine,
        session,
        actor,
        lease_seconds=s.tasks.lease_seconds,
        repo=repo,
        aging=Aging.of(s),
    )
    return json_response(await task_with_git(runtime, task)) if task else Response(status_code=204)


@router.get("/{task_id}", response_model=TaskDetail)
async def get_task(task_id: int, actor: ActorDep, session: SessionDep, runtime: RuntimeDep) -> TaskDetail:
    task = await task_queries.get_task(session, actor, task_id)
    artifacts = [
        ArtifactRead.model_validate(a) for a in await task_queries.artifacts_of(session, task, content=False)
    ]
    messages = [MessageRead.model_validate(m) for m in await task_queries.messages_of(session, task)]
    return TaskDetail(
        **dict(await task_with_git(runtime, task, pr_url=latest_pr_url(artifacts))),
        artifacts=artifacts,
        messages=messages,
    )


@router.post("/{task_id}/claim", response_model=TaskRead)
async def claim(task_id: int, actor: ActorDep, session: SessionDep, runtime: RuntimeDep) -> Response:
    task = await lifecycle.claim_task_autocommit(
        runtime.engine, session, actor, task_id, lease_seconds=runtime.settings.tasks.lease_seconds
    )
    return json_response(await task_with_git(runtime, task))


@router.post("/{task_id}/heartbeat", response_model=TaskRead)
async def heartbeat(task_id: int, actor: ActorDep, session: SessionDep, runtime: RuntimeDep) -> TaskRead:
    task = await lifecycle.heartbeat(
        session, actor, task_id, lease_seconds=runtime.settings.tasks.lease_seconds
    )
    return await _linked(session, task)


@router.post("/{task_id}/release", response_model=TaskRead)
async def release(task_id: int, actor: ActorDep, session: SessionDep) -> TaskRead:
    return await _linked(session, await lifecycle.release_task(session, actor, task_id))


@router.post("/{task_id}/artifacts", status_code=201, response_model=SubmissionRead)
async def submit_artifact(
    task_id: int,
    body: ArtifactCreate,
    actor: ActorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
) -> SubmissionRead:
    sub = await submissions.submit(
        session,
        runtime,
        actor,
        task_id,
        content=body.content,
        kind=body.kind,
        summary=body.summary,
        idempotency_key=body.idempotency_key,
    )
    if not sub.created:
        response.status_code = 200
    task = await task_queries.get_task(session, actor, task_id)
    return SubmissionRead(
        artifact=ArtifactRead.model_validate(sub.artifact),
        created=sub.created,
        publish_job_id=sub.job_id,
        task=await _linked(session, task),
    )


@router.get("/{task_id}/artifacts", response_model=list[ArtifactRead])
async def list_artifacts(task_id: int, actor: ActorDep, session: SessionDep) -> list[ArtifactRead]:
    task = await task_queries.get_task(session, actor, task_id)
    return [
        ArtifactRead.model_validate(a) for a in await task_queries.artifacts_of(session, task, content=False)
    ]


@router.get("/{task_id}/artifacts/diff", response_model=VersionDiff)
async def diff_versions(
    task_id: int,
    actor: ActorDep,
    session: SessionDep,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> VersionDiff:
    task = await task_queries.get_task(session, actor, task_id)
    a = await task_queries.artifact_version(session, task, from_version)
    b = await task_queries.artifact_version(session, task, to_version)
    if a is None or b is None:
        raise NotFound("no such artifact version")
    changes = await asyncio.to_thread(version_diff.compare, a, b)
    files = (
        None
        if changes.files is None
        else [FileDiffRead.model_validate(f, from_attributes=True) for f in changes.files]
    )
    return VersionDiff(from_version=from_version, to_version=to_version, diff=changes.diff, files=files)


@router.get("/{task_id}/artifacts/{version}", response_model=ArtifactDetail)
async def get_artifact(task_id: int, version: int, actor: ActorDep, session: SessionDep) -> ArtifactDetail:
    task = await task_queries.get_task(session, actor, task_id)
    artifact = await task_queries.artifact_version(session, task, version)
    if artifact is None:
        raise NotFound(f"task {task_id} has no version {version}")
    return ArtifactDetail.model_validate(artifact)


@router.get("/{task_id}/messages", response_model=list[MessageRead])
async def list_messages(
    task_id: int, actor: ActorDep, session: SessionDep, after_id: int | None = None
) -> list[MessageRead]:
    task = await task_queries.get_task(session, actor, task_id)
    return [
        MessageRead.model_validate(m)
        for m in await task_queries.messages_of(session, task, after_id=after_id)
    ]


@router.post("/{task_id}/messages", status_code=201, response_model=MessageRead)
async def post_message(
    task_id: int, body: MessageCreate, actor: ActorDep, session: SessionDep
) -> MessageRead:
    msg = await lifecycle.post_message(session, actor, task_id, body=body.body, source="api")
    return MessageRead.model_validate(msg)


@router.get("/{task_id}/events", response_model=list[EventRead])
async def list_events(
    task_id: int, actor: ActorDep, session: SessionDep, after_id: int | None = None
) -> list[EventRead]:
    task = await task_queries.get_task(session, actor, task_id)
    return [
        EventRead.model_validate(e) for e in await task_queries.events_of(session, task, after_id=after_id)
    ]


async def _linked(session: SessionDep, task: Task) -> TaskRead:
    """A transition's answer, with the change request link: a decision never makes it disappear."""
    return task_read(task, pr_url=await task_queries.pr_url_of(session, task))


@router.post("/{task_id}/approve", response_model=TaskRead)
async def approve(
    task_id: int, actor: ActorDep, session: SessionDep, body: Annotated[ApproveIn | None, Body()] = None
) -> TaskRead:
    seen = body or ApproveIn()
    task = await lifecycle.approve_task(
        session, actor, task_id, comment=seen.comment, version=seen.version, head_sha=seen.head_sha
    )
    return await _linked(session, task)


@router.post("/{task_id}/request-changes", response_model=TaskRead)
async def request_changes(
    task_id: int, body: RejectIn, actor: ActorDep, session: SessionDep, runtime: RuntimeDep
) -> TaskRead:
    """Request changes: the task goes back to its agent with the feedback as a message."""
    task = await lifecycle.request_changes(
        session, actor, task_id, feedback=body.feedback, lease_seconds=runtime.settings.tasks.lease_seconds
    )
    return await _linked(session, task)


@router.post("/{task_id}/reject", response_model=TaskRead, deprecated=True)
async def reject(
    task_id: int, body: RejectIn, actor: ActorDep, session: SessionDep, runtime: RuntimeDep
) -> TaskRead:
    """Deprecated alias of `POST /api/v1/tasks/{task_id}/request-changes` (same body, same answer).
    It never cancels a task: that is `/cancel`, whose REJECTED state the portal calls Cancelled."""
    return await request_changes(task_id, body, actor, session, runtime)


@router.post("/{task_id}/cancel", response_model=TaskRead)
async def cancel(
    task_id: int, actor: ActorDep, session: SessionDep, body: Annotated[CancelIn | None, Body()] = None
) -> TaskRead:
    reason = body.reason if body else None
    return await _linked(session, await lifecycle.cancel_task(session, actor, task_id, reason=reason))
