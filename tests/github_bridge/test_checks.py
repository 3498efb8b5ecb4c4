"""Pre-review checks on the local git host: real repositories, real processes, real database."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from osiris.app import check_config, check_runner, jobs
from tests.support.jobs import drain, drain_kinds
from tests.support.rest import claimed_task, submitted

VENV_BIN = str(Path(sys.executable).parent)
TEST_FILE = "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n"


@pytest.fixture
def checked(runtime, monkeypatch, repo_name):
    """The test's repository runs `python -m pytest -q` (from the venv) in block mode."""
    s = runtime.settings
    monkeypatch.setitem(s.checks.commands, repo_name, ["python -m pytest -q -p no:cacheprovider"])
    monkeypatch.setitem(s.checks.mode, repo_name, "block")
    monkeypatch.setattr(s.checks, "path", f"{VENV_BIN}:/usr/bin:/bin")
    return s


CONFIG = "checks:\n  - test -f calc.py\n  - grep -q 'a + b' calc.py\nmode: block\n"


def _git_out(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def _commit_to_main(repo: Path, path: str, content: str) -> None:
    with tempfile.TemporaryDirectory() as work:

        def run(*cmd: str) -> None:
            subprocess.run(cmd, cwd=work, check=True, capture_output=True)

        run("git", "clone", "-q", str(repo), ".")
        Path(work, path).write_text(content)
        run("git", "add", path)
        run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "checks")
        run("git", "push", "-q", "origin", "HEAD:main")


async def new_claimed_task(client, headers, repo: str) -> int:
    return await claimed_task(client, headers, title="add()", repo=repo)


async def submit(client, headers, task_id: int, body: str) -> None:
    await submitted(client, headers, task_id, {"calc.py": body, "test_calc.py": TEST_FILE}, kind="files")


async def events(client, headers, task_id: int) -> list[dict]:
    return (await client.get(f"/api/v1/tasks/{task_id}/events", headers=headers)).json()


async def queued(runtime, entrypoint: str) -> int:
    async with runtime.sessions() as s:
        return (await jobs.queue_depth(s)).get(entrypoint, 0)


async def test_a_failing_version_goes_back_to_the_agent_and_the_fix_reaches_review(
    client, factory, runtime, host, repo_name, checked
):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_claimed_task(client, agent, repo_name)

    await submit(client, agent, task_id, "def add(a, b):\n    return a - b\n")
    await drain(runtime)

    task = (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()
    assert task["status"] == "IN_PROGRESS"  # back to the agent, who still holds it
    assert task["assignee_id"] is not None
    feedback = [m for m in task["messages"] if m["source"] == "checks"]
    assert len(feedback) == 1 and feedback[0]["direction"] == "to_agent"
    assert "python -m pytest -q" in feedback[0]["body"] and "assert 0 == 4" in feedback[0]["body"]
    log = await events(client, reviewer, task_id)
    kinds = [e["kind"] for e in log]
    assert "review_requested" not in kinds  # no reviewer was asked
    assert kinds[-3:] == ["checks_completed", "checks_failed", "message"]
    failed = next(e for e in log if e["kind"] == "checks_failed")
    assert (failed["from_status"], failed["to_status"]) == ("REVIEW", "IN_PROGRESS")
    assert failed["actor_name"] == "checks"
    assert await queued(runtime, "notify_requester") == 0
    runs = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()
    assert [(r["version"], r["status"], r["mode"]) for r in runs] == [(1, "failed", "block")]
    assert runs[0]["results"][0]["exit_code"] == 1 and not runs[0]["results"][0]["passed"]

    await submit(client, agent, task_id, "def add(a, b):\n    return a + b\n")
    await drain(runtime)

    task = (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()
    assert task["status"] == "REVIEW"
    runs = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()
    assert [(r["version"], r["status"]) for r in runs] == [(2, "passed"), (1, "failed")]
    assert "1 passed" in runs[0]["results"][0]["output"]
    requested = [e for e in await events(client, reviewer, task_id) if e["kind"] == "review_requested"]
    assert [(e["data"]["version"], e["data"]["checks"]) for e in requested] == [(2, "passed")]
    cr = (await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=reviewer)).json()
    assert cr["checks"]["status"] == "passed" and cr["checks"]["commit_sha"] == cr["head_sha"]
    # The temporary work trees are gone, and git forgot them.
    out = await asyncio.to_thread(_git_out, host.repo_path(repo_name), "worktree", "list")
    assert out.count("\n") == 1  # only the bare repository itself


async def test_inform_mode_shows_the_failure_to_reviewers_and_no_secret_reaches_the_check(
    client, factory, runtime, host, repo_name, monkeypatch
):
    monkeypatch.setenv("OSIRIS_SECRET_KEY", "do-not-leak-" + secrets.token_hex(8))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nor-this")
    monkeypatch.setitem(runtime.settings.checks.commands, repo_name, ["env", "exit 3"])
    monkeypatch.setitem(runtime.settings.checks.mode, repo_name, "inform")
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_claimed_task(client, agent, repo_name)
    await submit(client, agent, task_id, "def add(a, b):\n    return a + b\n")
    await drain(runtime)

    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "REVIEW"
    run = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()[0]
    assert run["status"] == "failed" and run["mode"] == "inform"
    env_out, failing = run["results"]
    assert env_out["passed"] and failing["exit_code"] == 3
    names = {line.split("=", 1)[0] for line in env_out["output"].splitlines() if "=" in line}
    assert "OSIRIS_SECRET_KEY" not in env_out["output"] and "AWS_SECRET_ACCESS_KEY" not in names
    assert names <= {"PATH", "HOME", "TMPDIR", "LANG", "PWD", "SHLVL", "_"}, names  # sh adds the last three
    requested = [e for e in await events(client, reviewer, task_id) if e["kind"] == "review_requested"]
    assert [e["data"]["checks"] for e in requested] == ["failed"]


async def test_repo_config_from_the_base_branch(client, factory, runtime, host, repo_name):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_claimed_task(client, agent, repo_name)  # creates nothing yet
    repo = host.repo_path(repo_name)
    await asyncio.to_thread(host._open, repo_name, "main", create=True)
    await asyncio.to_thread(_commit_to_main, repo, ".osiris.yml", CONFIG)

    await submit(client, agent, task_id, "def add(a, b):\n    return a * b\n")
    await drain(runtime)
    runs = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()
    assert [(r["source"], r["status"]) for r in runs] == [(".osiris.yml", "failed")]
    assert [r["passed"] for r in runs[0]["results"]] == [True, False]
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "IN_PROGRESS"


def test_repo_config_is_validated():
    assert check_config.parse_repo_config("checks: [ruff check .]\n", default_mode="block").mode == "block"
    for bad in ("checks: ruff", "checks: [1]", "mode: later", "- a\n- b", "checks: [a]\nextra: 1", "{"):
        with pytest.raises(check_config.ConfigError):
            check_config.parse_repo_config(bad, default_mode="block")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def test_timeout_kills_the_whole_process_group(tmp_path):
    env = check_runner.check_env(tmp_path, "/usr/bin:/bin")
    started = time.monotonic()
    result = await check_runner.run_command(
        "sleep 300 & echo $! > child.pid; echo started; wait",
        cwd=tmp_path,
        env=env,
        time_limit=1.0,
        max_output=1000,
    )
    assert time.monotonic() - started < 10
    assert result.timed_out and result.exit_code is None and not result.passed
    assert "started" in result.output and "killed after 1s" in result.output
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(50):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child), "the check's child survived its timeout"


async def test_output_is_capped_keeping_the_end(tmp_path):
    result = await check_runner.run_command(
        "seq 1 100000; echo THE-END; exit 1",
        cwd=tmp_path,
        env=check_runner.check_env(tmp_path, "/usr/bin:/bin"),
        time_limit=30,
        max_output=2048,
    )
    assert result.exit_code == 1 and result.output_truncated
    assert len(result.output.encode()) <= 2048 and result.output.rstrip().endswith("THE-END")
    assert os.environ.get("OSIRIS_SECRET_KEY") is None or "OSIRIS" not in result.output


async def test_approval_waits_for_blocking_checks_and_inform_never_holds(
    client, factory, runtime, host, repo_name, checked, monkeypatch
):
    from sqlalchemy import update

    from osiris.app.models import CheckRun

    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_claimed_task(client, agent, repo_name)
    await submit(client, agent, task_id, "def add(a, b):\n    return a + b\n")
    await drain_kinds(runtime, "publish_artifact")

    # Published: the run is recorded as queued, with its mode, before any check ran.
    runs = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()
    assert [(r["version"], r["status"], r["mode"], r["results"]) for r in runs] == [
        (1, "queued", "block", [])
    ]
    cr = (await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=reviewer)).json()
    assert cr["checks"]["status"] == "queued"
    assert "review_requested" not in [e["kind"] for e in await events(client, reviewer, task_id)]
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
    assert r.status_code == 409 and r.json()["code"] == "checks_pending", r.text

    async def set_run(**values) -> None:
        async with runtime.sessions() as s, s.begin():
            await s.execute(update(CheckRun).where(CheckRun.task_id == task_id).values(**values))

    await set_run(status="running")
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
    assert r.status_code == 409 and r.json()["code"] == "checks_pending"
    for failing in ("failed", "error"):
        await set_run(status=failing)
        r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
        assert r.status_code == 409 and r.json()["code"] == "checks_failed", r.text
    await set_run(status="running", mode="inform")
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
    assert r.status_code == 200, r.text  # inform never holds
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "DONE"


async def test_queued_checks_run_once_published_and_then_reviewers_are_asked(
    client, factory, runtime, host, repo_name, checked
):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_claimed_task(client, agent, repo_name)
    await submit(client, agent, task_id, "def add(a, b):\n    return a + b\n")
    await drain_kinds(runtime, "publish_artifact")
    await drain(runtime)  # the queued run goes running, then passes
    runs = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()
    assert [(r["status"], len(r["results"])) for r in runs] == [("passed", 1)]
    kinds = [e["kind"] for e in await events(client, reviewer, task_id)]
    assert kinds.index("published") < kinds.index("checks_started") < kinds.index("checks_completed")
    assert kinds[-1] == "review_requested"
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
    assert r.status_code == 200, r.text


async def test_a_version_superseded_before_its_checks_ran_is_closed_not_left_queued(
    client, factory, runtime, host, repo_name, checked
):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_claimed_task(client, agent, repo_name)
    await submit(client, agent, task_id, "def add(a, b):\n    return a - b\n")
    await drain_kinds(runtime, "publish_artifact")
    r = await client.post(f"/api/v1/tasks/{task_id}/reject", json={"feedback": "later"}, headers=reviewer)
    assert r.status_code == 200, r.text
    await submit(client, agent, task_id, "def add(a, b):\n    return a + b\n")
    await drain(runtime)
    runs = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()
    assert [(r["version"], r["status"]) for r in runs] == [(2, "passed"), (1, "error")]
    assert "superseded" in runs[1]["results"][0]["output"]
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "REVIEW"


async def test_an_explicit_isolation_that_cannot_be_set_up_is_an_error_not_a_pass(
    client, factory, runtime, host, repo_name, checked, monkeypatch
):
    from osiris.app import sandbox

    monkeypatch.setattr(runtime.settings.sandbox, "isolation", "userns")
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)  # no unshare, no setpriv here
    monkeypatch.setattr(sandbox, "_chosen", {})
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_claimed_task(client, agent, repo_name)
    await submit(client, agent, task_id, "def add(a, b):\n    return a + b\n")
    await drain(runtime)
    runs = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()
    assert [r["status"] for r in runs] == ["error"]
    assert "isolation 'userns' cannot be set up" in runs[0]["results"][0]["output"]
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
    assert r.status_code == 409 and r.json()["code"] == "checks_failed", r.text
