"""OSIRIS's own pre-review checks on GitHub (the fake): real git fetches the version over real smart
HTTP into a cache clone, the repository's `.osiris.yml` commands run on it, and the outcome is shown
on the PR (commit statuses with a token, a check run with a GitHub App) and decides who hears next."""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from osiris.app.models import CheckRun
from osiris.github_bridge.github_client import GitHub
from osiris.github_bridge.github_host import GitHubHost
from tests.support.fake_github import BOT
from tests.support.github_harness import REPO, GitHubEnv, claim_new_task, github_people, read_task
from tests.support.jobs import drain_kinds

VENV_BIN = str(Path(sys.executable).parent)
CONFIG = "checks:\n  - python check.py\nmode: block\n"
CHECK = (
    "import sys\n"
    "sys.path.insert(0, 'src')\n"
    "from app import greet\n"
    "got = greet('world')\n"
    "print('greet(world) ->', repr(got))\n"
    "assert got == 'hello world', f'expected hello world, got {got!r}'\n"
)
BROKEN = "def greet(name):\n    return 'bye ' + name\n"
FIXED = "def greet(name):\n    return f'hello {name}'\n"


@pytest.fixture
def checked(github: GitHubEnv, monkeypatch, tmp_path: Path) -> GitHubEnv:
    """`.osiris.yml` on main, the fake serving git over HTTP, a `git` on PATH that logs its argv."""
    github.fake.commit_files(REPO, "main", {".osiris.yml": CONFIG, "check.py": CHECK}, "add checks")
    url = github.fake.serve_git()
    s = github.runtime.settings
    monkeypatch.setattr(s.checks, "github_clone_url", url + "/{repo}.git")
    monkeypatch.setattr(s.checks, "path", f"{VENV_BIN}:/usr/bin:/bin")
    github.host.checkouts.root = tmp_path / "cache"
    github.host.checkouts.url_template = s.checks.github_clone_url
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = next(
        Path(d, "git")
        for d in os.environ["PATH"].split(":")
        if Path(d, "git").is_file() and d != str(wrappers)
    )
    script = wrappers / "git"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path}/git-argv.log\nexec {real} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
    yield github
    github.fake.stop_git()


async def _submit_files(env: GitHubEnv, task_id: int, agent_h, app_py: str) -> None:
    r = await env.client.post(
        f"/api/v1/tasks/{task_id}/artifacts",
        json={"content": {"src/app.py": app_py}, "kind": "files", "summary": "greeting"},
        headers=agent_h,
    )
    assert r.status_code == 201, r.text


async def _events(env: GitHubEnv, task_id: int, headers) -> list[dict]:
    return (await env.client.get(f"/api/v1/tasks/{task_id}/events", headers=headers)).json()


async def test_checks_run_on_a_fetched_version_and_report_commit_statuses(
    checked: GitHubEnv, factory, caplog, tmp_path: Path
):
    caplog.set_level(logging.DEBUG)
    env = checked
    admin_h, agent_h, _ = await github_people(factory)
    task_id = await claim_new_task(env, admin_h, agent_h)

    await _submit_files(env, task_id, agent_h, BROKEN)
    await env.drain()
    task = await read_task(env, task_id, agent_h)
    assert task["status"] == "IN_PROGRESS"  # back to the agent; no reviewer asked
    [feedback] = [m for m in task["messages"] if m["source"] == "checks"]
    assert "python check.py" in feedback["body"] and "got 'bye world'" in feedback["body"]
    events = await _events(env, task_id, admin_h)
    kinds = [e["kind"] for e in events]
    assert "review_requested" not in kinds and "checks_failed" in kinds
    sha1 = task["artifacts"][-1]["commit_sha"]
    assert env.fake.latest_statuses(REPO, sha1) == {"osiris/python check.py": "failure"}
    assert [s["state"] for s in env.fake.statuses] == ["pending", "failure"]
    assert env.fake.statuses[-1]["target_url"] == f"https://osiris.test/tasks/{task_id}"
    runs = (await env.client.get(f"/api/v1/tasks/{task_id}/checks", headers=admin_h)).json()
    assert [(r["version"], r["status"], r["source"]) for r in runs] == [(1, "failed", ".osiris.yml")]

    # The status webhooks that come back are our own: not counted a second time.
    assert [r.status_code for r in await env.deliver()]
    await env.drain()
    assert "ci_result" not in [e["kind"] for e in await _events(env, task_id, admin_h)]

    await _submit_files(env, task_id, agent_h, FIXED)
    await env.drain()
    task = await read_task(env, task_id, agent_h)
    assert task["status"] == "REVIEW"
    sha2 = task["artifacts"][-1]["commit_sha"]
    assert env.fake.latest_statuses(REPO, sha2) == {"osiris/python check.py": "success"}
    requested = [e for e in await _events(env, task_id, admin_h) if e["kind"] == "review_requested"]
    assert [(e["data"]["version"], e["data"]["checks"]) for e in requested] == [(2, "passed")]
    runs = (await env.client.get(f"/api/v1/tasks/{task_id}/checks", headers=admin_h)).json()
    assert "greet(world) -> 'hello world'" in runs[0]["results"][0]["output"]

    # Real git fetched over HTTP with our token as a header; never on a command line or in a log.
    fetches = [(m, p, who) for m, p, who in env.fake.git_requests if p.endswith("git-upload-pack")]
    assert fetches and all(who == BOT for _, _, who in fetches)
    argv = (tmp_path / "git-argv.log").read_text()
    assert "fetch --quiet --no-tags" in argv and "osiris-token" not in argv
    assert "osiris-token" not in caplog.text
    assert all("osiris-token" not in str(e["data"]) for e in await _events(env, task_id, admin_h))
    # The work trees are gone and the cache clone forgot them.
    cache = env.host.checkouts.path(REPO)
    assert (cache / "HEAD").is_file() and not any((cache / "worktrees").glob("*"))


async def test_approval_is_held_while_blocking_checks_are_queued(checked: GitHubEnv, factory):
    env = checked
    admin_h, agent_h, _ = await github_people(factory)
    env.fake.tokens["alice-token"] = "alice"
    task_id = await claim_new_task(env, admin_h, agent_h)
    await _submit_files(env, task_id, agent_h, FIXED)
    await drain_kinds(env.runtime, "publish_artifact")
    async with env.runtime.sessions() as session:
        run = (await session.execute(select(CheckRun).where(CheckRun.task_id == task_id))).scalar_one()
        assert (run.status, run.mode, run.version) == ("queued", "block", 1)

    r = await env.client.post(f"/api/v1/tasks/{task_id}/approve", headers=admin_h)
    assert r.status_code == 409 and r.json()["code"] == "checks_pending", r.text

    # A review approval on GitHub is not counted either: the task stays in REVIEW and the PR hears why.
    async with env.fake.client("alice-token") as alice:
        r = await alice.post(f"/repos/{REPO}/pulls/1/reviews", json={"event": "APPROVE", "body": "lgtm"})
        assert r.status_code == 200, r.text
        r = await alice.post(f"/repos/{REPO}/issues/1/comments", json={"body": "/approve"})
        assert r.status_code == 201, r.text
    await env.deliver()
    await drain_kinds(env.runtime, "github_event", "deliver_message")
    assert (await read_task(env, task_id, admin_h))["status"] == "REVIEW"
    replies = [c["body"] for c in env.fake.comments if "checks_pending" in c["body"]]
    assert len(replies) == 2 and all("approval was not counted" in b for b in replies)
    assert not env.pr(1).merged

    await env.drain()  # the checks run and pass: now a person may approve
    assert (await read_task(env, task_id, admin_h))["status"] == "REVIEW"
    r = await env.client.post(f"/api/v1/tasks/{task_id}/approve", headers=admin_h)
    assert r.status_code == 200, r.text
    await env.drain()
    assert env.pr(1).merged


async def test_with_a_github_app_each_version_is_one_check_run(
    checked: GitHubEnv, factory, monkeypatch, caplog
):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    caplog.set_level(logging.DEBUG)
    env = checked
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    env.fake.installations["42"] = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    s = env.runtime.settings
    monkeypatch.setattr(s.github, "token", None)
    monkeypatch.setattr(s.github, "app_id", "7")
    monkeypatch.setattr(s.github, "private_key", SecretStr(pem))
    monkeypatch.setattr(s.github, "installation_id", 42)
    http = httpx.AsyncClient(transport=env.fake.transport(), timeout=5)
    host = GitHubHost(s, env.runtime.sessions, gh=GitHub(s, client=http))
    host.checkouts.root = env.host.checkouts.root
    monkeypatch.setattr(env.runtime.services, "code_host", host)
    env.host = host
    try:
        admin_h, agent_h, _ = await github_people(factory)
        task_id = await claim_new_task(env, admin_h, agent_h)
        await _submit_files(env, task_id, agent_h, BROKEN)
        await env.drain()
        assert (await read_task(env, task_id, agent_h))["status"] == "IN_PROGRESS"
        [failed] = env.fake.check_runs.values()
        assert (failed["status"], failed["conclusion"], failed["app"]["id"]) == ("completed", "failure", 7)
        assert failed["output"]["title"] == "1 of 1 checks failed"
        assert "got 'bye world'" in failed["output"]["text"] and len(failed["output"]["text"]) <= 65535
        assert failed["external_id"].startswith("osiris-check-run-") and env.fake.statuses == []

        await env.deliver()  # created + completed echoes of our own check run: skipped
        env.fake.fail(r"PATCH .*/check-runs/\d+$", "500", 1)  # the result's report fails once: retried
        await _submit_files(env, task_id, agent_h, FIXED)
        await env.drain()
        assert env.fake.faults[-1].times == 0
        await env.deliver()
        await env.drain()
        task = await read_task(env, task_id, agent_h)
        assert task["status"] == "REVIEW"
        runs = sorted(env.fake.check_runs.values(), key=lambda r: r["id"])
        assert [(r["head_sha"], r["conclusion"]) for r in runs] == [
            (task["artifacts"][0]["commit_sha"], "failure"),
            (task["artifacts"][1]["commit_sha"], "success"),
        ]
        events = await _events(env, task_id, admin_h)
        assert "ci_result" not in [e["kind"] for e in events]
        tokens = [t for t in env.fake.app_tokens]
        assert tokens and all(t not in caplog.text for t in tokens)
        argv = (Path(env.host.checkouts.root).parent / "git-argv.log").read_text()
        assert all(t not in argv for t in tokens)
    finally:
        await http.aclose()


async def test_a_version_that_cannot_be_fetched_is_an_error_that_holds_approval(
    checked: GitHubEnv, factory, monkeypatch
):
    env = checked
    env.host.checkouts.url_template = env.host.checkouts.url_template.replace("{repo}", "gone/{repo}")
    admin_h, agent_h, _ = await github_people(factory)
    task_id = await claim_new_task(env, admin_h, agent_h)
    await _submit_files(env, task_id, agent_h, FIXED)
    await env.drain()
    task = await read_task(env, task_id, agent_h)
    assert task["status"] == "REVIEW"  # reviewers see the error; it does not send the work back
    [run] = (await env.client.get(f"/api/v1/tasks/{task_id}/checks", headers=admin_h)).json()
    assert run["status"] == "error" and "could not run" in run["results"][0]["output"]
    assert "osiris-token" not in run["results"][0]["output"]
    sha = task["artifacts"][-1]["commit_sha"]
    assert env.fake.latest_statuses(REPO, sha) == {"osiris/python check.py": "error"}
    r = await env.client.post(f"/api/v1/tasks/{task_id}/approve", headers=admin_h)
    assert r.status_code == 409 and r.json()["code"] == "checks_failed", r.text
