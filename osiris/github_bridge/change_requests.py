"""REST: a task's change request, for hosts whose change requests OSIRIS shows itself (local git),
and the changes a version would merge, on every host."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from osiris.app import check_runs, task_queries
from osiris.app.auth import ActorDep, RuntimeDep, SessionDep
from osiris.app.changes import ChangesRead, changes_of
from osiris.app.errors import NotFound
from osiris.app.ports import ChangeRequestSource
from osiris.app.schemas import CheckRunRead

router = APIRouter(prefix="/api/v1/tasks", tags=["code host"])


class ChangedFile(BaseModel):
    path: str
    status: str  # git's letter: A added, M modified, D deleted, R renamed, T type changed
    old_path: str | None = None


class CommitSummary(BaseModel):
    sha: str
    title: str


class ChangeRequestRead(BaseModel):
    number: int
    url: str
    state: Literal["draft", "open", "merged", "closed"]
    base: str
    head: str
    base_sha: str
    head_sha: str
    diff: str  # `git diff base...head`; for a merged request, what the merge brought in
    diff_truncated: bool
    files: list[ChangedFile]
    commits: list[CommitSummary]
    mergeable: bool | None  # None once merged or closed
    conflicts: list[str]
    checks: CheckRunRead | None = None  # the pre-review checks of the head version (a status)


@router.get("/{task_id}/change-request", response_model=ChangeRequestRead)
async def get_change_request(
    task_id: int, actor: ActorDep, session: SessionDep, runtime: RuntimeDep
) -> ChangeRequestRead:
    task = await task_queries.get_task(session, actor, task_id)
    host = runtime.services.code_host
    if not isinstance(host, ChangeRequestSource):
        raise NotFound("this code host keeps its change requests itself; follow the task's pr_url")
    view = ChangeRequestRead.model_validate(await host.change_request(task))
    head_run = next(
        (r for r in await check_runs.latest_runs(session, task) if r.commit_sha == view.head_sha), None
    )
    view.checks = CheckRunRead.model_validate(head_run) if head_run is not None else None
    return view


@router.get("/{task_id}/changes", response_model=ChangesRead)
async def get_changes(
    task_id: int,
    actor: ActorDep,
    session: SessionDep,
    runtime: RuntimeDep,
    path: Annotated[str | None, Query(min_length=1, max_length=4096)] = None,
) -> ChangesRead:
    """The diff approving the newest published version would merge: base...head, file by file
    (`path`: that file alone, up to the overall line cap). 404 until a version is published."""
    task = await task_queries.get_task(session, actor, task_id)
    artifacts = list(await task_queries.artifacts_of(session, task))
    limits = runtime.settings
    return await changes_of(
        runtime.services.code_host,
        task,
        artifacts,
        max_file_lines=limits.changes.max_lines if path else limits.changes.max_file_lines,
        max_lines=limits.changes.max_lines,
        path=path,
    )
