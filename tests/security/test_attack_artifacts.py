"""Artifacts a hostile agent crafts so that git, a checkout or a later clone does its bidding: names
git's fsck flags (`.GIT`, `.git `, `.g\\u200cit`, `git~1`, …), `.gitmodules` with `ext::` URLs, symlinks
out of the tree, gitlinks. Each is refused at submit — REST 422 `invalid_artifact`, the same code
as an MCP tool error — with no artifact row, no job, the bare repository's refs untouched, and the
repository still passing a real `git fsck --strict` and `git clone`."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from pathlib import Path

import asyncpg
import httpx
import pytest

from osiris.app.errors import InvalidArtifact
from osiris.github_bridge.gitcmd import Git, Scratch
from osiris.github_bridge.local_git import LocalGitHost
from osiris.github_bridge.trees import Change, _splice, fsck_trees
from osiris.server import asyncpg_dsn
from tests.support.servers import mcp_over_http

EXT_URL = 'ext::sh -c "touch /tmp/pwned"'


def _gitmodules(url: str = "https://example.com/x.git", name: str = "x", path: str = "x") -> str:
    return f'[submodule "{name}"]\n\tpath = {path}\n\turl = {url}\n'


def _new_file(path: str, mode: str, body: str, *, newline: bool = True) -> str:
    tail = "" if newline else "\\ No newline at end of file\n"
    return (
        f"diff --git a/{path} b/{path}\nnew file mode {mode}\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{body.count(chr(10)) + 1} @@\n" + "".join(f"+{ln}\n" for ln in body.split("\n")) + tail
    )


def _quoted(path: str) -> str:
    return '"' + "".join(c if c.isascii() else "".join(f"\\{b:03o}" for b in c.encode()) for c in path) + '"'


FILES = {
    "upper-dotgit": ".GIT/config",
    "dotgit-space": ".git /config",
    "dotgit-dot": ".git./hooks/post-checkout",
    "dotgit-zwnj": ".g\u200cit/config",
    "dotgit-bom": "\ufeff.git/config",
    "dotgit-stream": ".git::$INDEX_ALLOCATION/config",
    "ntfs-short": "git~1/config",
    "ntfs-short-upper": "GIT~1/hooks/post-update",
    "nested-dotgit": "src/.Git/hooks/pre-commit",
    "gitmodules-short": "GITMOD~1",
    "gitmodules-hashed-short": "gi7eba~1",
    "gitmodules-upper": ".GITMODULES",
    "gitmodules-dir": ".gitmodules/x",
    "gitattributes-space": ".gitattributes ",
    "dotdot": "a/../../etc/passwd",
    "dot": "a/./b",
    "absolute": "/etc/passwd",
    "newline": "a\nb",
    "backslash": "..\\x",
}
FILE_CONTENTS = {
    "gitmodules-ext-url": {".gitmodules": _gitmodules(EXT_URL)},
    "gitmodules-option-url": {".gitmodules": _gitmodules("-oProxyCommand=touch /tmp/pwned")},
    "gitmodules-name": {".gitmodules": _gitmodules(name="../../hooks")},
    "gitmodules-path": {".gitmodules": _gitmodules(path="-x")},
    "gitmodules-update-command": {".gitmodules": _gitmodules() + "\tupdate = !sh evil.sh\n"},
}
PATCHES = {
    "symlink-absolute": _new_file("link", "120000", "/etc/passwd", newline=False),
    "symlink-escapes": _new_file("docs/link", "120000", "../../etc/shadow", newline=False),
    "symlink-through-a-name": _new_file("docs/link", "120000", "x/../..", newline=False),
    "symlink-into-dotgit": _new_file("link", "120000", ".git/config", newline=False),
    "symlink-gitmodules": _new_file(".gitmodules", "120000", "README.md", newline=False),
    "symlink-gitattributes": _new_file(".gitattributes", "120000", "README.md", newline=False),
    "gitlink": _new_file("vendor/lib", "160000", "Subproject commit " + "a" * 40),
    "odd-mode": _new_file("run.sh", "100600", "echo hi"),
    "rename-into-dotgit": (
        "diff --git a/README.md b/x\nsimilarity index 100%\nrename from README.md\n"
        "rename to .git/hooks/post-update\n"
    ),
    "quoted-zwnj-dotgit": _new_file("x", "100644", "hi").replace("b/x", _quoted("b/.g\u200cit/config")[1:-1]),
    "gitmodules-ext-url-in-patch": _new_file(".gitmodules", "100644", _gitmodules(EXT_URL).rstrip("\n")),
    "dotgit-in-patch": _new_file(".GIT/hooks/pre-commit", "100755", "#!/bin/sh\ntouch /tmp/pwned"),
}
CASES = (
    [pytest.param({name: "x"}, "files", id=f"files-{key}") for key, name in FILES.items()]
    + [pytest.param(files, "files", id=f"files-{key}") for key, files in FILE_CONTENTS.items()]
    + [pytest.param(text, "patch", id=f"patch-{key}") for key, text in PATCHES.items()]
)


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=check)


@pytest.fixture
def repo(live_app) -> tuple[str, Path]:
    host = live_app.runtime.services.code_host
    assert isinstance(host, LocalGitHost)
    name = f"attack-{secrets.token_hex(4)}"
    host._open(name, "main", create=True)  # exists before the attack, so "unchanged" means something
    return name, host.repo_path(name)


async def _claimed_task(http: httpx.AsyncClient, headers: dict[str, str], repo: str) -> int:
    r = await http.post("/api/v1/tasks", json={"title": "t", "repo": repo}, headers=headers)
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    assert (await http.post(f"/api/v1/tasks/{task_id}/claim", headers=headers)).status_code == 200
    return task_id


async def _assert_nothing_stored(database_url: str, task_id: int, repo: Path, refs: str, tmp: Path) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM artifacts WHERE task_id = $1", task_id) == 0
        jobs = await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'publish_artifact'")
        assert jobs == 0
    finally:
        await conn.close()
    await asyncio.to_thread(_assert_repository_intact, repo, refs, tmp)


def _assert_repository_intact(repo: Path, refs_before: str, tmp: Path) -> None:
    assert git(repo, "for-each-ref").stdout == refs_before
    fsck = git(repo, "fsck", "--strict", "--no-dangling", check=False)
    assert fsck.returncode == 0, fsck.stderr
    clone = subprocess.run(
        ["git", "clone", "-q", str(repo), str(tmp / "clone")], capture_output=True, text=True
    )
    assert clone.returncode == 0, clone.stderr


@pytest.mark.parametrize(("content", "kind"), CASES)
async def test_refused_over_rest(live_app, factory, database_url, repo, tmp_path, content, kind):
    name, path = repo
    _, headers = await factory.member("agent")
    refs = git(path, "for-each-ref").stdout
    async with httpx.AsyncClient(base_url=live_app.url, timeout=30) as http:
        task_id = await _claimed_task(http, headers, name)
        r = await http.post(
            f"/api/v1/tasks/{task_id}/artifacts", json={"content": content, "kind": kind}, headers=headers
        )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_artifact", r.text
    await _assert_nothing_stored(database_url, task_id, path, refs, tmp_path)


@pytest.mark.parametrize(("content", "kind"), CASES)
async def test_refused_over_mcp(live_app, factory, database_url, repo, tmp_path, content, kind):
    name, path = repo
    _, headers = await factory.member("agent")
    refs = git(path, "for-each-ref").stdout
    async with httpx.AsyncClient(base_url=live_app.url, timeout=30) as http:
        task_id = await _claimed_task(http, headers, name)
    token = headers["Authorization"].removeprefix("Bearer ")
    async with mcp_over_http(live_app.url, token) as client:
        result = await client.call_tool(
            "submit_artifact", {"task_id": task_id, "content": content, "kind": kind}
        )
    assert result.is_error, result.structured_content
    assert result.structured_content["error"]["code"] == "invalid_artifact"
    assert result.content[0].text.startswith("invalid_artifact: "), result.content
    await _assert_nothing_stored(database_url, task_id, path, refs, tmp_path)


async def test_benign_names_symlinks_and_gitmodules_still_publish(live_app, factory, repo):
    """The rules refuse attacks, not ordinary repositories: dot-files, unicode, an in-tree symlink,
    a `.gitmodules` with an https URL all go through and pass git's fsck."""
    name, path = repo
    _, headers = await factory.member("agent")
    async with httpx.AsyncClient(base_url=live_app.url, timeout=30) as http:
        task_id = await _claimed_task(http, headers, name)
        files = {".gitignore": "*.pyc\n", ".github/ci.yml": "on: push\n", "é/ü.txt": "x\n"}
        files[".gitmodules"] = _gitmodules("https://example.com/x.git")
        r = await http.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": files}, headers=headers)
        assert r.status_code == 201, r.text
        task2 = await _claimed_task(http, headers, name)
        link = _new_file("docs/readme-link", "120000", "../README.md", newline=False)
        r = await http.post(f"/api/v1/tasks/{task2}/artifacts", json={"content": link}, headers=headers)
        assert r.status_code == 201, r.text


def test_git_refuses_what_slipped_past_the_rules_and_nothing_is_stored(tmp_path):
    """The second line on its own: a tree with `.GIT` built behind the rules' back is refused by
    git's fsck (index-pack --strict) before it is written."""
    repo = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    g = Git(repo)
    blob = g.run("hash-object", "-w", "--stdin", stdin=b"x\n").strip()
    work = Scratch()
    try:
        root, trees = _splice(
            g, "4b825dc642cb6eb9a060e54bf8d69288fbee4904", {".GIT/config": Change(blob)}, listing=None
        )
        with pytest.raises(InvalidArtifact, match="hasDotgit"):
            fsck_trees(g, work, trees)
        for sha in trees:
            assert git(repo, "cat-file", "-e", sha, check=False).returncode != 0  # never written
        good_root, good = _splice(
            g, "4b825dc642cb6eb9a060e54bf8d69288fbee4904", {"ok.txt": Change(blob)}, listing=None
        )
        fsck_trees(g, work, good)  # a clean tree passes
    finally:
        work.clean()
