"""Pre-review checks: a repository's own commands run on each published version before a person is
asked to review it.

The publish job enqueues `run_checks` once the commit exists. The job finds the commands (settings
`checks` / `checks_mode`, else `.osiris.yml` on the base branch), runs each in a temporary detached
work tree of that commit with a minimal environment (PATH, HOME, LANG, TMPDIR: nothing inherited, so
no secret of ours reaches a check), in its own process group that is killed whole on timeout, and
keeps the tail of its output up to a cap. The outcome is one `check_runs` row per artifact version.

Then, in one transaction: `checks_completed` is recorded and either reviewers are asked
(`review_requested`) or, in `block` mode with a failure, the task goes straight back to its agent
(`lifecycle.checks_failed`) with the failing output as feedback and no review request at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from osiris.app import jobs, lifecycle
from osiris.app.actors import system_actor
from osiris.app.models import Artifact, CheckRun, Task, TaskStatus
from osiris.github_bridge.gitcmd import GitFailed

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


def config_for(settings: Any, host: Any, task: Task) -> CheckConfig | None:
    """The repository's checks (blocking: may read git). Settings win over `.osiris.yml`."""
    if task.repo in settings.checks:
        mode = settings.checks_mode.get(task.repo, settings.checks_default_mode)
        return CheckConfig(list(settings.checks[task.repo]), mode, "settings")
    if settings.checks_read_repo_config and host is not None and hasattr(host, "base_file"):
        text = host.base_file(task, REPO_CONFIG)
        if text is not None:
            return parse_repo_config(text, default_mode=settings.checks_default_mode)
    return None


# --- running one command -----------------------------------------------------------------------


def check_env(home: Path, path: str) -> dict[str, str]:
    """Everything a check sees of our environment: built here, nothing copied from os.environ."""
    return {"PATH": path, "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8"}


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_command(
    command: str, *, cwd: Path, env: dict[str, str], time_limit: float, max_output: int
) -> CommandResult:
    """Run one check with `/bin/sh -c` in its own session; kill the whole group on timeout, and any
    stragglers it left behind when it ends. Keeps the last `max_output` bytes of stdout+stderr."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        cwd=str(cwd),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
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
        _kill_group(proc.pid)  # on timeout, the check; otherwise whatever it left running
        await proc.wait()
    try:
        await asyncio.wait_for(reader, 5)
    except TimeoutError:  # a grandchild that escaped the group still holds the pipe
        reader.cancel()
    output = tail.decode("utf-8", "replace")
    if timed_out:
        output += f"\n[killed after {time_limit:g}s: the time limit for a check]"
    return CommandResult(
        name=command.split()[0] if command.split() else command,
        command=command,
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration_ms=round((time.monotonic() - started) * 1000),
        output=output,
        output_truncated=seen > max_output,
    )


async def run_in_worktree(
    host: Any, task: Task, sha: str, config: CheckConfig, settings: Any
) -> list[CommandResult]:
    home = Path(tempfile.mkdtemp(prefix="osiris-check-home-"))
    worktree = host.worktree(task, sha)
    try:
        path = await asyncio.to_thread(worktree.__enter__)
        try:
            results = []
            for command in config.commands:
                results.append(
                    await run_command(
                        command,
                        cwd=path,
                        env=check_env(home, settings.checks_path),
                        time_limit=settings.checks_timeout_seconds,
                        max_output=settings.checks_output_bytes,
                    )
                )
            return results
        finally:
            await asyncio.to_thread(worktree.__exit__, None, None, None)
    finally:
        shutil.rmtree(home, ignore_errors=True)


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
    await lifecycle.record_event(
        session,
        task,
        system_actor(task.org_id, "checks"),
        "review_requested",
        data={"version": version, "checks": checks, "check_run_id": check_run_id},
    )


async def after_publish(session: Any, task: Task, artifact: Artifact, *, enabled: bool) -> None:
    """Called by the publish job, in the transaction that records the published commit."""
    if enabled:
        await jobs.enqueue(
            session, RUN_CHECKS, {"artifact_id": artifact.id}, dedupe_key=f"checks-{artifact.id}"
        )
    else:
        await request_review(session, task, version=artifact.version, checks="none", check_run_id=None)


def _current(task: Task, artifact: Artifact) -> bool:
    return task.status == TaskStatus.REVIEW.value and task.artifact_count == artifact.version


@jobs.job_handler(RUN_CHECKS)
async def run_checks(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host = ctx.services.get("code_host")
    async with ctx.sessions() as session:
        artifact = await session.get(Artifact, payload["artifact_id"])
        task = await session.get(Task, artifact.task_id) if artifact is not None else None
        done = await session.scalar(
            select(CheckRun.id).where(
                CheckRun.artifact_id == payload["artifact_id"], CheckRun.finished_at.is_not(None)
            )
        )
    if artifact is None or task is None or done is not None:
        return  # gone, or a re-run of a finished check
    actor = system_actor(task.org_id, "checks")
    if not _current(task, artifact) or artifact.commit_sha is None:
        async with ctx.sessions() as session, session.begin():
            await lifecycle.record_event(
                session,
                task,
                actor,
                "checks_skipped",
                data={"version": artifact.version, "why": "not the version in review"},
            )
        return
    started = time.monotonic()
    try:
        config = await asyncio.to_thread(config_for, ctx.settings, host, task)
    except ConfigError as exc:
        config = CheckConfig([], "inform", REPO_CONFIG)
        error: str | None = str(exc)
    else:
        error = None
    if config is None or (not config.commands and error is None):
        async with ctx.sessions() as session, session.begin():
            task = await session.get(Task, task.id, with_for_update=True)
            if task is not None and _current(task, artifact):
                await request_review(
                    session, task, version=artifact.version, checks="none", check_run_id=None
                )
        return
    async with ctx.sessions() as session, session.begin():
        run = (
            await session.execute(select(CheckRun).where(CheckRun.artifact_id == artifact.id))
        ).scalar_one_or_none()
        if run is None:  # a retried job reuses the row its crashed attempt made
            run = CheckRun(
                org_id=task.org_id,
                task_id=task.id,
                artifact_id=artifact.id,
                version=artifact.version,
                commit_sha=artifact.commit_sha,
                mode=config.mode,
                source=config.source,
                status="running",
            )
            session.add(run)
            await session.flush()
            await lifecycle.record_event(
                session, task, actor, "checks_started",
                data={"version": artifact.version, "check_run_id": run.id, "commands": config.commands},
            )  # fmt: skip
        run_id = run.id
    if error is not None:
        results: list[dict[str, Any]] = [
            CommandResult(REPO_CONFIG, REPO_CONFIG, None, False, 0, error, False).as_dict()
        ]
        status = "error"
    else:
        try:
            ran = await run_in_worktree(host, task, artifact.commit_sha, config, ctx.settings)
        except (GitFailed, OSError) as exc:  # no work tree, no shell: the checks could not run at all
            log.warning("checks could not run", extra={"task_id": task.id, "error": str(exc)})
            ran = [
                CommandResult("checks", "(setup)", None, False, 0, f"the checks could not run: {exc}", False)
            ]
            status = "error"
        else:
            status = "passed" if all(r.passed for r in ran) else "failed"
        results = [r.as_dict() for r in ran]
    await _finish(ctx, task.id, artifact, run_id, config, status, results, started)


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
        await lifecycle.record_event(session, task, actor, "checks_completed", data=summary)
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
