""" "Files changed" on the task page and `GET /api/v1/tasks/{id}/changes` on the local git host: the
diff an approval would merge (base...head), renames, deletions, hostile file names, the caps."""

from __future__ import annotations

import functools
import re
import secrets
import subprocess
from html import unescape

import pytest

from tests.support.portal_helpers import approve_form, sign_in

from .task_helpers import published, section

pytestmark = pytest.mark.asyncio

HOSTILE = 'x"<script>alert(1)</script>.py'  # a folder `x"<script>alert(1)<` holding `script>.py`


def readme(repo: str) -> str:
    return f"# {repo}\n\nA project managed by OSIRIS.\n"  # what the local host puts on a new base


DELETE_LINES = (
    "--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,1 @@\n # {repo}\n-\n-A project managed by OSIRIS.\n"
)
RENAME = (
    "diff --git a/README.md b/GUIDE.md\nsimilarity index 100%\nrename from README.md\nrename to GUIDE.md\n"
)
DELETE_FILE = (
    "diff --git a/README.md b/README.md\ndeleted file mode 100644\n--- a/README.md\n+++ /dev/null\n"
    "@@ -1,3 +0,0 @@\n-# {repo}\n-\n-A project managed by OSIRIS.\n"
)


async def page(browser_client, person, task_id: int) -> str:
    reviewer = await person("reviewer")
    assert (await sign_in(browser_client, reviewer.username)).status_code == 303
    r = await browser_client.get(f"/tasks/{task_id}")
    assert r.status_code == 200, r.text[:500]
    return r.text


async def test_a_deletion_of_base_content_is_shown_before_the_decision(
    client, browser_client, factory, person, runtime
):
    _, agent = await factory.member("agent")
    task_id, repo = await published(client, runtime, agent, DELETE_LINES)
    html = await page(browser_client, person, task_id)
    changes = section(html)
    assert html.index('id="changes"') < html.index('id="decision"')  # read the diff, then decide
    assert 'data-status="modified"' in changes and "README.md" in changes
    removed = re.findall(
        r'<tr class="ln ln-removed"><td class="num">(\d+)</td><td class="num"></td>', changes
    )
    assert removed == ["2", "3"], changes[:2000]
    assert "A project managed by OSIRIS." in changes
    assert '<span class="dels">−2</span>' in changes and "merges cleanly" in changes
    # The approve form still names the version and commit this diff is of.
    api = (await client.get(f"/api/v1/tasks/{task_id}/changes", headers=agent)).json()
    assert approve_form(html)["head_sha"] == api["head_sha"]
    assert api["mergeable"] is True and api["state"] == "draft" and api["version"] == 1
    (f,) = api["files"]
    assert (f["path"], f["status"], f["additions"], f["deletions"]) == ("README.md", "modified", 0, 2)
    lines = [(ln["kind"], ln["old"], ln["new"], ln["text"]) for ln in f["hunks"][0]["lines"]]
    assert lines == [
        ("context", 1, 1, f"# {repo}"),
        ("removed", 2, None, ""),
        ("removed", 3, None, "A project managed by OSIRIS."),
    ]


async def test_a_renamed_file(client, browser_client, factory, person, runtime):
    _, agent = await factory.member("agent")
    task_id, _ = await published(client, runtime, agent, RENAME)
    changes = section(await page(browser_client, person, task_id))
    assert 'data-status="renamed"' in changes
    assert '<span class="old-path">README.md</span> → GUIDE.md' in changes
    api = (await client.get(f"/api/v1/tasks/{task_id}/changes", headers=agent)).json()
    assert [(f["path"], f["old_path"], f["status"]) for f in api["files"]] == [
        ("GUIDE.md", "README.md", "renamed")
    ]


async def test_a_deleted_file(client, browser_client, factory, person, runtime):
    _, agent = await factory.member("agent")
    task_id, _ = await published(client, runtime, agent, DELETE_FILE)
    changes = section(await page(browser_client, person, task_id))
    assert 'data-status="deleted"' in changes and '<span class="dels">−3</span>' in changes
    assert len(re.findall(r'class="ln ln-removed"', changes)) == 3


async def test_hostile_file_names_are_escaped(client, browser_client, factory, person, runtime):
    _, agent = await factory.member("agent")
    files = {HOSTILE: "print('<img src=x onerror=alert(1)>')\n"}
    task_id, _ = await published(client, runtime, agent, files, kind="files")
    html = await page(browser_client, person, task_id)
    changes = section(html)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "x&#34;&lt;script&gt;alert(1)&lt;/script&gt;.py" in changes, changes[:3000]
    assert "&lt;img src=x onerror=alert(1)&gt;" in changes
    api = (await client.get(f"/api/v1/tasks/{task_id}/changes", headers=agent)).json()
    assert [(f["path"], f["status"]) for f in api["files"]] == [(HOSTILE, "added")]


async def test_a_huge_diff_is_capped_with_a_link_to_the_file(
    client, browser_client, factory, person, runtime
):
    _, agent = await factory.member("agent")
    settings = runtime.settings
    old_file, old_total = settings.changes.max_file_lines, settings.changes.max_lines
    settings.changes.max_file_lines, settings.changes.max_lines = 50, 500
    try:
        files = {"big.txt": "".join(f"line {i}\n" for i in range(300)), "small.txt": "one\n"}
        task_id, _ = await published(client, runtime, agent, files, kind="files")
        changes = section(await page(browser_client, person, task_id))
        assert "line 299" not in changes and "Diff too large to show here" in changes
        assert "one" in changes  # the small file still shows
        link = unescape(re.search(r'href="(/tasks/\d+/changes/file\?path=big.txt)"', changes).group(1))
        r = await browser_client.get(link)
        assert r.status_code == 200 and "line 299" in r.text  # its own view: up to the overall cap
        api = (await client.get(f"/api/v1/tasks/{task_id}/changes", headers=agent)).json()
        big = next(f for f in api["files"] if f["path"] == "big.txt")
        assert big["too_large"] and big["hunks"] == [] and big["additions"] == 300 and api["truncated"]
        settings.changes.max_lines = 100  # the file's own view is capped too
        r = await browser_client.get(link)
        assert r.status_code == 200 and "line 299" not in r.text and "too large" in r.text
    finally:
        settings.changes.max_file_lines, settings.changes.max_lines = old_file, old_total


async def test_changes_are_scoped_to_the_organization(client, browser_client, factory, person, runtime):
    _, agent = await factory.member("agent")
    task_id, _ = await published(client, runtime, agent, DELETE_LINES)
    other = await factory.org(f"other-{secrets.token_hex(3)}")
    _, stranger = await factory.member("reviewer", org=other)
    r = await client.get(f"/api/v1/tasks/{task_id}/changes", headers=stranger)
    assert r.status_code == 404 and "managed by" not in r.text
    outsider = await person("reviewer", org=other)
    assert (await sign_in(browser_client, outsider.username)).status_code == 303
    r = await browser_client.get(f"/tasks/{task_id}/changes/file", params={"path": "README.md"})
    assert r.status_code == 404 and "managed by" not in r.text


async def test_nothing_published_is_404_on_rest(client, factory):
    _, agent = await factory.member("agent")
    r = await client.post("/api/v1/tasks", json={"title": "Nothing yet"}, headers=agent)
    r = await client.get(f"/api/v1/tasks/{r.json()['id']}/changes", headers=agent)
    assert r.status_code == 404, r.text


def _push_to_base(runtime, repo: str, work, files: dict[str, str]) -> None:
    """Someone else commits to the base branch meanwhile (a clone of the local host's repository)."""
    bare = runtime.services.code_host.repo_path(repo)
    run = functools.partial(subprocess.run, check=True, capture_output=True, text=True)
    run(["git", "clone", "-q", str(bare), str(work)])
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    run(["git", "-C", str(work), "add", "-A"])
    ident = ["-c", "user.name=someone", "-c", "user.email=someone@example.com"]
    run(["git", "-C", str(work), *ident, "commit", "-qm", "theirs"])
    run(["git", "-C", str(work), "push", "-q", "origin", "main"])


async def test_a_branch_that_conflicts_with_the_base_shows_the_conflicting_files(
    client, browser_client, factory, person, runtime, tmp_path
):
    _, agent = await factory.member("agent")
    # The agent adds a file with a hostile name and rewrites the README; main does both its own way.
    files = {HOSTILE: "ours = 1\n", "README.md": "# ours\n", "notes.txt": "no conflict here\n"}
    task_id, repo = await published(client, runtime, agent, files, kind="files")
    html = await page(browser_client, person, task_id)
    assert "merges cleanly" in section(html) and "Conflicting files" not in html

    _push_to_base(runtime, repo, tmp_path / "work", {HOSTILE: "theirs = 2\n", "README.md": "# theirs\n"})
    html = (await browser_client.get(f"/tasks/{task_id}")).text
    changes = section(html)
    assert '<span class="merge-state merge-conflicts">conflicts with main</span>' in changes, changes[:2000]
    assert "merges cleanly" not in changes
    listed = re.search(r'<p class="conflicts">Conflicting files: (.*?)</p>', changes, re.DOTALL)
    assert listed, changes[:3000]
    assert sorted(re.findall(r"<code>(.*?)</code>", listed.group(1))) == sorted(
        ["README.md", "x&#34;&lt;script&gt;alert(1)&lt;/script&gt;.py"]
    )
    assert "notes.txt" not in listed.group(1)  # only the files that conflict
    assert "<script>alert(1)" not in html  # the hostile name is text, never markup
    # The diff itself is still the version's, against the fork point: all three files.
    assert 'data-path="notes.txt"' in changes
    api = (await client.get(f"/api/v1/tasks/{task_id}/changes", headers=agent)).json()
    assert api["mergeable"] is False and sorted(api["conflicts"]) == sorted(["README.md", HOSTILE])
