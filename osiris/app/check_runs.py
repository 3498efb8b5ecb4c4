"""Pre-review checks: a repository's own commands run on each published version before a person is
asked to review it. This module is the `run_checks` job and its `check_runs` rows; which commands
(`check_config.py`) and how one runs (`check_runner.py`) are apart.

The publish job, in the transaction that records the commit, calls `after_publish`: the version's
`check_runs` row is written as queued and `run_checks` enqueued. The job runs each command in a
throw-away copy of that commit, in the sandbox (`check_runner.run_in_copy`); the tail of each output
is kept with every secret value of ours replaced by `[redacted]` (defence in depth). The outcome is
one `check_runs` row per artifact version.

Then, in one transaction: `checks_completed` is recorded and either reviewers are asked
(`review_requested`) or, in `block` mode with a failure, the task goes straight back to its agent
(`lifecycle.checks_failed`) with the failing output as feedback and no review request at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from osiris.app import jobs, lifecycle, sandbox
from osiris.app.actors import system_actor
from osiris.app.check_config import REPO_CONFIG, CheckConfig, resolve_config
from osiris.app.check_runner import CommandResult, run_in_copy
from osiris.app.events import record_event
from osiris.app.models import Artifact, CheckRun, Task, TaskEvent, TaskStatus
from osiris.app.ports import CheckoutFailed, CheckReporter

log = logging.getLogger(__name__)

RUN_CHECKS = "run_checks"


def feedback_for(run_results: list[dict[str, Any]], version: int) -> str:
    failing = [r for r in run_results if not r["passed"]]
    lines = [f"Version {version} failed the repository's pre-review checks; no reviewer was asked.", ""]
    for r in failing:
        why = "timed out" if r["timed_out"] else f"exit code {r['exit_code']}"
        cut = " (output truncated: the end is shown)" if r["output_truncated"] else ""
        lines += [f"$ {r['command']}  ->  {why}{cut}", "```", r["output"].rstrip(), "```", ""]
    lines.append("Fix these and submit a new version.")
    return "\n".join(lines)


async def request_review(
    session: Any, task: Task, *, version: int, checks: str, check_run_id: int | None
) -> None:
    """Reviewers are asked: the event reviewers' views and notifications follow."""
    await record_event(
        session,
        task,
        system_actor(task.org_id, "checks"),
        "review_requested",
        data={"version": version, "checks": checks, "check_run_id": check_run_id},
    )


async def after_publish(session: Any, task: Task, artifact: Artifact, *, config: CheckConfig | None) -> None:
    """Called by the publish job, in the transaction that records the published commit: with checks,
    the version's CheckRun is recorded as queued (approval waits for it in block mode) and
    `run_checks` enqueued; without, reviewers are asked at once."""
    if config is None:
        await request_review(session, task, version=artifact.version, checks="none", check_run_id=None)
        return
    run = (
        await session.execute(select(CheckRun).where(CheckRun.artifact_id == artifact.id))
    ).scalar_one_or_none()
    if run is None:
        run = await _new_run(session, task, artifact, config, status="queued")
    await jobs.enqueue(
        session,
        RUN_CHECKS,
        {"artifact_id": artifact.id, "check_run_id": run.id, "config": config.as_payload()},
        dedupe_key=f"checks-{artifact.id}",
    )


async def _new_run(
    session: Any, task: Task, artifact: Artifact, config: CheckConfig, *, status: str
) -> CheckRun:
    """The version's CheckRun row (flushed, so it has its id)."""
    run = CheckRun(
        org_id=task.org_id,
        task_id=task.id,
        artifact_id=artifact.id,
        version=artifact.version,
        commit_sha=artifact.commit_sha,
        mode=config.mode,
        source=config.source,
        status=status,
    )
    session.add(run)
    await session.flush()
    return run


def _current(task: Task, artifact: Artifact) -> bool:
    return task.status == TaskStatus.REVIEW.value and task.artifact_count == artifact.version


async def _load(
    ctx: jobs.JobContext, artifact_id: int
) -> tuple[Artifact | None, Task | None, CheckRun | None]:
    async with ctx.sessions() as session:
        artifact = await session.get(Artifact, artifact_id)
        task = await session.get(Task, artifact.task_id) if artifact is not None else None
        run = (
            await session.execute(select(CheckRun).where(CheckRun.artifact_id == artifact_id))
        ).scalar_one_or_none()
    return artifact, task, run


@jobs.job_handler(RUN_CHECKS)
async def run_checks(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host = ctx.services.code_host
    artifact, task, run = await _load(ctx, payload["artifact_id"])
    if artifact is None or task is None:
        return  # gone
    queued_config = CheckConfig.from_payload(payload.get("config"))
    if run is not None and run.finished_at is not None:
        # A re-run of a finished check: the result stands; its report may be what failed.
        commands = queued_config.commands if queued_config else [r["command"] for r in run.results]
        await report(ctx, host, task.id, run.id, commands=commands or [r["command"] for r in run.results])
        return
    if task.artifact_count != artifact.version or artifact.commit_sha is None:
        await _skip_superseded(ctx, task, artifact, run)
        return
    started = time.monotonic()
    config = queued_config or await resolve_config(ctx.settings, host, task)
    if config is None:  # no checks (any more): reviewers are asked
        await _review_without_checks(ctx, task, artifact, run)
        return
    run_id = await _start_run(ctx, task, artifact, config)
    try:
        await report(ctx, host, task.id, run_id, commands=config.commands)
    except Exception as exc:  # noqa: BLE001 - the start report is a courtesy; the result is reported
        log.warning("checks: the start could not be reported", extra={"task_id": task.id, "error": str(exc)})
    status, results = await _outcome(ctx, host, task, artifact, config)
    await _finish(ctx, task.id, artifact, run_id, config, status, results, started)
    await report(ctx, host, task.id, run_id, commands=config.commands or [r["command"] for r in results])


async def _skip_superseded(
    ctx: jobs.JobContext, task: Task, artifact: Artifact, run: CheckRun | None
) -> None:
    """A newer version overtook this one before its checks ran: they never will."""
    async with ctx.sessions() as session, session.begin():
        if run is not None:
            await _close_skipped(session, run.id, artifact.version)
        await record_event(
            session,
            task,
            system_actor(task.org_id, "checks"),
            "checks_skipped",
            data={"version": artifact.version, "why": "not the latest version"},
        )


async def _review_without_checks(
    ctx: jobs.JobContext, task: Task, artifact: Artifact, run: CheckRun | None
) -> None:
    """No checks are configured (any more): a queued run is closed and reviewers are asked."""
    async with ctx.sessions() as session, session.begin():
        locked = await session.get(Task, task.id, with_for_update=True)
        if run is not None:
            await _close_skipped(session, run.id, artifact.version, why="no checks are configured now")
        if locked is not None and _current(locked, artifact):
            await request_review(session, locked, version=artifact.version, checks="none", check_run_id=None)


async def _start_run(ctx: jobs.JobContext, task: Task, artifact: Artifact, config: CheckConfig) -> int:
    """The version's run, marked running (`checks_started` the first time); its id."""
    async with ctx.sessions() as session, session.begin():
        run = (
            await session.execute(
                select(CheckRun).where(CheckRun.artifact_id == artifact.id).with_for_update()
            )
        ).scalar_one_or_none()
        if run is None:  # queued before publish recorded rows (or by an older version of OSIRIS)
            run = await _new_run(session, task, artifact, config, status="running")
            starting = True
        else:  # queued at publish; or running already: a retried job after its attempt crashed
            starting = run.status == "queued"
            run.status = "running"
        if starting:
            await record_event(
                session, task, system_actor(task.org_id, "checks"), "checks_started",
                data={"version": artifact.version, "check_run_id": run.id, "commands": config.commands},
            )  # fmt: skip
        return run.id


async def _outcome(
    ctx: jobs.JobContext, host: Any, task: Task, artifact: Artifact, config: CheckConfig
) -> tuple[str, list[dict[str, Any]]]:
    """The run's status and each command's result: the commands run in a copy, redacted; or why
    they could not run (an invalid `.osiris.yml`, no copy, no sandbox)."""
    if config.error is not None:
        return "error", [
            CommandResult(REPO_CONFIG, REPO_CONFIG, None, False, 0, config.error, False).as_dict()
        ]
    secrets_of_ours = await asyncio.to_thread(sandbox.secret_values, ctx.settings)
    try:
        ran = await run_in_copy(host, task, artifact.commit_sha, config, ctx.settings)
    except (
        CheckoutFailed,
        OSError,
        sandbox.SandboxUnavailable,
    ) as exc:  # the checks could not run at all
        log.warning("checks could not run", extra={"task_id": task.id, "error": str(exc)})
        ran = [CommandResult("checks", "(setup)", None, False, 0, f"the checks could not run: {exc}", False)]
        status = "error"
    else:
        status = "passed" if all(r.passed for r in ran) else "failed"
    for r in ran:  # what the agent, reviewers and GitHub will read: no secret of ours in it
        r.output = sandbox.redact(r.output, secrets_of_ours)
    return status, [r.as_dict() for r in ran]


async def _close_skipped(session: Any, run_id: int, version: int, *, why: str = "") -> None:
    """A queued run that will never run: closed, so nothing shows it waiting forever."""
    run = await session.get(CheckRun, run_id, with_for_update=True)
    if run is None or run.finished_at is not None:
        return
    text = why or f"version {version} was superseded by a newer version before its checks ran"
    run.status = "error"
    run.results = [CommandResult("skipped", "(skipped)", None, False, 0, text, False).as_dict()]
    run.finished_at = datetime.now(UTC)
    run.duration_ms = 0


REPORTED = "checks_reported"


async def report(ctx: jobs.JobContext, host: Any, task_id: int, run_id: int, *, commands: list[str]) -> None:
    """Show the run's state on the change request (GitHub: a check run or commit statuses), once per
    state; what the host returns (e.g. the check run's id) is kept as a `checks_reported` event."""
    if not ctx.settings.checks_github_report or not isinstance(host, CheckReporter):
        return
    async with ctx.sessions() as session:
        task = await session.get(Task, task_id)
        run = await session.get(CheckRun, run_id)
        earlier = (
            (
                await session.execute(
                    select(TaskEvent.data)
                    .where(
                        TaskEvent.task_id == task_id,
                        TaskEvent.kind == REPORTED,
                        TaskEvent.data["check_run_id"].astext == str(run_id),
                    )
                    .order_by(TaskEvent.id)
                )
            )
            .scalars()
            .all()
        )
    if task is None or run is None:
        return
    state = "completed" if run.finished_at is not None else "in_progress"
    if any(e.get("state") == state for e in earlier) or (state == "in_progress" and earlier):
        return
    previous = dict(earlier[-1]) if earlier else None
    outcome = await host.report_checks(task, run, commands=commands, previous=previous)
    async with ctx.sessions() as session, session.begin():
        await record_event(
            session,
            task,
            system_actor(task.org_id, "checks"),
            REPORTED,
            data={"check_run_id": run_id, "version": run.version, "state": state, **outcome},
        )


async def _finish(
    ctx: jobs.JobContext,
    task_id: int,
    artifact: Artifact,
    run_id: int,
    config: CheckConfig,
    status: str,
    results: list[dict[str, Any]],
    started: float,
) -> None:
    async with ctx.sessions() as session, session.begin():
        task = await session.get(Task, task_id, with_for_update=True)
        run = await session.get(CheckRun, run_id, with_for_update=True)
        if task is None or run is None or run.finished_at is not None:
            return
        run.status, run.results = status, results
        run.finished_at = datetime.now(UTC)
        run.duration_ms = round((time.monotonic() - started) * 1000)
        await session.flush()
        actor = system_actor(task.org_id, "checks")
        failing = [r["command"] for r in results if not r["passed"]]
        summary = {
            "version": artifact.version,
            "check_run_id": run.id,
            "status": status,
            "mode": config.mode,
            "failing": failing,
        }
        await record_event(session, task, actor, "checks_completed", data=summary)
        if not _current(task, artifact):
            return  # a newer version or a person overtook this one: its outcome is only recorded
        if status == "failed" and config.mode == "block":
            await lifecycle.checks_failed(
                session,
                actor,
                task.id,
                feedback=feedback_for(results, artifact.version),
                lease_seconds=ctx.settings.lease_seconds,
                meta={"check_run_id": run.id, "version": artifact.version, "failing": failing},
            )
        else:
            await request_review(session, task, version=artifact.version, checks=status, check_run_id=run.id)


async def latest_runs(session: Any, task: Task) -> list[CheckRun]:
    stmt = select(CheckRun).where(CheckRun.task_id == task.id).order_by(CheckRun.version.desc())
    return list((await session.execute(stmt)).scalars().all())


async def latest_status(session: Any, task_ids: list[int]) -> dict[int, str]:
    """task id -> the status of its latest version's checks, for the tasks that have any (one query)."""
    if not task_ids:
        return {}
    stmt = (
        select(CheckRun.task_id, CheckRun.status)
        .join(Task, Task.id == CheckRun.task_id)
        .where(CheckRun.task_id.in_(task_ids), CheckRun.version == Task.artifact_count)
    )
    return {task_id: status for task_id, status in (await session.execute(stmt)).all()}
