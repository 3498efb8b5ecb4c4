"""Approvals are pinned to what the reviewer saw, and nothing unpublished or unchecked is approvable.

Each test drives the real app the way an agent and a reviewer would: the agent over REST with its
token, the reviewer over REST, through the portal's forms, or on GitHub (the fake, its webhooks
signed with the real secret); the worker's jobs run from the real queue. The agent is hostile: it
races the publish job, resubmits under a pending approval, and pushes to its pull request's branch
with its own GitHub credentials.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.fake_github import BOT
from tests.support.github_harness import (
    PATCH_V1,
    PATCH_V2,
    REPO,
    GitHubEnv,
    claim_new_task,
    github_people,
    read_task,
    submit_version,
)
from tests.support.jobs import drain
from tests.support.portal_helpers import PASSWORD, csrf_of, sign_in
from tests.support.rest import claimed_task, submitted, task_view

VENV_BIN = str(Path(sys.executable).parent)

SUBTRACTS = {"calc.py": "def add(a, b):\n    return a - b\n"}
ADDS = {"calc.py": "def add(a, b):\n    return a + b\n"}


# --- the local git host: REST and the portal -----------------------------------------------------


async def _claimed(client: httpx.AsyncClient, agent: dict, repo: str) -> int:
    return await claimed_task(client, agent, title="add()", repo=repo)


async def _submit_files(client: httpx.AsyncClient, agent: dict, task_id: int, files: dict) -> None:
    await submitted(client, agent, task_id, files, kind="files")


async def _kinds(client: httpx.AsyncClient, headers: dict, task_id: int) -> list[str]:
    events = (await client.get(f"/api/v1/tasks/{task_id}/events", headers=headers)).json()
    return [e["kind"] for e in events]


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x"}
    env["GIT_COMMITTER_EMAIL"] = "x@x"
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, env=env)


def _file_on(repo: Path, ref: str, path: str) -> str | None:
    shown = _git(repo, "show", f"{ref}:{path}")
    return shown.stdout if shown.returncode == 0 else None


async def _back_with_v2(client, agent, reviewer, runtime, task_id: int) -> tuple[str, str]:
    """Version 1 published and sent back; version 2 submitted and published. Their commits."""
    await _submit_files(client, agent, task_id, SUBTRACTS)
    await drain(runtime)
    v1 = (await task_view(client, reviewer, task_id))["artifacts"][-1]["commit_sha"]
    r = await client.post(f"/api/v1/tasks/{task_id}/reject", json={"feedback": "a + b"}, headers=reviewer)
    assert r.status_code == 200, r.text
    await _submit_files(client, agent, task_id, ADDS)
    await drain(runtime)
    task = await task_view(client, reviewer, task_id)
    assert task["status"] == "REVIEW"
    v2 = task["artifacts"][-1]["commit_sha"]
    assert v1 and v2 and v1 != v2
    return v1, v2


async def test_an_approval_before_publication_is_refused_and_failing_checks_send_it_back(
    client, factory, runtime, host, repo_name, monkeypatch
):
    """(a) The agent submits failing code to a repository with blocking checks, and a reviewer (or
    one tricked into it) approves at once, before the publish job has run: nothing is held yet,
    so the approval must be refused rather than merge what no check and no person has seen."""
    s = runtime.settings
    monkeypatch.setitem(s.checks.commands, repo_name, ["grep -q 'a + b' calc.py"])
    monkeypatch.setitem(s.checks.mode, repo_name, "block")
    monkeypatch.setattr(s.checks, "path", f"{VENV_BIN}:/usr/bin:/bin")
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await _claimed(client, agent, repo_name)
    await _submit_files(client, agent, task_id, SUBTRACTS)

    for body in (None, {"version": 1}, {"comment": "lgtm", "version": 1}):
        r = await client.post(f"/api/v1/tasks/{task_id}/approve", json=body, headers=reviewer)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "not_published" and "version 1" in r.json()["detail"]
    assert (await task_view(client, reviewer, task_id))["status"] == "REVIEW"

    await drain(runtime)  # publish, then the checks run and fail
    task = await task_view(client, agent, task_id)
    assert task["status"] == "IN_PROGRESS"  # back with its agent
    assert [m["source"] for m in task["messages"] if m["direction"] == "to_agent"] == ["checks"]
    runs = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=reviewer)).json()
    assert [(r["version"], r["status"], r["mode"]) for r in runs] == [(1, "failed", "block")]
    kinds = await _kinds(client, reviewer, task_id)
    assert "approve" not in kinds and "merged" not in kinds
    assert _file_on(host.repo_path(repo_name), "main", "calc.py") is None  # nothing merged


async def test_an_approval_of_an_older_version_is_stale(client, factory, runtime, host, repo_name):
    """(b) Approving version 1 (or version 2 at version 1's commit) after the agent's version 2 is
    `stale_approval`; the approval that names version 2 and its commit merges exactly that."""
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await _claimed(client, agent, repo_name)
    v1, v2 = await _back_with_v2(client, agent, reviewer, runtime, task_id)

    for body in (
        {"version": 1},
        {"version": 1, "head_sha": v1},
        {"version": 2, "head_sha": v1},
        {"head_sha": v1},
    ):
        r = await client.post(f"/api/v1/tasks/{task_id}/approve", json=body, headers=reviewer)
        assert r.status_code == 409, (body, r.text)
        assert r.json()["code"] == "stale_approval", r.text
    assert (await task_view(client, reviewer, task_id))["status"] == "REVIEW"
    assert "approve" not in await _kinds(client, reviewer, task_id)

    r = await client.post(
        f"/api/v1/tasks/{task_id}/approve", json={"version": 2, "head_sha": v2.upper()}, headers=reviewer
    )
    assert r.status_code == 200 and r.json()["status"] == "DONE", r.text
    await drain(runtime)
    events = (await client.get(f"/api/v1/tasks/{task_id}/events", headers=reviewer)).json()
    [approve] = [e for e in events if e["kind"] == "approve"]
    assert (approve["data"]["version"], approve["data"]["head_sha"]) == (2, v2)
    [merged] = [e for e in events if e["kind"] == "merged"]
    assert merged["data"]["head_sha"] == v2
    assert _file_on(host.repo_path(repo_name), "main", "calc.py") == ADDS["calc.py"]


async def test_the_portal_approve_form_is_pinned_and_a_stale_form_is_refused(
    app, client, factory, runtime, host, repo_name
):
    """(c) The approve form carries the version and commit the page showed. The reviewer opens the
    page on version 1; meanwhile another reviewer sends it back and the agent submits version 2;
    the first reviewer's form, posted now, must not approve version 2."""
    _, agent = await factory.member("agent")
    _, other_reviewer = await factory.member("reviewer")
    person = await factory.user("reviewer", password=PASSWORD)
    task_id = await _claimed(client, agent, repo_name)
    await _submit_files(client, agent, task_id, SUBTRACTS)
    await drain(runtime)
    v1 = (await task_view(client, other_reviewer, task_id))["artifacts"][-1]["commit_sha"]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        assert (await sign_in(browser, person.username)).status_code == 303
        page = (await browser.get(f"/tasks/{task_id}")).text
        form = _approve_form(page)
        assert (form["version"], form["head_sha"]) == ("1", v1)

        r = await client.post(
            f"/api/v1/tasks/{task_id}/reject", json={"feedback": "a + b"}, headers=other_reviewer
        )
        assert r.status_code == 200, r.text
        await _submit_files(client, agent, task_id, ADDS)
        await drain(runtime)
        assert (await task_view(client, agent, task_id))["status"] == "REVIEW"

        r = await browser.post(f"/tasks/{task_id}/approve", data=form)
        assert r.status_code == 409 and "<html" in r.text, r.text
        assert "version 1" in r.text and "latest is version 2" in r.text
        # Nor does a form stripped of its pin approve whatever is newest.
        bare = {"csrf_token": form["csrf_token"], "comment": ""}
        assert (await browser.post(f"/tasks/{task_id}/approve", data=bare)).status_code == 422
        assert (await task_view(client, agent, task_id))["status"] == "REVIEW"

        fresh = _approve_form((await browser.get(f"/tasks/{task_id}")).text)
        v2 = (await task_view(client, agent, task_id))["artifacts"][-1]["commit_sha"]
        assert (fresh["version"], fresh["head_sha"]) == ("2", v2)
        r = await browser.post(f"/tasks/{task_id}/approve", data=fresh)
        assert r.status_code == 303, r.text
    await drain(runtime)
    assert (await task_view(client, agent, task_id))["status"] == "DONE"
    assert _file_on(host.repo_path(repo_name), "main", "calc.py") == ADDS["calc.py"]


def _approve_form(page: str) -> dict[str, str]:
    form = re.search(r'<form method="post" action="/tasks/\d+/(?:approve|review)".*?</form>', page, re.DOTALL)
    assert form, "the page has no approve form"
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form.group(0)))
    assert fields.keys() >= {"csrf_token", "version", "head_sha"}, fields
    return {**fields, "csrf_token": csrf_of(form.group(0)), "comment": "ship it"}


async def test_the_merge_job_merges_the_approved_commit_or_nothing(client, factory, runtime, host, repo_name):
    """(f, local host) Between the approval and the merge job the branch moves: nothing is merged and
    the task goes back to its agent."""
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await _claimed(client, agent, repo_name)
    await _submit_files(client, agent, task_id, ADDS)
    await drain(runtime)
    approved = (await task_view(client, reviewer, task_id))["artifacts"][-1]["commit_sha"]
    r = await client.post(
        f"/api/v1/tasks/{task_id}/approve", json={"version": 1, "head_sha": approved}, headers=reviewer
    )
    assert r.status_code == 200, r.text

    repo, branch = host.repo_path(repo_name), f"refs/heads/osiris/task-{task_id}"
    tree = _git(repo, "rev-parse", f"{approved}^{{tree}}").stdout.strip()
    moved = _git(repo, "commit-tree", tree, "-p", approved, "-m", "not what was approved").stdout.strip()
    assert _git(repo, "update-ref", branch, moved, approved).returncode == 0
    main_before = _git(repo, "rev-parse", "main").stdout.strip()

    await drain(runtime)
    task = await task_view(client, agent, task_id)
    assert task["status"] == "IN_PROGRESS"  # the merge failed and undid the approval
    assert approved[:12] in task["messages"][-1]["body"]
    assert _git(repo, "rev-parse", "main").stdout.strip() == main_before
    events = (await client.get(f"/api/v1/tasks/{task_id}/events", headers=reviewer)).json()
    assert "merged" not in [e["kind"] for e in events]
    [approve] = [e for e in events if e["kind"] == "approve"]
    assert approve["data"]["head_sha"] == approved  # the merge job's pin comes from the approval


# --- GitHub --------------------------------------------------------------------------------------


async def _published_on_github(env: GitHubEnv, factory) -> tuple[int, dict, dict, str]:
    admin_h, agent_h, _ = await github_people(factory)
    env.fake.tokens["alice-token"] = "alice"
    task_id = await claim_new_task(env, admin_h, agent_h)
    await submit_version(env, task_id, agent_h, PATCH_V1, "v1")
    await env.drain()
    sha = env.fake.repos[REPO].rev(f"refs/heads/osiris/task-{task_id}")
    assert sha and env.pr(1).head == f"osiris/task-{task_id}"
    return task_id, admin_h, agent_h, sha


def _bot_comments(env: GitHubEnv, text: str) -> list[str]:
    return [c["body"] for c in env.fake.comments if c["user"]["login"] == BOT and text in c["body"]]


async def _events(env: GitHubEnv, task_id: int, headers: dict) -> list[dict]:
    return (await env.client.get(f"/api/v1/tasks/{task_id}/events", headers=headers)).json()


STALE_HEAD = "Head branch was modified. Review and try the merge again."


def _merge_puts(env: GitHubEnv) -> list[str | None]:
    """OSIRIS's merge attempts (GraphQL mergePullRequest pinned to a head): why GitHub refused each."""
    return [why for login, why in env.fake.merges if login == BOT]


async def test_a_late_approve_comment_written_before_the_latest_push_approves_nothing(
    github: GitHubEnv, factory
):
    """(d) Alice writes `/approve` on version 1; its webhook is delayed. Another reviewer sends the
    task back, the agent pushes version 2, and only then does Alice's comment arrive: it approved the
    head of its time, not version 2. The PR says so; a fresh `/approve` then merges version 2."""
    env = github
    task_id, admin_h, agent_h, _ = await _published_on_github(env, factory)
    async with env.fake.client("alice-token") as alice:
        r = await alice.post(f"/repos/{REPO}/issues/1/comments", json={"body": "/approve"})
        assert r.status_code == 201, r.text
    late, env.fake.outbox = env.fake.outbox, []

    r = await env.client.post(
        f"/api/v1/tasks/{task_id}/reject", json={"feedback": "not yet"}, headers=admin_h
    )
    assert r.status_code == 200, r.text
    await submit_version(env, task_id, agent_h, PATCH_V2, "v2")
    await env.drain()
    v2 = env.fake.repos[REPO].rev(f"refs/heads/osiris/task-{task_id}")

    env.fake.outbox = late + env.fake.outbox  # the old comment arrives now
    assert all(x.status_code == 202 for x in await env.deliver())
    await env.drain()
    assert (await read_task(env, task_id, admin_h))["status"] == "REVIEW"
    assert "approve" not in [e["kind"] for e in await _events(env, task_id, admin_h)]
    assert not env.pr(1).merged and _merge_puts(env) == []
    [reply] = _bot_comments(env, "stale_approval")
    assert "written before version 2" in reply

    async with env.fake.client("alice-token") as alice:
        r = await alice.post(f"/repos/{REPO}/issues/1/comments", json={"body": "/approve"})
        assert r.status_code == 201, r.text
    await env.deliver()
    await env.drain()
    assert env.pr(1).merged
    events = await _events(env, task_id, admin_h)
    [approve] = [e for e in events if e["kind"] == "approve"]
    assert (approve["data"]["version"], approve["data"]["head_sha"]) == (2, v2)


async def test_a_review_of_anything_but_the_published_head_approves_nothing(github: GitHubEnv, factory):
    """(e) The agent pushes a commit of its own to its PR's branch (its own GitHub credentials). A
    review approving OSIRIS's published commit, or the agent's new head, is not an approval: the
    branch is not what OSIRIS published and a reviewer checked."""
    env = github
    task_id, admin_h, agent_h, published = await _published_on_github(env, factory)
    branch = f"osiris/task-{task_id}"
    pushed = env.fake.commit_files(REPO, branch, {"src/backdoor.py": "OPEN = True\n"}, "tidy up")

    for commit in (published, pushed):
        async with env.fake.client("alice-token") as alice:
            r = await alice.post(
                f"/repos/{REPO}/pulls/1/reviews", json={"event": "APPROVE", "body": "ok", "commit_id": commit}
            )
            assert r.status_code == 200, r.text
        await env.deliver()
        await env.drain()
        assert (await read_task(env, task_id, admin_h))["status"] == "REVIEW", commit
    assert "approve" not in [e["kind"] for e in await _events(env, task_id, admin_h)]
    assert not env.pr(1).merged and _merge_puts(env) == []
    assert len(_bot_comments(env, "stale_approval")) == 2
    assert env.fake.read_file(REPO, "main", "src/backdoor.py") is None


async def test_on_github_the_merge_job_merges_the_approved_sha_or_nothing(github: GitHubEnv, factory):
    """(f, GitHub) The reviewer approves version 1's commit; the agent then pushes to the PR branch
    before the merge job runs. GitHub is asked to merge the approved sha only, refuses, and the task
    goes back to its agent; the agent's commit never reaches main."""
    env = github
    task_id, admin_h, agent_h, published = await _published_on_github(env, factory)
    r = await env.client.post(
        f"/api/v1/tasks/{task_id}/approve", json={"version": 1, "head_sha": published}, headers=admin_h
    )
    assert r.status_code == 200, r.text
    env.fake.commit_files(REPO, f"osiris/task-{task_id}", {"src/backdoor.py": "OPEN = True\n"}, "late push")

    await env.drain()
    assert (await read_task(env, task_id, admin_h))["status"] == "IN_PROGRESS"
    assert not env.pr(1).merged and _merge_puts(env) == [STALE_HEAD]
    assert env.fake.read_file(REPO, "main", "src/backdoor.py") is None
    [approve] = [e for e in await _events(env, task_id, admin_h) if e["kind"] == "approve"]
    assert (approve["data"]["version"], approve["data"]["head_sha"]) == (1, published)


@pytest.mark.parametrize("route", ["rest", "review"])
async def test_on_github_an_approval_while_the_branch_moved_is_stale(github: GitHubEnv, factory, route):
    """The agent pushed to the PR branch after OSIRIS published: a REST approval of the published
    commit is not refused by OSIRIS (it cannot see GitHub), but nothing but that commit is merged;
    a review approval is refused outright."""
    env = github
    task_id, admin_h, _, published = await _published_on_github(env, factory)
    env.fake.commit_files(REPO, f"osiris/task-{task_id}", {"src/backdoor.py": "OPEN = True\n"}, "push")
    if route == "rest":
        r = await env.client.post(
            f"/api/v1/tasks/{task_id}/approve", json={"head_sha": published}, headers=admin_h
        )
        assert r.status_code == 200, r.text
        await env.drain()
        assert _merge_puts(env) == [STALE_HEAD]  # GitHub was asked for exactly `published`
        [approve] = [e for e in await _events(env, task_id, admin_h) if e["kind"] == "approve"]
        assert approve["data"]["head_sha"] == published
    else:
        async with env.fake.client("alice-token") as alice:
            await alice.post(
                f"/repos/{REPO}/pulls/1/reviews", json={"event": "APPROVE", "commit_id": published}
            )
        await env.deliver()
        await env.drain()
        assert (await read_task(env, task_id, admin_h))["status"] == "REVIEW"
        assert _merge_puts(env) == []
    assert not env.pr(1).merged
    assert env.fake.read_file(REPO, "main", "src/backdoor.py") is None
