"""`kill -9` of the server while it publishes a submission to GitHub (the fake, a real HTTP server on
loopback): at the moment GitHub has created the branch, opened the pull request, labelled it, and at
OSIRIS's own steps after that. After a restart and the agent's retry with the same idempotency key:
one version, one branch with one commit, one pull request per task."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx

from .github_server import FakeGitHub, ServedGitHub
from .reliability_helpers import (
    agent_token,
    claimed_task,
    retry_after_restart,
    running_server,
    submit_once,
    wait_until_published,
)

REPO = "acme/widgets"
# (what was done when the server died, the call GitHub had just answered or OSIRIS's fault point)
CRASHES = (
    ("GitHub created the branch", r"POST /repos/acme/widgets/git/refs 201", None),
    ("GitHub opened the pull request", r"POST /repos/acme/widgets/pulls 201", None),
    ("GitHub labelled the pull request", r"POST /repos/acme/widgets/issues/\d+/labels 200", None),
    ("everything on GitHub, nothing recorded", None, "after_branch_push"),
    ("recorded, the job not yet marked done", None, "after_change_request"),
)


def test_kill_9_while_publishing_to_github_then_restart(server_env, tmp_path, record_property):
    fake = FakeGitHub(tmp_path / "github", secret="whsec-crash")
    (tmp_path / "github").mkdir()
    fake.create_repo(REPO, {"README.md": "# widgets\n"})
    data = Path(server_env["OSIRIS_DATA_DIR"])
    first: dict[int, int | None] = {}  # task -> artifact id the agent was told, if it was told
    with ServedGitHub(fake) as github:
        env = server_env | {
            "OSIRIS_GITHUB_TOKEN": "osiris-token",
            "OSIRIS_GITHUB_API_URL": github.url,
            "OSIRIS_GITHUB_REPO": REPO,
            "OSIRIS_GITHUB_RETRY_SECONDS": "1",
            "OSIRIS_JOB_HEARTBEAT_TIMEOUT_SECONDS": "3",  # a dead worker's job is picked again after 3 s
            "OSIRIS_JOB_POLL_SECONDS": "0.5",
        }
        token = ""
        for what, call, point in CRASHES:
            crash_env = env | ({"OSIRIS_FAULT_INJECT": point} if point else {})
            with running_server(data, env=crash_env) as (url, proc, _):
                token = token or agent_token(url, server_env["OSIRIS_ADMIN_PASSWORD"], "crashbot")
                agent = {"Authorization": f"Bearer {token}"}
                task = claimed_task(url, agent, f"crash: {what}")
                if call is not None:
                    github.kill_when(call, proc.pid)
                r = submit_once(url, agent, task, key=f"key-{task}")
                first[task] = r.json()["artifact"]["id"] if r is not None and r.status_code == 201 else None
                assert proc.wait(30) == -9, f"the server did not die when {what}"
        assert len(github.killed) == sum(1 for _, call, _ in CRASHES if call)

        restarted = time.monotonic()
        with running_server(data, env=env) as (url, _proc, _):
            retry_after_restart(url, agent, token, first)
            artifacts = wait_until_published(
                url, agent, first, fields=("commit_sha", "pr_number"), seconds=60, poll=0.3
            )
            recovered = time.monotonic() - restarted
            for task, versions in artifacts.items():
                assert [v["version"] for v in versions] == [1]
                events = httpx.get(f"{url}/api/v1/tasks/{task}/events", headers=agent, timeout=10).json()
                assert [e["kind"] for e in events].count("published") == 1  # a re-run adds no second one
                [pr] = [p for p in fake.pulls.values() if p.head == f"osiris/task-{task}"]
                assert (pr.number, pr.state, pr.draft, pr.labels) == (
                    versions[0]["pr_number"],
                    "open",
                    True,
                    ["osiris"],
                )
                git = fake.repos[REPO]
                assert git.rev(f"refs/heads/osiris/task-{task}") == versions[0]["commit_sha"]
                assert (
                    git.run(
                        "rev-list", "--count", f"refs/heads/osiris/task-{task}", "^refs/heads/main"
                    ).strip()
                    == "1"
                )

    created = Counter((m, p) for m, p, status in fake.log if status == 201 and m == "POST")
    assert created[("POST", f"/repos/{REPO}/pulls")] == len(first), created  # one PR per task, ever
    assert created[("POST", f"/repos/{REPO}/git/refs")] == len(first), created  # one branch per task, ever
    assert len(fake.pulls) == len(first)
    assert fake.violations == [], fake.violations[:10]
    record_property("crashes", "; ".join(what for what, _, _ in CRASHES))
    record_property("answered before the crash", sum(v is not None for v in first.values()))
    record_property("all published again after the restart", f"{recovered:.1f} s (job heartbeat timeout 3 s)")
