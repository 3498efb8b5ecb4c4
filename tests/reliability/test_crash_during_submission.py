"""`kill -9` of the server at each step of publishing a submission, then a restart and the agent's
retry: exactly one version, one branch with one commit, one change request per task."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from reliability_helpers import agent_token, claimed_task, git, running_server
from servers import mcp_over_http

POINTS = ("after_artifact_commit", "after_branch_push", "after_change_request")


def _submit(url: str, headers: dict[str, str], task: int, key: str) -> httpx.Response | None:
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


def test_kill_9_at_each_step_of_a_submission_then_restart(server_env, record_property):
    data = Path(server_env["OSIRIS_DATA_DIR"])
    first: dict[int, int | None] = {}  # task -> artifact id the agent was told, if it was told
    token = ""
    for point in POINTS:
        # (pgqueuer's default 30 s before a dead worker's job is picked again keeps the earlier
        # crashes' jobs from crashing this server at its fault point in the middle of the test)
        with running_server(data, env=server_env | {"OSIRIS_FAULT_INJECT": point}) as (url, proc, _):
            token = token or agent_token(url, server_env["OSIRIS_ADMIN_PASSWORD"], "crashbot")
            agent = {"Authorization": f"Bearer {token}"}
            task = claimed_task(url, agent, f"crash {point}")
            r = _submit(url, agent, task, key=f"key-{task}")
            first[task] = r.json()["artifact"]["id"] if r is not None and r.status_code == 201 else None
            assert proc.wait(30) == -9, f"the server did not die at {point}"
    server_log = (data / "server.log").read_text()
    assert all(f"fault injected at {p}" in server_log for p in POINTS)

    # the restarted server picks the dead workers' jobs again after 3 s rather than 30 s
    with running_server(data, env=server_env | {"OSIRIS_JOB_HEARTBEAT_TIMEOUT_SECONDS": "3"}) as (
        url,
        _proc,
        _,
    ):
        over_mcp, *over_rest = first
        for task in over_rest:
            r = _submit(url, agent, task, key=f"key-{task}")  # the agent's retry, same key
            assert r is not None and r.status_code == 200, r.text if r is not None else "no answer"
            assert r.json()["created"] is False and r.json()["artifact"]["version"] == 1
            assert first[task] in (None, r.json()["artifact"]["id"])
        assert asyncio.run(_retry_over_mcp(url, token, over_mcp)) is False
        # a job the dead worker had picked is picked again once its heartbeat is stale
        deadline = time.monotonic() + 90
        while True:
            artifacts = {
                t: httpx.get(f"{url}/api/v1/tasks/{t}/artifacts", headers=agent, timeout=10).json()
                for t in first
            }
            if all(a and a[0]["commit_sha"] for a in artifacts.values()):
                break
            assert time.monotonic() < deadline, f"not every version was published: {artifacts}"
            time.sleep(0.5)
        for task, versions in artifacts.items():
            assert [v["version"] for v in versions] == [1]
            r = httpx.get(f"{url}/api/v1/tasks/{task}/change-request", headers=agent, timeout=10)
            assert r.status_code == 200, r.text
            events = httpx.get(f"{url}/api/v1/tasks/{task}/events", headers=agent, timeout=10).json()
            assert [e["kind"] for e in events].count("published") == 1  # a re-run adds no second one
    branches = git(data, "for-each-ref", "--format=%(refname:short)", "refs/heads/osiris/").split()
    assert sorted(branches) == sorted(f"osiris/task-{t}" for t in first)
    for task in first:
        assert git(data, "rev-list", "--count", f"osiris/task-{task}", "^main") == "1"
    record_property("crash points", ", ".join(POINTS))
    record_property("answered before the crash", sum(v is not None for v in first.values()))
