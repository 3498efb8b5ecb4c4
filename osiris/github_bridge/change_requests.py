"""REST: a task's change request, for hosts whose change requests OSIRIS shows itself (local git)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from osiris.app import checks, repository
from osiris.app.auth import ActorDep, RuntimeDep, SessionDep
from osiris.app.errors import NotFound
from osiris.app.schemas import CheckRunRead
from osiris.github_bridge.port import ChangeRequestSource

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
    task = await repository.get_task(session, actor, task_id)
    host = runtime.services.get("code_host")
    if not isinstance(host, ChangeRequestSource):
        raise NotFound("this code host keeps its change requests itself; follow the task's pr_url")
    view = ChangeRequestRead.model_validate(await host.change_request(task))
    head_run = next(
        (r for r in await checks.latest_runs(session, task) if r.commit_sha == view.head_sha), None
    )
    view.checks = CheckRunRead.model_validate(head_run) if head_run is not None else None
    return view
