"""Job handlers: the side effects of lifecycle moves, run after commit by a worker.

Each handler hands its work to a port (the code host, the channel notifier) registered by the process
in `JobContext.services`, and records the outcome as a TaskEvent. Without such a port (an API-only
setup) the job records that there was nothing to do, so the log still says what happened.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from osiris.app import jobs, lifecycle
from osiris.app.actors import system_actor
from osiris.app.artifacts import ValidArtifact
from osiris.app.models import Artifact, Message, Task

log = logging.getLogger(__name__)


class CodeHost(Protocol):
    """The code-host port: implemented by the local git host and by GitHub."""

    async def check(self, task: Task, artifact: ValidArtifact) -> None: ...
    async def publish(self, task: Task, artifact: Artifact) -> dict[str, Any]: ...
    async def merge(self, task: Task) -> dict[str, Any]: ...
    async def close(self, task: Task) -> dict[str, Any]: ...
    async def comment(self, task: Task, message: Message) -> dict[str, Any]: ...


class Notifier(Protocol):
    """Tells a requester about their task in the channel they asked from."""

    async def notify(self, task: Task, kind: str, text: str) -> dict[str, Any]: ...


async def _record(ctx: jobs.JobContext, task_id: int, kind: str, data: dict[str, Any]) -> None:
    async with ctx.sessions() as session, session.begin():
        task = await session.get(Task, task_id)
        if task is not None:
            await lifecycle.record_event(session, task, system_actor(task.org_id, "worker"), kind, data=data)


async def _load(ctx: jobs.JobContext, model: type, row_id: int) -> Any:
    async with ctx.sessions() as session:
        return await session.get(model, row_id)


@jobs.job_handler(jobs.PUBLISH_ARTIFACT)
async def publish_artifact(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host: CodeHost | None = ctx.services.get("code_host")
    artifact = await _load(ctx, Artifact, payload["artifact_id"])
    if artifact is None:
        return
    task = await _load(ctx, Task, artifact.task_id)
    if host is None:
        await _record(ctx, task.id, "publish_skipped", {"version": artifact.version, "why": "no code host"})
        return
    result = await host.publish(task, artifact)
    await _record(ctx, task.id, "published", {"version": artifact.version, **result})


@jobs.job_handler(jobs.MERGE_TASK)
async def merge_task(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host: CodeHost | None = ctx.services.get("code_host")
    task = await _load(ctx, Task, payload["task_id"])
    if task is None:
        return
    if host is None or task.artifact_count == 0:
        await _record(
            ctx, task.id, "merge_skipped", {"why": "no code host" if host is None else "no artifact"}
        )
        return
    await _record(ctx, task.id, "merged", await host.merge(task))


@jobs.job_handler(jobs.CLOSE_TASK)
async def close_task(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host: CodeHost | None = ctx.services.get("code_host")
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
    host: CodeHost | None = ctx.services.get("code_host")
    notifier: Notifier | None = ctx.services.get("notifier")
    outcome: dict[str, Any] = {"message_id": message.id}
    if host is not None and task.artifact_count > 0:
        outcome["code_host"] = await host.comment(task, message)
    if notifier is not None and message.direction == "from_agent" and task.channel != "api":
        outcome["channel"] = await notifier.notify(task, "message", message.body)
    await _record(ctx, task.id, "message_delivered", outcome)


@jobs.job_handler(jobs.NOTIFY_REQUESTER)
async def notify_requester(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    notifier: Notifier | None = ctx.services.get("notifier")
    task = await _load(ctx, Task, payload["task_id"])
    if task is None or notifier is None:
        return
    text = f"Task #{task.id} ({task.title}) is now {task.status}."
    await _record(ctx, task.id, "requester_notified", await notifier.notify(task, task.status, text))
