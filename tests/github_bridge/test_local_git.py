"""The local git host end to end: REST → lifecycle → jobs → real bare repositories."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import asyncpg
import pytest

from osiris.app import effects, jobs
from osiris.app.errors import PatchDoesNotApply
from osiris.app.models import Artifact, Task
from osiris.github_bridge.gitcmd import Git, Scratch
from osiris.github_bridge.local_git import LocalGitHost
from osiris.github_bridge.trees import Change, splice
from osiris.server import asyncpg_dsn
from tests.support.jobs import drain
from tests.support.rest import claimed_task


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def git(repo: Path, *args: str) -> str:
    return sh("git", "--git-dir", str(repo), *args).stdout


def readme(name: str) -> str:
    return f"# {name}\n\nA project managed by OSIRIS.\n"


def readme_patch(new_line: str) -> str:
    return (
        "diff --git a/README.md b/README.md\n"
        "--- a/README.md\n"
        "+++ b/README.md\n"
        "@@ -2,2 +2,2 @@\n"
        " \n"
        "-A project managed by OSIRIS.\n"
        f"+{new_line}\n"
        "diff --git a/src/app/main.py b/src/app/main.py\n"
        "new file mode 100644\n"
        "--- /dev/null\n"
        "+++ b/src/app/main.py\n"
        "@@ -0,0 +1,1 @@\n"
        '+print("hello")\n'
    )


async def new_task(client, headers, repo: str) -> int:
    return await claimed_task(client, headers, title="Improve the README", repo=repo)


async def test_submit_review_resubmit_approve_merges_into_base(client, factory, runtime, host, repo_name):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(client, agent, repo_name)
    repo = host.repo_path(repo_name)
    branch = f"osiris/task-{task_id}"

    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts",
        json={"content": readme_patch("Patched by an agent."), "summary": "first try"},
        headers=agent,
    )
    assert r.status_code == 201, r.text
    assert git(repo, "show", "main:README.md") == readme(repo_name)  # the check stored nothing
    assert sh("git", "--git-dir", str(repo), "rev-parse", "--verify", "-q", branch, check=False).returncode

    await drain(runtime)
    assert git(repo, "show", f"{branch}:README.md") == f"# {repo_name}\n\nPatched by an agent.\n"
    assert git(repo, "show", f"{branch}:src/app/main.py") == 'print("hello")\n'
    head1 = git(repo, "rev-parse", branch).strip()
    assert git(repo, "rev-parse", f"{branch}^").strip() == git(repo, "rev-parse", "main").strip()
    assert f"Osiris-Artifact: {r.json()['artifact']['id']}" in git(repo, "log", "-1", "--format=%B", branch)

    r = await client.get(f"/api/v1/tasks/{task_id}", headers=reviewer)
    v1 = r.json()["artifacts"][0]
    assert (v1["branch"], v1["commit_sha"], v1["pr_number"]) == (branch, head1, task_id)
    assert v1["pr_url"].endswith(f"/tasks/{task_id}#work")  # the portal page, not the API
    assert r.json()["pr_url"] == v1["pr_url"]
    events = (await client.get(f"/api/v1/tasks/{task_id}/events", headers=reviewer)).json()
    published = [e for e in events if e["kind"] == "published"]
    assert published and published[0]["data"]["commit_sha"] == head1

    cr = (await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=reviewer)).json()
    assert cr["state"] == "draft" and cr["number"] == task_id and cr["head"] == branch
    assert cr["head_sha"] == head1 and cr["mergeable"] is True and cr["conflicts"] == []
    assert "+Patched by an agent." in cr["diff"] and "-A project managed by OSIRIS." in cr["diff"]
    assert {(f["path"], f["status"]) for f in cr["files"]} == {("README.md", "M"), ("src/app/main.py", "A")}

    r = await client.post(
        f"/api/v1/tasks/{task_id}/reject", json={"feedback": "also add docs"}, headers=reviewer
    )
    assert r.json()["status"] == "IN_PROGRESS"
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts",
        json={"content": {"docs/usage.md": "# Usage\n", "README.md": "# better\n"}, "summary": "v2"},
        headers=agent,
    )
    assert r.status_code == 201 and r.json()["artifact"]["version"] == 2
    await drain(runtime)
    head2 = git(repo, "rev-parse", branch).strip()
    assert git(repo, "rev-parse", f"{branch}^").strip() == head1  # same branch, one commit more
    assert git(repo, "rev-list", "--count", f"main..{branch}").strip() == "2"
    assert git(repo, "show", f"{branch}:docs/usage.md") == "# Usage\n"
    assert git(repo, "show", f"{branch}:src/app/main.py") == 'print("hello")\n'  # v1 is kept

    cr = (await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=agent)).json()
    assert [c["sha"] for c in cr["commits"]] == [head2, head1]

    r = await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)
    assert r.json()["status"] == "DONE"
    await drain(runtime)
    main = git(repo, "rev-parse", "main").strip()
    assert git(repo, "rev-parse", f"{main}^2").strip() == head2  # a merge commit, second parent the head
    assert git(repo, "show", "main:docs/usage.md") == "# Usage\n"
    cr = (await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=reviewer)).json()
    assert cr["state"] == "merged" and cr["head_sha"] == head2 and cr["mergeable"] is None
    assert "+# Usage" in cr["diff"]
    task = (await client.get(f"/api/v1/tasks/{task_id}", headers=reviewer)).json()
    assert task["status"] == "DONE"
    kinds = [
        e["kind"] for e in (await client.get(f"/api/v1/tasks/{task_id}/events", headers=reviewer)).json()
    ]
    assert "merged" in kinds and "merge_failed" not in kinds


async def test_patch_that_does_not_apply_is_refused_and_nothing_is_stored(client, factory, host, repo_name):
    _, agent = await factory.member("agent")
    task_id = await new_task(client, agent, repo_name)
    bad = readme_patch("x").replace("-A project managed by OSIRIS.", "-A line that is not there.")
    r = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": bad}, headers=agent)
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "patch_does_not_apply"
    assert "README.md" in problem["detail"] and "patch" in problem["detail"]  # git's own words
    assert (await client.get(f"/api/v1/tasks/{task_id}/artifacts", headers=agent)).json() == []
    task = (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()
    assert task["status"] == "IN_PROGRESS" and task["artifact_count"] == 0
    repo = host.repo_path(repo_name)
    assert git(repo, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]


async def test_rerunning_the_publish_job_adds_no_commit(client, factory, runtime, host, repo_name):
    _, agent = await factory.member("agent")
    task_id = await new_task(client, agent, repo_name)
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": readme_patch("Once.")}, headers=agent
    )
    artifact_id = r.json()["artifact"]["id"]
    repo = host.repo_path(repo_name)
    branch = f"osiris/task-{task_id}"

    # A worker that crashed after moving the branch but before writing the database.
    async with runtime.sessions() as session:
        artifact = await session.get(Artifact, artifact_id)
        task = await session.get(Task, task_id)
    early = await host.publish(task, artifact)
    assert early["created"] is True

    await drain(runtime)  # the queued job runs: it must find the commit, not make another
    ctx = jobs.JobContext(runtime.sessions, runtime.settings, runtime.services)
    await effects.publish_artifact({"artifact_id": artifact_id, "task_id": task_id}, ctx)
    assert git(repo, "rev-list", "--count", f"main..{branch}").strip() == "1"
    sha = git(repo, "rev-parse", branch).strip()
    assert sha == early["commit_sha"]
    stored = (await client.get(f"/api/v1/tasks/{task_id}/artifacts", headers=agent)).json()[0]
    assert stored["commit_sha"] == sha
    again = await host.publish(task, artifact)
    assert again["created"] is False and again["commit_sha"] == sha


async def test_a_late_publish_of_an_older_version_commits_nothing(client, factory, runtime, host, repo_name):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(client, agent, repo_name)
    await client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"a.txt": "1\n"}}, headers=agent)
    await client.post(f"/api/v1/tasks/{task_id}/reject", json={"feedback": "again"}, headers=reviewer)
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"a.txt": "2\n"}}, headers=agent
    )
    v2_id = r.json()["artifact"]["id"]
    async with runtime.sessions() as session:
        v2, task = await session.get(Artifact, v2_id), await session.get(Task, task_id)
    await host.publish(task, v2)  # version 2's job ran first; version 1's comes late
    await drain(runtime)
    repo = host.repo_path(repo_name)
    assert git(repo, "rev-list", "--count", f"main..osiris/task-{task_id}").strip() == "1"
    assert git(repo, "show", f"osiris/task-{task_id}:a.txt") == "2\n"
    v1, v2_row = (await client.get(f"/api/v1/tasks/{task_id}/artifacts", headers=agent)).json()
    assert (
        v1["commit_sha"] is None
        and v2_row["commit_sha"] == git(repo, "rev-parse", f"osiris/task-{task_id}").strip()
    )


async def test_merge_conflict_sends_the_task_back_with_the_files(
    client, factory, runtime, host, repo_name, tmp_path
):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(client, agent, repo_name)
    await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": readme_patch("Ours.")}, headers=agent
    )
    await drain(runtime)
    repo = host.repo_path(repo_name)

    # Someone else changes the same line on main meanwhile.
    work = tmp_path / "work"
    sh("git", "clone", "-q", str(repo), str(work))
    (work / "README.md").write_text(f"# {repo_name}\n\nTheirs.\n")
    ident = ["-c", "user.name=someone", "-c", "user.email=someone@example.com"]
    sh("git", "-C", str(work), *ident, "commit", "-qam", "theirs")
    sh("git", "-C", str(work), "push", "-q", "origin", "main")
    main_before = git(repo, "rev-parse", "main").strip()

    cr = (await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=reviewer)).json()
    assert cr["mergeable"] is False and cr["conflicts"] == ["README.md"]  # visible before approving

    assert (await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)).json()[
        "status"
    ] == "DONE"
    await drain(runtime)

    assert git(repo, "rev-parse", "main").strip() == main_before  # nothing half-done
    assert "refs/osiris/merged" not in git(repo, "for-each-ref", "--format=%(refname)")
    task = (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()
    assert task["status"] == "IN_PROGRESS" and task["lease_expires_at"] is not None
    feedback = [m for m in task["messages"] if m["meta"].get("kind") == "feedback"]
    assert feedback and "README.md" in feedback[-1]["body"] and feedback[-1]["direction"] == "to_agent"
    assert feedback[-1]["meta"]["files"] == ["README.md"]
    events = (await client.get(f"/api/v1/tasks/{task_id}/events", headers=agent)).json()
    failed = [e for e in events if e["kind"] == "merge_failed"]
    assert failed and (failed[0]["from_status"], failed[0]["to_status"]) == ("DONE", "IN_PROGRESS")

    # The agent makes its branch agree with main; the next approval merges.
    fix = {"README.md": f"# {repo_name}\n\nTheirs.\n"}
    r = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": fix}, headers=agent)
    assert r.status_code == 201, r.text
    await drain(runtime)
    assert (await client.post(f"/api/v1/tasks/{task_id}/approve", headers=reviewer)).json()[
        "status"
    ] == "DONE"
    await drain(runtime)
    assert git(repo, "show", "main:src/app/main.py") == 'print("hello")\n'
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()["status"] == "DONE"


async def test_text_artifact_lands_at_the_configured_path(client, factory, runtime, host, repo_name):
    _, agent = await factory.member("agent")
    task_id = await new_task(client, agent, repo_name)
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts",
        json={"content": "Just some notes.", "kind": "text"},
        headers=agent,
    )
    assert r.status_code == 201, r.text
    await drain(runtime)
    repo = host.repo_path(repo_name)
    path = runtime.settings.local.text_path.format(id=task_id)
    assert git(repo, "show", f"osiris/task-{task_id}:{path}") == "Just some notes.\n"
    assert git(repo, "show", f"osiris/task-{task_id}:README.md") == readme(repo_name)


async def test_cancel_closes_the_change_request_and_keeps_the_branch(
    client, factory, runtime, host, repo_name
):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(client, agent, repo_name)
    await client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"a.txt": "a\n"}}, headers=agent)
    await drain(runtime)
    r = await client.post(f"/api/v1/tasks/{task_id}/cancel", json={"reason": "not needed"}, headers=reviewer)
    assert r.json()["status"] == "REJECTED"
    await drain(runtime)
    cr = (await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=reviewer)).json()
    assert cr["state"] == "closed" and cr["mergeable"] is None
    assert git(host.repo_path(repo_name), "show", f"osiris/task-{task_id}:a.txt") == "a\n"


async def test_change_request_is_scoped_to_the_organization(client, factory, repo_name):
    _, agent = await factory.member("agent")
    task_id = await new_task(client, agent, repo_name)
    await client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"a.txt": "a\n"}}, headers=agent)
    other_org = await factory.org("elsewhere")
    _, stranger = await factory.member("reviewer", org=other_org)
    r = await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=stranger)
    assert r.status_code == 404 and r.json()["code"] == "task_not_found"
    assert (await client.get(f"/api/v1/tasks/{task_id}/change-request")).status_code == 401
    # Submitted but not yet published: there is nothing to show yet, and it says so.
    r = await client.get(f"/api/v1/tasks/{task_id}/change-request", headers=agent)
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_squash_merge_with_branch_deletion(runtime, host, repo_name, factory, client):
    _, agent = await factory.member("agent")
    task_id = await new_task(client, agent, repo_name)
    await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": readme_patch("Squashed.")}, headers=agent
    )
    await drain(runtime)
    squasher = LocalGitHost(
        runtime.settings.model_copy(
            update={"local": {"merge_method": "squash"}, "repos": {"delete_branch_on_merge": True}}
        )
    )
    async with runtime.sessions() as session:
        task = await session.get(Task, task_id)
    repo = host.repo_path(repo_name)
    head = git(repo, "rev-parse", f"osiris/task-{task_id}").strip()
    base = git(repo, "rev-parse", "main").strip()
    result = await squasher.merge(task, head_sha=head)
    assert result["branch_deleted"] is True
    main = git(repo, "rev-parse", "main").strip()
    assert git(repo, "rev-list", "--parents", "-n", "1", main).split() == [main, base]  # one parent
    assert git(repo, "rev-parse", "main^{tree}") == git(repo, "rev-parse", f"{head}^{{tree}}")
    assert f"osiris/task-{task_id}" not in git(repo, "branch", "--list")
    assert (await squasher.merge(task, head_sha=head))["already"] is True  # idempotent
    view = await squasher.change_request(task)
    assert view["state"] == "merged" and view["head_sha"] == head and "+Squashed." in view["diff"]


def test_splice_touches_only_the_named_paths(tmp_path):
    repo = tmp_path / "r.git"
    sh("git", "init", "-q", "--bare", "-b", "main", str(repo))
    g = Git(repo)

    def blob(text: str) -> str:
        return g.run("hash-object", "-w", "--stdin", stdin=text.encode()).strip()

    work = Scratch()
    tree = splice(
        g,
        work,
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        {
            "a/b/c.txt": Change(blob("c\n")),
            "a/d.txt": Change(blob("d\n")),
            "top.sh": Change(blob("x"), "100755"),
        },
    )
    listing = g.run("ls-tree", "-r", tree)
    assert "a/b/c.txt" in listing and "a/d.txt" in listing and listing.count("100755") == 1
    tree2 = splice(g, work, tree, {"a/b/c.txt": None, "top.sh": Change(blob("y"))})
    listing = g.run("ls-tree", "-r", "-t", tree2)
    assert "a/b" not in listing and "a/d.txt" in listing  # empty directories disappear
    assert "100755 blob" in listing  # an existing file keeps its mode
    with pytest.raises(PatchDoesNotApply, match="a/d.txt is a file"):
        splice(g, work, tree2, {"a/d.txt/e": Change(blob("e"))})


async def test_published_version_reaches_live_clients_through_notify(client, factory, runtime, repo_name):
    _, agent = await factory.member("agent")
    task_id = await new_task(client, agent, repo_name)
    await client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": {"a.txt": "a\n"}}, headers=agent)
    conn = await asyncpg.connect(asyncpg_dsn(runtime.settings.db.url))
    heard: list[dict] = []
    await conn.add_listener("osiris_events", lambda *args: heard.append(json.loads(args[3])))
    try:
        await drain(runtime)
        for _ in range(100):
            if any(n["kind"] == "published" for n in heard):
                break
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    assert any(n["kind"] == "published" and n["task_id"] == task_id for n in heard), heard
