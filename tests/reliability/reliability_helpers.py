"""Helpers of the reliability suite: the git host's refs, a claimed task on a live server, and the
agent's side of a crash: submitting, retrying with the same idempotency key, waiting for publication."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx

from bench._server import running_server  # the benchmarks' server starter, shared rather than copied
from tests.support.servers import mcp_over_http

__all__ = [
    "agent_token",
    "claimed_task",
    "git",
    "retry_after_restart",
    "running_server",
    "submit_once",
    "wait_until_published",
]


def git(data_dir: Path, *args: str) -> str:
    repo = data_dir / "repos" / "default.git"
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def claimed_task(url: str, headers: dict[str, str], title: str) -> int:
    r = httpx.post(url + "/api/v1/tasks", json={"title": title}, headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    task = r.json()["id"]
    assert httpx.post(f"{url}/api/v1/tasks/{task}/claim", headers=headers, timeout=10).status_code == 200
    return task


def agent_token(url: str, admin_password: str, name: str) -> str:
    """A new agent and its token, made the way an operator would: as the admin, over REST."""
    login = {"username": "admin", "password": admin_password}
    jwt = httpx.post(url + "/api/v1/auth/token", data=login, timeout=10).json()["access_token"]
    admin = {"Authorization": f"Bearer {jwt}"}
    r = httpx.post(url + "/api/v1/users", json={"username": name, "role": "agent"}, headers=admin, timeout=10)
    assert r.status_code == 201, r.text
    r = httpx.post(url + "/api/v1/tokens", json={"name": name, "username": name}, headers=admin, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def submit_once(url: str, headers: dict[str, str], task: int, key: str) -> httpx.Response | None:
    """Version 1 of `task` over REST with an idempotency key; None if the server died before answering."""
    body = {"content": {f"task{task}.txt": "hello\n"}, "summary": "v1", "idempotency_key": key}
    try:
        return httpx.post(f"{url}/api/v1/tasks/{task}/artifacts", json=body, headers=headers, timeout=15)
    except httpx.TransportError:  # the process died before answering: the agent retries later
        return None


async def _retry_over_mcp(url: str, token: str, task: int) -> bool:
    """The same retry from an MCP agent; returns `created`."""
    async with mcp_over_http(url, token) as mcp:
        args = {"task_id": task, "content": {f"task{task}.txt": "hello\n"}, "idempotency_key": f"key-{task}"}
        result = await mcp.call_tool("submit_artifact", args)
        assert not result.is_error, result.content
        return result.structured_content["created"]


def retry_after_restart(url: str, headers: dict[str, str], token: str, first: dict[int, int | None]) -> None:
    """Every agent retries its submission with the same key (the first task over MCP, the rest over
    REST): each is recognised, none creates a version, and each names the artifact it was told of."""
    over_mcp, *over_rest = first
    for task in over_rest:
        r = submit_once(url, headers, task, key=f"key-{task}")
        assert r is not None and r.status_code == 200, r.text if r is not None else "no answer"
        assert r.json()["created"] is False and r.json()["artifact"]["version"] == 1
        assert first[task] in (None, r.json()["artifact"]["id"])
    assert asyncio.run(_retry_over_mcp(url, token, over_mcp)) is False


def wait_until_published(
    url: str, headers: dict[str, str], tasks: dict[int, int | None], *, fields: tuple[str, ...],
    seconds: float, poll: float,
) -> dict[int, list[dict]]:  # fmt: skip
    """The tasks' artifacts once every first version has all of `fields` (a dead worker's job is
    picked again once its heartbeat is stale)."""
    deadline = time.monotonic() + seconds
    while True:
        artifacts = {
            t: httpx.get(f"{url}/api/v1/tasks/{t}/artifacts", headers=headers, timeout=10).json()
            for t in tasks
        }
        if all(a and all(a[0][f] for f in fields) for a in artifacts.values()):
            return artifacts
        assert time.monotonic() < deadline, f"not every version was published: {artifacts}"
        time.sleep(poll)
