"""The git client's side of the smart-HTTP tests: real `git` against the `git_server` fixture."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from tests.support.jobs import drain
from tests.support.rest import claimed_task, submitted

# git must never stop to ask for a password, nor use a credential store of the machine.
GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "GIT_CONFIG_NOSYSTEM": "1"}
NO_HELPER = ("-c", "credential.helper=")


async def git(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    """Run git without blocking the loop the server shares with this test."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *NO_HELPER,
        *args,
        cwd=cwd,
        env=GIT_ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode()


async def published_repo(client, factory, runtime) -> tuple[str, int, str]:
    """A repository with a published branch; returns (repo name, task id, agent token)."""
    agent = await factory.user("agent")
    token = await factory.token(agent)
    headers = {"Authorization": f"Bearer {token}"}
    name = f"h-{secrets.token_hex(4)}"
    task_id = await claimed_task(client, headers, title="fetch me", repo=name)
    await submitted(client, headers, task_id, {"src/hello.txt": "hello\n"})
    await drain(runtime)
    return name, task_id, token
