"""Job handlers: the side effects of lifecycle moves, run after commit by a worker.

Each handler hands its work to a port (the code host, the channel notifier) registered by the process
in `JobContext.services`, and records the outcome as a TaskEvent. Without such a port (an API-only
setup) the job records that there was nothing to do, so the log still says what happened.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from sqlalchemy import select

from osiris.app import check_runs, jobs, lifecycle
from osiris.app.actors import system_actor
from osiris.app.check_config import CheckConfig, resolve_config
from osiris.app.config import Settings
from osiris.app.errors import InvalidArtifact, OsirisError, PatchDoesNotApply
from osiris.app.events import record_event
from osiris.app.models import Artifact, Message, Task, TaskStatus
from osiris.app.ports import PUBLISHED_FIELDS, CodeHost, MergeConflict, Notifier

log = logging.getLogger(__name__)


def fault_point(name: str, settings: Settings) -> None:
    """Die here, as `kill -9` would, when OSIRIS_FAULT_INJECT names this point (the reliability suite
    proves a crash at each step of a publication loses and duplicates nothing). Off unless set."""
    if settings.fault_inject == name:
        log.warning("fault injected at %s: killing the process", name)
        os.kill(os.getpid(), signal.SIGKILL)


async def _record(ctx: jobs.JobContext, task_id: int, kind: str, data: dict[str, Any]) -> None:
    async with ctx.sessions() as session, session.begin():
        task = await session.get(Task, task_id)
        if task is not None:
            await record_event(session, task, system_actor(task.org_id, "worker"), kind, data=data)


async def _load(ctx: jobs.JobContext, model: type, row_id: int) -> Any:
    async with ctx.sessions() as session:
        return await session.get(model, row_id)


async def _store_published(
    ctx: jobs.JobContext,
    artifact_id: int,
    result: dict[str, Any],
    *,
    then_review: bool = False,
    check_config: CheckConfig | None = None,
) -> None:
    """Write where the version landed on its row and tell live clients, in one transaction; with
    `then_review`, also queue the pre-review checks of `check_config` (or, without any, ask reviewers)."""
    async with ctx.sessions() as session, session.begin():
        artifact = await session.get(Artifact, artifact_id, with_for_update=True)
        task = await session.get(Task, artifact.task_id) if artifact is not None else None
        if artifact is None or task is None:
            return
        landed = {f: result[f] for f in PUBLISHED_FIELDS if result.get(f) is not None}
        if landed and all(getattr(artifact, f) == v for f, v in landed.items()):
            # A re-run after a crash that came after our commit: the row, its event and the checks
            # were written together then, so there is nothing left to do (and no second event).
            return
        for field in PUBLISHED_FIELDS:
            if result.get(field) is not None:
                setattr(artifact, field, result[field])
        data = {"version": artifact.version, "artifact_id": artifact.id, **result}
        await record_event(session, task, system_actor(task.org_id, "worker"), "published", data=data)
        if then_review and artifact.commit_sha is not None and task.artifact_count == artifact.version:
            await check_runs.after_publish(session, task, artifact, config=check_config)


@jobs.job_handler(jobs.PUBLISH_ARTIFACT)
async def publish_artifact(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host: CodeHost | None = ctx.services.code_host
    fault_point("after_artifact_commit", ctx.settings)
    artifact = await _load(ctx, Artifact, payload["artifact_id"])
    if artifact is None:
        return
    task = await _load(ctx, Task, artifact.task_id)
    if host is None:
        await _record(ctx, task.id, "publish_skipped", {"version": artifact.version, "why": "no code host"})
        return
    if task.status in (TaskStatus.DONE.value, TaskStatus.REJECTED.value):
        # A late run (it was retrying while a person approved or closed the task): the merge job
        # publishes what it merges, then deletes the branch; publishing now would open the branch
        # and a pull request again on a finished task.
        why = f"task is {task.status}"
        await _record(ctx, task.id, "publish_skipped", {"version": artifact.version, "why": why})
        return
    try:
        result = await host.publish(task, artifact)
    except (PatchDoesNotApply, InvalidArtifact) as exc:
        # The branch moved since the submit-time check, or git's own fsck refused the tree built
        # from it (nothing was pushed); retrying cannot help, so say why and stop.
        data = {"version": artifact.version, "code": exc.code, "detail": exc.detail}
        await _record(ctx, task.id, "publish_failed", data)
        return
    fault_point("after_branch_push", ctx.settings)
    # Read before the transaction (git or the code host's API): checks configured → a queued CheckRun.
    check_config = await resolve_config(ctx.settings, host, task) if result.get("commit_sha") else None
    await _store_published(ctx, artifact.id, result, then_review=True, check_config=check_config)
    fault_point("after_change_request", ctx.settings)


async def _publish_running(ctx: jobs.JobContext, task_id: int) -> bool:
    async with ctx.sessions() as session, session.begin():
        ids = (await session.execute(select(Artifact.id).where(Artifact.task_id == task_id))).scalars()
        return await jobs.running(
            session,
            jobs.PUBLISH_ARTIFACT,
            [f"publish-{i}" for i in ids],
            heartbeat_seconds=ctx.settings.job.heartbeat_timeout_seconds,
        )


async def _latest_artifact(ctx: jobs.JobContext, task_id: int) -> Artifact | None:
    async with ctx.sessions() as session:
        stmt = select(Artifact).where(Artifact.task_id == task_id).order_by(Artifact.version.desc()).limit(1)
        return (await session.execute(stmt)).scalar_one_or_none()


def _merge_feedback(task: Task, exc: OsirisError) -> str:
    files = getattr(exc, "files", [])
    lines = [f"OSIRIS could not merge the approved version into {task.base_branch}: {exc.detail}"]
    if files:
        lines += ["", "Conflicting files:", *(f"- {path}" for path in files)]
    lines += ["", f"Submit a new version that resolves this against {task.base_branch}."]
    return "\n".join(lines)


@jobs.job_handler(jobs.MERGE_TASK)
async def merge_task(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host: CodeHost | None = ctx.services.code_host
    task = await _load(ctx, Task, payload["task_id"])
    if task is None:
        return
    artifact = await _latest_artifact(ctx, task.id)
    if host is None or artifact is None:
        await _record(
            ctx, task.id, "merge_skipped", {"why": "no code host" if host is None else "no artifact"}
        )
        return
    if task.status != TaskStatus.DONE.value:  # e.g. a merge that already failed and sent it back
        await _record(ctx, task.id, "merge_skipped", {"why": f"task is {task.status}"})
        return
    if await _publish_running(ctx, task.id):
        # A publish that began before the approval may still be pushing the branch or opening the
        # PR; merging (and deleting the branch) under it would let it recreate both afterwards.
        # Publishes picked after the approval see DONE and skip, so waiting for this one is enough.
        raise jobs.Retry(2.0, f"a publish of task {task.id} is still running")
    approved = payload.get("head_sha")  # the commit the approval named (absent: merged on the host)
    try:
        head_sha = artifact.commit_sha
        if approved is not None and head_sha != approved:
            # Cannot happen while approval locks the task and needs the latest published version;
            # if it ever does, merging anything but what the person approved is the one wrong answer.
            raise MergeConflict(
                f"version {artifact.version} is at {head_sha or 'no commit'}, not the approved {approved}"
            )
        if head_sha is None:
            # Its publish job has not run yet (or is retrying); publishing is idempotent, so do it here.
            published = await host.publish(task, artifact)
            await _store_published(ctx, artifact.id, published)
            head_sha = published.get("commit_sha")
        # Pinned: the host refuses (MergeConflict) if the branch no longer points at this commit.
        result = await host.merge(task, head_sha=head_sha)
    except (MergeConflict, PatchDoesNotApply, InvalidArtifact) as exc:
        async with ctx.sessions() as session, session.begin():
            await lifecycle.merge_failed(
                session,
                system_actor(task.org_id, "code-host"),
                task.id,
                feedback=_merge_feedback(task, exc),
                lease_seconds=ctx.settings.tasks.lease_seconds,
                meta={"code": exc.code, "files": getattr(exc, "files", []), "head_sha": artifact.commit_sha},
            )
        return
    await _record(ctx, task.id, "merged", result)


@jobs.job_handler(jobs.CLOSE_TASK)
async def close_task(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host: CodeHost | None = ctx.services.code_host
    task = await _load(ctx, Task, payload["task_id"])
    if task is None:
        return
    if host is None:
        await _record(ctx, task.id, "close_skipped", {"why": "no code host"})
        return
    await _record(ctx, task.id, "closed", await host.close(task))


@jobs.job_handler(jobs.DELIVER_MESSAGE)
async def deliver_message(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    message = await _load(ctx, Message, payload["message_id"])
    if message is None:
        return
    task = await _load(ctx, Task, message.task_id)
    host: CodeHost | None = ctx.services.code_host
    notifier: Notifier | None = ctx.services.notifier
    outcome: dict[str, Any] = {"message_id": message.id}
    if host is not None and task.artifact_count > 0:
        outcome["code_host"] = await host.comment(task, message)
    if notifier is not None and message.direction == "from_agent" and task.channel != "api":
        outcome["channel"] = await notifier.notify(task, "message", message.body)
    await _record(ctx, task.id, "message_delivered", outcome)


@jobs.job_handler(jobs.NOTIFY_REQUESTER)
async def notify_requester(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    notifier: Notifier | None = ctx.services.notifier
    task = await _load(ctx, Task, payload["task_id"])
    if task is None or notifier is None:
        return
    text = f"Task #{task.id} ({task.title}) is now {task.status}."
    await _record(ctx, task.id, "requester_notified", await notifier.notify(task, task.status, text))
