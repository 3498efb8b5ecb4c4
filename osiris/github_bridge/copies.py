"""Throw-away copies of one commit, for the pre-review checks (osiris/app/check_runner.py, sandbox.py).

A copy shares nothing with the repository it came from: no `.git` file pointing back at it, no
linked work tree registered in it, no alternates, no hard links. `git read-tree` into an index file
of our own, then `git checkout-index` into the copy: the same parallel checkout as `git worktree add`
(2 s for 50,000 files here, where `git archive | tar -x` took 18 s), and no attribute of the commit
can leave a file out of the copy (`export-ignore` would, with `git archive`). Git runs with an
environment built here: no global or system configuration, so no filter driver of the machine's
(git-lfs smudge) runs on the agent's files. Everything here blocks: run it in a thread.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from osiris.github_bridge.gitcmd import run_bounded, scratch_env


def _git(git_dir: Path, dest: Path, index: Path, *args: str, timeout: float) -> None:
    env = scratch_env(index.parent, GIT_DIR=str(git_dir), GIT_WORK_TREE=str(dest), GIT_INDEX_FILE=str(index))
    run_bounded(args, env=env, cwd=dest, timeout=timeout)


def export_commit(git_dir: Path, sha: str, dest: Path, *, timeout: float = 600.0) -> None:
    """Write the files of commit `sha` into the empty directory `dest`."""
    with tempfile.TemporaryDirectory(prefix="osiris-export-") as scratch:
        index = Path(scratch) / "index"
        _git(git_dir, dest, index, "read-tree", f"{sha}^{{tree}}", timeout=timeout)
        _git(git_dir, dest, index, "checkout-index", "--all", "--force", timeout=timeout)


@contextlib.contextmanager
def check_copy(git_dir: Path, sha: str) -> Iterator[Path]:
    """`<fresh temp dir>/src`, a copy of `sha`; the temp dir (the check's too) is removed after."""
    work = Path(tempfile.mkdtemp(prefix="osiris-check-"))
    try:
        (work / "src").mkdir()
        export_commit(git_dir, sha, work / "src")
        yield work / "src"
    finally:
        shutil.rmtree(work, ignore_errors=True)
