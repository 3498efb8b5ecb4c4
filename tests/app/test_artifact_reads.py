"""Reading versions back over REST: files content as an object, listings without content, and the
per-file diff between two versions."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import InvalidRequestError

from osiris.app import db, task_queries
from osiris.app.models import Task

SCRIPT_PATH = "web/<script>alert(1)</script>.html"
V1 = {
    "README.md": "# Thing\n",
    "src/app.py": "def main():\n    return 1\n",
    "old notes.md": "to be removed\n",
    "no-newline.txt": "last",
}
V2 = {
    "README.md": "# Thing\n",  # unchanged: left out of the diff
    "src/app.py": "def main():\n    return 2\n",
    "no-newline.txt": "last\n",
    "dir with space/naïve 日本.txt": "héllo\n",
    SCRIPT_PATH: "<script>alert('x')</script>\n",
}


async def _task_with_versions(client, agent, reviewer, *versions) -> int:
    r = await client.post("/api/v1/tasks", json={"title": "Two versions"}, headers=reviewer)
    task_id = r.json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
    for n, (content, kind) in enumerate(versions):
        if n:
            r = await client.post(
                f"/api/v1/tasks/{task_id}/request-changes", json={"feedback": "again"}, headers=reviewer
            )
            assert r.status_code == 200, r.text
        r = await client.post(
            f"/api/v1/tasks/{task_id}/artifacts", json={"content": content, "kind": kind}, headers=agent
        )
        assert r.status_code == 201, r.text
    return task_id


async def test_files_diff_is_a_unified_diff_per_file(client, factory):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await _task_with_versions(client, agent, reviewer, (V1, "files"), (V2, "files"))

    r = await client.get(f"/api/v1/tasks/{task_id}/artifacts/diff?from=1&to=2", headers=reviewer)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    files = body["files"]
    assert [(f["path"], f["status"]) for f in files] == [
        ("dir with space/naïve 日本.txt", "added"),
        ("no-newline.txt", "modified"),
        ("old notes.md", "deleted"),
        ("src/app.py", "modified"),
        (SCRIPT_PATH, "added"),
    ]
    by_path = {f["path"]: f["diff"] for f in files}
    assert by_path["src/app.py"] == (
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,2 +1,2 @@\n def main():\n-    return 1\n+    return 2\n"
    )
    assert by_path["old notes.md"] == "--- a/old notes.md\n+++ /dev/null\n@@ -1 +0,0 @@\n-to be removed\n"
    assert by_path["dir with space/naïve 日本.txt"] == (
        "--- /dev/null\n+++ b/dir with space/naïve 日本.txt\n@@ -0,0 +1 @@\n+héllo\n"
    )
    # Only a final newline differs: the diff says so, as git does.
    assert by_path["no-newline.txt"].endswith("-last\n\\ No newline at end of file\n+last\n")
    # An agent's markup comes back as JSON text, verbatim: never HTML, never escaped into entities.
    assert by_path[SCRIPT_PATH] == (
        f"--- /dev/null\n+++ b/{SCRIPT_PATH}\n@@ -0,0 +1 @@\n+<script>alert('x')</script>\n"
    )
    assert "&lt;" not in r.text
    # The whole diff is the files' diffs in path order; the unchanged file is not in it.
    assert body["diff"] == "".join(f["diff"] for f in files)
    assert "README.md" not in body["diff"]

    back = (await client.get(f"/api/v1/tasks/{task_id}/artifacts/diff?from=2&to=1", headers=reviewer)).json()
    assert [(f["path"], f["status"]) for f in back["files"]][2] == ("old notes.md", "added")


async def test_patch_and_text_versions_diff_as_text(client, factory):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await _task_with_versions(
        client, agent, reviewer, ("plan: one\nstep\n", "text"), ("plan: two\nstep\n", "text")
    )
    body = (await client.get(f"/api/v1/tasks/{task_id}/artifacts/diff?from=1&to=2", headers=agent)).json()
    assert body["files"] is None
    assert body["diff"] == "--- v1\n+++ v2\n@@ -1,2 +1,2 @@\n-plan: one\n+plan: two\n step\n"


async def test_files_content_is_an_object_and_listings_carry_no_content(client, factory, runtime):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await _task_with_versions(client, agent, reviewer, (V2, "files"), ("just notes\n", "text"))

    one = (await client.get(f"/api/v1/tasks/{task_id}/artifacts/1", headers=reviewer)).json()
    assert one["kind"] == "files" and one["content"] == V2  # an object, unicode and markup intact
    two = (await client.get(f"/api/v1/tasks/{task_id}/artifacts/2", headers=reviewer)).json()
    assert two["kind"] == "text" and two["content"] == "just notes\n"

    listing = (await client.get(f"/api/v1/tasks/{task_id}/artifacts", headers=reviewer)).json()
    detail = (await client.get(f"/api/v1/tasks/{task_id}", headers=reviewer)).json()
    for versions in (listing, detail["artifacts"]):
        assert [a["version"] for a in versions] == [1, 2]
        assert all("content" not in a for a in versions)
        assert versions[0]["size_bytes"] > 0

    # and the listing does not read the content from the database either
    async with db.transaction(runtime.sessions) as session:
        task = await session.get(Task, task_id)
        [first, _] = await task_queries.artifacts_of(session, task, content=False)
        with pytest.raises(InvalidRequestError):
            _ = first.content


async def test_another_organizations_versions_are_not_found(client, factory):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await _task_with_versions(client, agent, reviewer, (V1, "files"), (V2, "files"))
    other = await factory.org("elsewhere")
    _, outsider = await factory.member("reviewer", org=other)

    for path in ("artifacts", "artifacts/1", "artifacts/diff?from=1&to=2"):
        r = await client.get(f"/api/v1/tasks/{task_id}/{path}", headers=outsider)
        assert r.status_code == 404, path
        assert "README" not in r.text and "main" not in r.text
    r = await client.get(f"/api/v1/tasks/{task_id}/artifacts/diff?from=1&to=3", headers=reviewer)
    assert r.status_code == 404
