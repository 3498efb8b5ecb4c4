"""Running one check command: `/bin/sh -c` in a throw-away copy of the version's commit
(`github_bridge/copies.py`), inside the sandbox `sandbox.py` chose, with an environment built from
scratch (nothing of ours inherited); the whole process tree killed on timeout, the tail of the output
kept up to a cap."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osiris.app import sandbox
from osiris.app.check_config import CheckConfig
from osiris.app.models import Task
from osiris.app.ports import RemoteCheckoutSource


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
                    env=check_env(home, settings.checks.path),
                    time_limit=settings.checks.timeout_seconds,
                    max_output=settings.checks.output_bytes,
                    box=box,
                )
            )
        return results
    finally:
        await asyncio.to_thread(copy.__exit__, None, None, None)
