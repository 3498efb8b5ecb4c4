"""Pre-review checks: a repository's own commands run on each published version before a person is
asked to review it.

The publish job enqueues `run_checks` once the commit exists. The job finds the commands (settings
`checks` / `checks_mode`, else `.osiris.yml` on the base branch), runs each in a throw-away copy of
that commit that shares nothing with the live repositories (`github_bridge/copies.py`), isolated as
`sandbox.py` sets up (a pid and mount namespace as another uid, or a user namespace; the server's
data dir, processes and secrets out of sight), with a minimal environment (PATH, HOME, LANG, TMPDIR:
nothing inherited, so no secret of ours reaches a check). On timeout its whole process tree is
killed. The tail of its output is kept up to a cap, with every secret value of ours replaced by
`[redacted]` (defence in depth). The outcome is one `check_runs` row per artifact version.

Then, in one transaction: `checks_completed` is recorded and either reviewers are asked
(`review_requested`) or, in `block` mode with a failure, the task goes straight back to its agent
(`lifecycle.checks_failed`) with the failing output as feedback and no review request at all.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from osiris.app import jobs, lifecycle, sandbox
from osiris.app.actors import system_actor
from osiris.app.events import record_event
from osiris.app.models import Artifact, CheckRun, Task, TaskEvent, TaskStatus
from osiris.app.ports import CheckoutFailed, CheckoutSource, CheckReporter, RemoteCheckoutSource

log = logging.getLogger(__name__)

RUN_CHECKS = "run_checks"
REPO_CONFIG = ".osiris.yml"
MODES = ("block", "inform")
MAX_COMMANDS = 20


class ConfigError(ValueError):
    """`.osiris.yml` is not what it should be; the reason is shown to reviewers."""


@dataclass(frozen=True)
class CheckConfig:
    commands: list[str]
    mode: str  # block | inform
    source: str  # settings | .osiris.yml
    error: str | None = None  # an invalid .osiris.yml: an `error` result, never a block

    def as_payload(self) -> dict[str, Any]:
        return {"commands": self.commands, "mode": self.mode, "source": self.source, "error": self.error}

    @classmethod
    def from_payload(cls, data: Any) -> CheckConfig | None:
        if not isinstance(data, dict):
            return None  # a job queued before configs travelled with it: read it again
        return cls(list(data["commands"]), data["mode"], data["source"], data.get("error"))


@dataclass
class CommandResult:
    name: str
    command: str
    exit_code: int | None
    timed_out: bool
    duration_ms: int
    output: str
    output_truncated: bool

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


def parse_repo_config(text: str, *, default_mode: str) -> CheckConfig:
    """Validate `.osiris.yml`: `checks:` a list of command strings, `mode:` block or inform."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{REPO_CONFIG} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{REPO_CONFIG} must be a mapping with `checks:` and `mode:`")
    unknown = set(data) - {"checks", "mode"}
    if unknown:
        raise ConfigError(f"{REPO_CONFIG}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    commands = data.get("checks") or []
    if not isinstance(commands, list) or not all(isinstance(c, str) and c.strip() for c in commands):
        raise ConfigError(f"{REPO_CONFIG}: `checks` must be a list of non-empty command strings")
    if len(commands) > MAX_COMMANDS:
        raise ConfigError(f"{REPO_CONFIG}: at most {MAX_COMMANDS} checks")
    mode = data.get("mode", default_mode)
    if mode not in MODES:
        raise ConfigError(f"{REPO_CONFIG}: `mode` must be block or inform, not {mode!r}")
    return CheckConfig([c.strip() for c in commands], mode, REPO_CONFIG)


async def resolve_config(settings: Any, host: Any, task: Task) -> CheckConfig | None:
    """The repository's checks, None when it has none or the host cannot run them. Settings win
    over `.osiris.yml`; an invalid file is a config whose `error` is shown to reviewers (inform)."""
    if not can_run(host):
        return None
    if task.repo in settings.checks:
        mode = settings.checks_mode.get(task.repo, settings.checks_default_mode)
        config = CheckConfig(list(settings.checks[task.repo]), mode, "settings")
        return config if config.commands else None
    if not settings.checks_read_repo_config:
        return None
    if isinstance(host, RemoteCheckoutSource):
        text = await host.checks_file(task, REPO_CONFIG)
    else:
        text = await asyncio.to_thread(host.base_file, task, REPO_CONFIG)
    if text is None:
        return None
    try:
        config = parse_repo_config(text, default_mode=settings.checks_default_mode)
    except ConfigError as exc:
        return CheckConfig([], "inform", REPO_CONFIG, error=str(exc))
    return config if config.commands else None


def can_run(host: Any) -> bool:
    """The host can give the checks a work tree: the local git host, or GitHub through a cache clone."""
    return isinstance(host, (CheckoutSource, RemoteCheckoutSource))


# --- running one command -----------------------------------------------------------------------


def check_env(home: Path, path: str) -> dict[str, str]:
    """Everything a check sees of our environment: built here, nothing copied from os.environ."""
    return {"PATH": path, "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8"}


async def run_command(
    command: str,
    *,
    cwd: Path,
    env: dict[str, str],
    time_limit: float,
    max_output: int,
    box: sandbox.Sandbox | None = None,
) -> CommandResult:
    """Run one check with `/bin/sh -c` in `box` (default: no isolation, in `cwd`), in its own
    session; kill its whole tree on timeout, and whatever it left behind when it ends. Keeps the
    last `max_output` bytes of stdout+stderr. In a sandbox `cwd` is `<work>/src` of a copy."""
    box = box or sandbox.Sandbox("none")
    nonce = secrets.token_hex(8)
    reaper = sandbox.Reaper(box, Path(env["HOME"]))
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *reaper.wrap(box.argv(command, cwd.parent, nonce)),
            cwd=str(cwd),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        reaper.close()
        raise
    tail = bytearray()
    seen = 0

    async def read() -> None:
        nonlocal seen
        assert proc.stdout is not None  # noqa: S101 - PIPE above
        while chunk := await proc.stdout.read(65536):
            seen += len(chunk)
            tail.extend(chunk)
            if len(tail) > max_output:
                del tail[: len(tail) - max_output]

    reader = asyncio.create_task(read())
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), time_limit)
    except TimeoutError:
        timed_out = True
    finally:
        reaper.kill(proc.pid)  # on timeout, the check; otherwise whatever it left running
        await proc.wait()
        reaper.close()
        box.cleanup(cwd.parent, nonce)
    try:
        await asyncio.wait_for(reader, 5)
    except TimeoutError:  # only without a pid namespace or cgroup: an escapee still holds the pipe
        reader.cancel()
    output = tail.decode("utf-8", "replace")
    if timed_out:
        output += f"\n[killed after {time_limit:g}s: the time limit for a check]"
    elif (why := box.setup_error(output, proc.returncode, nonce)) is not None:
        raise sandbox.SandboxUnavailable(why)
    return CommandResult(
        name=command.split()[0] if command.split() else command,
        command=command,
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration_ms=round((time.monotonic() - started) * 1000),
        output=output,
        output_truncated=seen > max_output,
    )


async def run_in_copy(
    host: Any, task: Task, sha: str, config: CheckConfig, settings: Any
) -> list[CommandResult]:
    """Each command in turn in a fresh copy of `sha`, in the sandbox this process chose. Raises
    SandboxUnavailable (an explicit level that does not work here), CheckoutFailed or OSError."""
    box = await asyncio.to_thread(sandbox.choose, settings)
    if isinstance(host, RemoteCheckoutSource):
        copy = await host.checkout(task, sha)  # the fetch itself runs on entering, in a thread
    else:
        copy = host.worktree(task, sha)
    path = await asyncio.to_thread(copy.__enter__)
    try:
        home = path.parent / "home"
        home.mkdir()
        await asyncio.to_thread(box.prepare, path.parent)
        results = []
        for command in config.commands:
            results.append(
                await run_command(
                    command,
                    cwd=path,
                    env=check_env(home, settings.checks_path),
                    time_limit=settings.checks_timeout_seconds,
                    max_output=settings.checks_output_bytes,
                    box=box,
                )
            )
        return results
    finally:
        await asyncio.to_thread(copy.__exit__, None, None, None)


# --- the job -----------------------------------------------------------------------------------


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
    actor = system_actor(task.org_id, "checks")
    if task.artifact_count != artifact.version or artifact.commit_sha is None:
        # A newer version overtook this one before its checks ran: they never will.
        async with ctx.sessions() as session, session.begin():
            if run is not None:
                await _close_skipped(session, run.id, artifact.version)
            await record_event(
                session,
                task,
                actor,
                "checks_skipped",
                data={"version": artifact.version, "why": "not the latest version"},
            )
        return
    started = time.monotonic()
    config = queued_config or await resolve_config(ctx.settings, host, task)
    if config is None:  # no checks (any more): reviewers are asked
        async with ctx.sessions() as session, session.begin():
            locked = await session.get(Task, task.id, with_for_update=True)
            if run is not None:
                await _close_skipped(session, run.id, artifact.version, why="no checks are configured now")
            if locked is not None and _current(locked, artifact):
                await request_review(
                    session, locked, version=artifact.version, checks="none", check_run_id=None
                )
        return
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
                session, task, actor, "checks_started",
                data={"version": artifact.version, "check_run_id": run.id, "commands": config.commands},
            )  # fmt: skip
        run_id = run.id
    try:
        await report(ctx, host, task.id, run_id, commands=config.commands)
    except Exception as exc:  # noqa: BLE001 - the start report is a courtesy; the result is reported
        log.warning("checks: the start could not be reported", extra={"task_id": task.id, "error": str(exc)})
    if config.error is not None:
        results: list[dict[str, Any]] = [
            CommandResult(REPO_CONFIG, REPO_CONFIG, None, False, 0, config.error, False).as_dict()
        ]
        status = "error"
    else:
        secrets_of_ours = await asyncio.to_thread(sandbox.secret_values, ctx.settings)
        try:
            ran = await run_in_copy(host, task, artifact.commit_sha, config, ctx.settings)
        except (
            CheckoutFailed,
            OSError,
            sandbox.SandboxUnavailable,
        ) as exc:  # the checks could not run at all
            log.warning("checks could not run", extra={"task_id": task.id, "error": str(exc)})
            ran = [
                CommandResult("checks", "(setup)", None, False, 0, f"the checks could not run: {exc}", False)
            ]
            status = "error"
        else:
            status = "passed" if all(r.passed for r in ran) else "failed"
        for r in ran:  # what the agent, reviewers and GitHub will read: no secret of ours in it
            r.output = sandbox.redact(r.output, secrets_of_ours)
        results = [r.as_dict() for r in ran]
    await _finish(ctx, task.id, artifact, run_id, config, status, results, started)
    await report(ctx, host, task.id, run_id, commands=config.commands or [r["command"] for r in results])


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
