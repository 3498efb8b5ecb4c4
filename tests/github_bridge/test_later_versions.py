"""A later version's two readings on both code hosts: a diff against the task branch first, then the
whole change against where the branch starts. The two hosts build the same tree from the same base
and patches, including where a three-way merge would have quietly kept a line the agent gave back."""

from __future__ import annotations

import subprocess

import pytest

from osiris.app.models import Role
from tests.support.bare_repos import V1, files_at, git, seed
from tests.support.github_harness import BASE_FILES, REPO, GitHubEnv
from tests.support.jobs import drain
from tests.support.rest import claimed_task, submitted

APP = BASE_FILES["src/app.py"]
APP_V1 = APP.replace("'hello ' + name", "f'hello {name}'")
EXTRA = "EXTRA = 1\n"


def blob(text: str) -> str:
    return subprocess.run(
        ["git", "hash-object", "--stdin"], input=text, capture_output=True, text=True, check=True
    ).stdout.strip()[:7]


# After review, `git diff main` as an agent's own checkout writes it: the f-string kept, X = 2 given
# back (so util.py is not in it), a new file. The index line names real blobs: `git apply --3way`
# would merge src/app.py cleanly onto the branch and keep X = 2, which the agent undid.
V2_GIVES_BACK = f"""diff --git a/src/app.py b/src/app.py
index {blob(APP)}..{blob(APP_V1)} 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,5 +1,5 @@
 def greet(name):
-    return 'hello ' + name
+    return f'hello {{name}}'
 
 
 def main():
diff --git a/src/extra.py b/src/extra.py
new file mode 100644
index 0000000..{blob(EXTRA)}
--- /dev/null
+++ b/src/extra.py
@@ -0,0 +1 @@
+EXTRA = 1
"""
AFTER_GIVING_BACK = {**BASE_FILES, "src/app.py": APP_V1, "src/extra.py": EXTRA}

# Touches only what version 1 did not: it applies to the branch and to the base alike, and is read
# as a diff against the branch (version 1's changes stay).
V2_EITHER = """diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1 +1 @@
-# widgets
+# widgets, greeted
"""
AFTER_EITHER = {
    **BASE_FILES,
    "README.md": "# widgets, greeted\n",
    "src/app.py": APP_V1,
    "src/util.py": "X = 2\n",
}

CASES = {
    "gives back a change": (V2_GIVES_BACK, AFTER_GIVING_BACK),
    "applies to both": (V2_EITHER, AFTER_EITHER),
}


async def two_versions(client, factory, drain_all, patch: str, **task: str) -> int:
    _, reviewer = await factory.member(Role.REVIEWER)
    _, agent = await factory.member(Role.AGENT)
    task_id = await claimed_task(client, agent, creator_h=reviewer, title="Greet", **task)
    await submitted(client, agent, task_id, V1)
    await drain_all()
    r = await client.post(
        f"/api/v1/tasks/{task_id}/request-changes", json={"feedback": "keep X = 1"}, headers=reviewer
    )
    assert r.status_code == 200, r.text
    assert (await submitted(client, agent, task_id, patch))["artifact"]["version"] == 2
    await drain_all()
    return task_id


@pytest.mark.parametrize("case", CASES)
async def test_the_local_host_reads_a_later_version(client, factory, runtime, host, repo_name, case):
    patch, after = CASES[case]
    repo = host.repo_path(repo_name)
    repo.parent.mkdir(parents=True, exist_ok=True)
    seed(repo, BASE_FILES)
    task_id = await two_versions(client, factory, lambda: drain(runtime), patch, repo=repo_name)
    branch = f"refs/heads/osiris/task-{task_id}"
    assert files_at(repo, branch) == after
    assert len(git(repo, "rev-list", "--first-parent", f"main..{branch}").split()) == 2  # linear


@pytest.mark.parametrize("case", CASES)
async def test_github_reads_a_later_version_as_the_local_host_does(
    github: GitHubEnv, factory, case, tmp_path
):
    patch, after = CASES[case]
    task_id = await two_versions(github.client, factory, github.drain, patch)
    repo = github.fake.repos[REPO].path
    branch = f"refs/heads/osiris/task-{task_id}"
    assert files_at(repo, branch) == after
    assert len(git(repo, "rev-list", "--first-parent", f"main..{branch}").split()) == 2
    # The tree is the one the local host builds from the same files: the same bytes, the same modes.
    seed(tmp_path / "expected.git", after)
    assert git(repo, "rev-parse", f"{branch}^{{tree}}") == git(
        tmp_path / "expected.git", "rev-parse", "main^{tree}"
    )
    # The fallback costs one compare call, only when the branch reading fails.
    compares = [c for c in github.fake.log if "/compare/" in c[1]]
    assert len(compares) == (2 if case == "gives back a change" else 0), compares  # check, then publish
