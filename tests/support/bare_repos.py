"""Bare repositories built from a dict of files, read back the same way, and the version 1 patch the
later-version tests share (tests/mcp/test_mcp_later_versions.py, tests/github_bridge/test_later_versions.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from osiris.github_bridge.gitcmd import IDENTITY

# Version 1 over github_harness.BASE_FILES: an f-string in src/app.py, and X = 2 in src/util.py.
V1 = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,5 +1,5 @@
 def greet(name):
-    return 'hello ' + name
+    return f'hello {name}'
 
 
 def main():
diff --git a/src/util.py b/src/util.py
--- a/src/util.py
+++ b/src/util.py
@@ -1 +1 @@
-X = 1
+X = 2
"""


def git(repo: Path, *args: str, stdin: str | None = None, **env: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **IDENTITY, **env},
    ).stdout


def seed(path: Path, files: dict[str, str], *, symlinks: dict[str, str] | None = None) -> None:
    """A bare repository whose `main` holds exactly `files` (and these symlinks), as GitHub's fake
    builds its own."""
    subprocess.run(["git", "init", "--bare", "-q", "-b", "main", str(path)], check=True)
    index = str(path / "seed-index")
    entries = [("100644", name, body) for name, body in files.items()]
    entries += [("120000", name, target) for name, target in (symlinks or {}).items()]
    for mode, name, body in entries:
        sha = git(path, "hash-object", "-w", "--stdin", stdin=body).strip()
        git(path, "update-index", "--add", "--cacheinfo", f"{mode},{sha},{name}", GIT_INDEX_FILE=index)
    tree = git(path, "write-tree", GIT_INDEX_FILE=index).strip()
    Path(index).unlink()
    git(path, "update-ref", "refs/heads/main", git(path, "commit-tree", tree, "-m", "initial commit").strip())


def files_at(repo: Path, ref: str) -> dict[str, str]:
    names = git(repo, "ls-tree", "-r", "--name-only", "-z", ref).split("\0")
    return {name: git(repo, "show", f"{ref}:{name}") for name in names if name}
