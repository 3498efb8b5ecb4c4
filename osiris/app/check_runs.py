"""Pre-review checks: a repository's own commands run on each published version before a person is
asked to review it. This module is the `run_checks` job and its `check_runs` rows; which commands
(`check_config.py`) and how one runs (`check_runner.py`) are apart.

The publish job, in the transaction that records the commit, calls `after_publish`: the version's
`check_runs` row is written as queued and `run_checks` enqueued. The job runs each command in a
throw-away copy of that commit, in the sandbox (`check_runner.run_in_copy`); the tail of each output
is kept with every secret value of ours replaced by `[redacted]` (defence in depth). The outcome is
one `check_runs` row per artifact version.

The checks worker writes only that row; `record_checks`, run by a worker that may write tasks, then
records in one transaction `checks_completed` and either reviewers are asked (`review_requested`)
or, in `block` mode with a failure, the task goes straight back to its agent
(`lifecycle.checks_failed`) with the failing output as feedback and no review request at all. So the
process that runs agents' code needs no right to write tasks or events (`checks_role.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

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
    """Runs the commands and writes their outcome into the version's `check_runs` row, and nothing
    else: the checks worker may run as a PostgreSQL role that can only read what a check needs,
    write a run's outcome columns and enqueue its own jobs and `record_checks`
    (`checks_role.grant_sql`). What the outcome decides (events, the task's move, the report on the
    change request) is `record_checks`'s, in a worker that may write tasks."""
    host = ctx.services.code_host
    artifact, task, run = await _load(ctx, payload["artifact_id"])
    if artifact is None or task is None:
        return  # gone
    queued_config = CheckConfig.from_payload(payload.get("config"))
    if run is None or run.finished_at is not None or not _latest(task, artifact):
        # Nothing to run: no row to write (a job queued by an older OSIRIS), a finished run (its
        # report may be what failed), or a version overtaken before its checks ran.
        await _hand_over(ctx, artifact.id, queued_config)
        return
    started = time.monotonic()
    config = queued_config or await resolve_config(ctx.settings, host, task)
    if config is None:  # no checks (any more): the run is closed, and reviewers will be asked
        await _store(ctx, run.id, artifact.id, config, "error", [_skipped(NO_CHECKS_NOW)], started)
        return
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            update(CheckRun)
            .where(CheckRun.id == run.id, CheckRun.finished_at.is_(None))
            .values(status="running")
        )
        await _enqueue_record(session, artifact.id, config)
    status, results = await _outcome(ctx, host, task, artifact, config)
    await _store(ctx, run.id, artifact.id, config, status, results, started)


def _latest(task: Task, artifact: Artifact) -> bool:
    return task.artifact_count == artifact.version and artifact.commit_sha is not None


NO_CHECKS_NOW = "no checks are configured now"


def _skipped(text: str) -> dict[str, Any]:
    return CommandResult("skipped", "(skipped)", None, False, 0, text, False).as_dict()


async def _enqueue_record(session: Any, artifact_id: int, config: CheckConfig | None) -> None:
    # No dedupe key: a record job queued while an earlier one is still queued is a no-op anyway.
    payload: dict[str, Any] = {"artifact_id": artifact_id}
    if config is not None:
        payload["config"] = config.as_payload()
    await jobs.enqueue(session, RECORD_CHECKS, payload)


async def _hand_over(ctx: jobs.JobContext, artifact_id: int, config: CheckConfig | None) -> None:
    async with ctx.sessions() as session, session.begin():
        await _enqueue_record(session, artifact_id, config)


async def _store(
    ctx: jobs.JobContext,
    run_id: int,
    artifact_id: int,
    config: CheckConfig | None,
    status: str,
    results: list[dict[str, Any]],
    started: float,
) -> None:
    """The run's outcome, once (a run closed meanwhile keeps what it has), and its record job."""
    async with ctx.sessions() as session, session.begin():
        await session.execute(
            update(CheckRun)
            .where(CheckRun.id == run_id, CheckRun.finished_at.is_(None))
            .values(
                status=status,
                results=results,
                finished_at=datetime.now(UTC),
                duration_ms=round((time.monotonic() - started) * 1000),
            )
        )
        await _enqueue_record(session, artifact_id, config)


RECORD_CHECKS = "record_checks"


@jobs.job_handler(RECORD_CHECKS)
async def record_checks(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    """What a `run_checks` job left in the version's `check_runs` row, recorded: `checks_started`
    while it runs, then once (`recorded_at`) `checks_completed` and either reviewers asked or, in
    block mode with a failure, the task back to its agent; each state reported on the change request.

    It trusts the rows, never the payload beyond the artifact it names (the checks worker, which
    enqueues it, may be running an agent's code: it could enqueue this for any artifact, and would
    only get what the rows already say). A run's mode and commit are the publish job's."""
    host = ctx.services.code_host
    artifact, task, run = await _load(ctx, payload["artifact_id"])
    if artifact is None or task is None:
        return
    config = CheckConfig.from_payload(payload.get("config"))
    if run is None:  # queued by an older OSIRIS, before publish recorded rows
        await _queue_legacy(ctx, task, artifact, config)
        return
    if run.finished_at is None:
        if not _latest(task, artifact):
            await _skip_superseded(ctx, task, artifact, run)
        elif run.status == "running":
            await _record_start(ctx, task, artifact, run.id, config)
            await _report(ctx, host, task.id, run.id, config)
        return
    await _finish(ctx, task.id, artifact, run.id)
    await _report(ctx, host, task.id, run.id, config)


async def _report(
    ctx: jobs.JobContext, host: Any, task_id: int, run_id: int, config: CheckConfig | None
) -> None:
    async with ctx.sessions() as session:
        run = await session.get(CheckRun, run_id)
    if run is None:
        return
    commands = (config.commands if config is not None else []) or [
        r["command"] for r in run.results if r.get("name") != "skipped"
    ]
    await report(ctx, host, task_id, run_id, commands=commands)


async def _queue_legacy(
    ctx: jobs.JobContext, task: Task, artifact: Artifact, config: CheckConfig | None
) -> None:
    if not _latest(task, artifact):
        await _skip_superseded(ctx, task, artifact, None)
        return
    config = config or await resolve_config(ctx.settings, ctx.services.code_host, task)
    async with ctx.sessions() as session, session.begin():
        locked = await session.get(Task, task.id, with_for_update=True)
        if locked is None or not _current(locked, artifact):
            return
        if config is None:
            await request_review(session, locked, version=artifact.version, checks="none", check_run_id=None)
            return
        exists = await session.scalar(select(CheckRun.id).where(CheckRun.artifact_id == artifact.id))
        if exists is None:
            await _new_run(session, locked, artifact, config, status="queued")
        await jobs.enqueue(session, RUN_CHECKS, {"artifact_id": artifact.id, "config": config.as_payload()})


async def _skip_superseded(
    ctx: jobs.JobContext, task: Task, artifact: Artifact, run: CheckRun | None
) -> None:
    """A newer version overtook this one before its checks ran: they never will."""
    async with ctx.sessions() as session, session.begin():
        if run is not None and not await _close_skipped(session, run.id, artifact.version):
            return  # closed already (this job, again)
        await record_event(
            session,
            task,
            system_actor(task.org_id, "checks"),
            "checks_skipped",
            data={"version": artifact.version, "why": "not the latest version"},
        )


async def _record_start(
    ctx: jobs.JobContext, task: Task, artifact: Artifact, run_id: int, config: CheckConfig | None
) -> None:
    async with ctx.sessions() as session, session.begin():
        run = await session.get(CheckRun, run_id, with_for_update=True)
        if run is not None and run.recorded_at is None:
            await _started_once(session, task, artifact, run, config.commands if config else [])


async def _started_once(
    session: Any, task: Task, artifact: Artifact, run: CheckRun, commands: list[str]
) -> None:
    """`checks_started`, once per run (the caller holds the run's row lock)."""
    started = await session.scalar(
        select(TaskEvent.id).where(
            TaskEvent.task_id == task.id,
            TaskEvent.kind == "checks_started",
            TaskEvent.data["check_run_id"].astext == str(run.id),
        )
    )
    if started is None:
        await record_event(
            session, task, system_actor(task.org_id, "checks"), "checks_started",
            data={"version": artifact.version, "check_run_id": run.id, "commands": commands},
        )  # fmt: skip


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


async def _close_skipped(session: Any, run_id: int, version: int, *, why: str = "") -> bool:
    """A queued run that will never run: closed, so nothing shows it waiting forever. False if it
    was closed already."""
    run = await session.get(CheckRun, run_id, with_for_update=True)
    if run is None or run.finished_at is not None:
        return False
    text = why or f"version {version} was superseded by a newer version before its checks ran"
    run.status = "error"
    run.results = [_skipped(text)]
    run.finished_at = run.recorded_at = datetime.now(UTC)
    run.duration_ms = 0
    return True


REPORTED = "checks_reported"


async def report(ctx: jobs.JobContext, host: Any, task_id: int, run_id: int, *, commands: list[str]) -> None:
    """Show the run's state on the change request (GitHub: a check run or commit statuses), once per
    state; what the host returns (e.g. the check run's id) is kept as a `checks_reported` event."""
    if not ctx.settings.checks.github_report or not isinstance(host, CheckReporter):
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


async def _finish(ctx: jobs.JobContext, task_id: int, artifact: Artifact, run_id: int) -> None:
    """A finished run's outcome, recorded once (`recorded_at`, which only this job writes)."""
    async with ctx.sessions() as session, session.begin():
        task = await session.get(Task, task_id, with_for_update=True)
        run = await session.get(CheckRun, run_id, with_for_update=True)
        if task is None or run is None or run.finished_at is None or run.recorded_at is not None:
            return
        run.recorded_at = datetime.now(UTC)
        await session.flush()
        actor = system_actor(task.org_id, "checks")
        if [r.get("name") for r in run.results] == ["skipped"]:  # closed without running
            if _current(task, artifact):
                await request_review(
                    session, task, version=artifact.version, checks="none", check_run_id=None
                )
            return
        status, results = run.status, run.results
        # finished before its start was recorded: the log still says it started
        await _started_once(session, task, artifact, run, [r["command"] for r in results])
        failing = [r["command"] for r in results if not r["passed"]]
        summary = {
            "version": artifact.version,
            "check_run_id": run.id,
            "status": status,
            "mode": run.mode,
            "failing": failing,
        }
        await record_event(session, task, actor, "checks_completed", data=summary)
        if not _current(task, artifact):
            return  # a newer version or a person overtook this one: its outcome is only recorded
        if status == "failed" and run.mode == "block":
            await lifecycle.checks_failed(
                session,
                actor,
                task.id,
                feedback=feedback_for(results, artifact.version),
                lease_seconds=ctx.settings.tasks.lease_seconds,
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
