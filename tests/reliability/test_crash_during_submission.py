"""`kill -9` of the server at each step of publishing a submission, then a restart and the agent's
retry: exactly one version, one branch with one commit, one change request per task."""

from __future__ import annotations

from pathlib import Path

import httpx

from .reliability_helpers import (
    agent_token,
    claimed_task,
    git,
    retry_after_restart,
    running_server,
    submit_once,
    wait_until_published,
)

POINTS = ("after_artifact_commit", "after_branch_push", "after_change_request")


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
            r = submit_once(url, agent, task, key=f"key-{task}")
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
        retry_after_restart(url, agent, token, first)
        artifacts = wait_until_published(url, agent, first, fields=("commit_sha",), seconds=90, poll=0.5)
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
