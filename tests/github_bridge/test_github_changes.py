"""`GET /api/v1/tasks/{id}/changes` on GitHub (the fake): the PR files API, paginated, as the same
structured diff the local host gives; mergeability from the PR; another organization gets 404."""

from __future__ import annotations

import secrets

import pytest

from osiris.app.models import Role
from tests.support.github_harness import GitHubEnv
from tests.support.rest import claimed_task, submitted

pytestmark = pytest.mark.asyncio

# Deletes lines of a file on the base, renames one, removes one and adds many small files (past
# one page of 100 entries, so the client must follow GitHub's Link header).
PATCH = (
    "diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n"
    "@@ -1,6 +1,2 @@\n def greet(name):\n     return 'hello ' + name\n-\n-\n-def main():\n-    print(greet('world'))\n"
    "diff --git a/src/util.py b/src/helpers.py\nsimilarity index 100%\nrename from src/util.py\nrename to src/helpers.py\n"
    "diff --git a/README.md b/README.md\ndeleted file mode 100644\n--- a/README.md\n+++ /dev/null\n"
    "@@ -1 +0,0 @@\n-# widgets\n"
) + "".join(
    f"diff --git a/gen/f{i:03d}.txt b/gen/f{i:03d}.txt\nnew file mode 100644\n--- /dev/null\n"
    f"+++ b/gen/f{i:03d}.txt\n@@ -0,0 +1 @@\n+{i}\n"
    for i in range(120)
)


async def test_changes_from_the_pull_request_files(github: GitHubEnv, factory):
    _, admin = await factory.member(Role.ADMIN)
    _, agent = await factory.member(Role.AGENT)
    task_id = await claimed_task(github.client, agent, creator_h=admin, title="Trim")
    await submitted(github.client, agent, task_id, PATCH, kind="patch")
    await github.drain()

    r = await github.client.get(f"/api/v1/tasks/{task_id}/changes", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    version = (await github.client.get(f"/api/v1/tasks/{task_id}", headers=admin)).json()["artifacts"][-1]
    assert body["head_sha"] == version["commit_sha"] and not body["head_moved"]
    assert body["mergeable"] is True and body["state"] == "draft"
    assert github.fake.calls["GET /repos/{owner}/{repo}/pulls/{pull_number}/files"] == 2  # two pages
    files = {f["path"]: f for f in body["files"]}
    assert len(files) == 123
    app = files["src/app.py"]
    assert (app["status"], app["additions"], app["deletions"]) == ("modified", 0, 4)
    removed = [(ln["old"], ln["text"]) for ln in app["hunks"][0]["lines"] if ln["kind"] == "removed"]
    assert removed == [(3, ""), (4, ""), (5, "def main():"), (6, "    print(greet('world'))")]
    assert (files["src/helpers.py"]["status"], files["src/helpers.py"]["old_path"]) == (
        "renamed",
        "src/util.py",
    )
    assert files["README.md"]["status"] == "deleted" and files["README.md"]["deletions"] == 1
    assert body["additions"] == 120 and body["deletions"] == 5

    # Someone moves the base so the PR conflicts: GitHub says so, and the conflicting file is named.
    github.fake.commit_files(
        "acme/widgets", "main", {"src/app.py": "def greet(name):\n    return 'hi'\n"}, "edit"
    )
    body = (await github.client.get(f"/api/v1/tasks/{task_id}/changes", headers=admin)).json()
    assert body["mergeable"] is False and body["mergeable_state"] == "dirty"
    assert "src/app.py" in body["conflicts"]

    # Another organization's reviewer: the task does not exist for them.
    other = await factory.org(f"other-{secrets.token_hex(3)}")
    _, stranger = await factory.member(Role.REVIEWER, org=other)
    r = await github.client.get(f"/api/v1/tasks/{task_id}/changes", headers=stranger)
    assert r.status_code == 404 and r.json()["code"] == "task_not_found"
