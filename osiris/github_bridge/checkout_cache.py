"""Cache clones of GitHub repositories, for running OSIRIS's own pre-review checks on a version.

One bare repository per GitHub repository under `data_dir/cache/github/<owner>/<repo>.git`. Before a
check, the task's branch (and, if the version is no longer on it, the commit itself) is fetched
into it from `checks_github_clone_url`, then the commit is copied out of it (`copies.py`, exactly as
the local git host does: no linked work tree) and the copy removed afterwards.

The token never appears in argv, in a URL or in a file: git reads it from its environment as an
`http.extraHeader` (GIT_CONFIG_COUNT/KEY/VALUE, git ≥ 2.31), the environment is built here rather
than inherited (no GIT_TRACE_CURL or credential helper of ours), and git's messages are redacted
before they travel anywhere. A file lock per repository serialises fetches and copies
between the jobs (and processes) sharing a data dir. Everything here blocks: run it in a thread.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from osiris.github_bridge import copies
from osiris.github_bridge.gitcmd import GitFailed, run_bounded, scratch_env

_PART = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
FETCHED = "refs/osiris-fetched"  # where fetched branches land in a cache clone


def auth_env(token: str) -> dict[str, str]:
    """git configuration through the environment: the token as an HTTP header, nothing on argv."""
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        "GIT_CONFIG_KEY_1": "credential.helper",  # no stored credential may be offered instead
        "GIT_CONFIG_VALUE_1": "",
    }


class CheckoutCache:
    def __init__(self, root: Path, url_template: str, *, timeout: float) -> None:
        self.root = root
        self.url_template = url_template
        self.timeout = timeout

    def path(self, repo: str) -> Path:
        owner, _, name = repo.partition("/")
        if not (_PART.match(owner) and _PART.match(name)) or {owner, name} & {".", ".."}:
            raise ValueError(f"not a GitHub repository name: {repo!r}")
        return self.root / owner / f"{name}.git"

    def url(self, repo: str) -> str:
        return self.url_template.format(repo=repo)

    def _git(self, git_dir: Path, *args: str, token: str | None = None, timeout: float = 60.0) -> str:
        env = scratch_env(self.root, **(auth_env(token) if token else {}))
        return run_bounded(args, env=env, timeout=timeout, git_dir=git_dir, secret=token)

    def _has(self, git_dir: Path, sha: str) -> bool:
        try:
            self._git(git_dir, "cat-file", "-e", f"{sha}^{{commit}}")
        except GitFailed:
            return False
        return True

    def _ensure(self, repo: str) -> Path:
        git_dir = self.path(repo)
        if not (git_dir / "HEAD").is_file():
            git_dir.parent.mkdir(parents=True, exist_ok=True)
            self._git(git_dir, "init", "--bare", "--quiet")
        return git_dir

    def fetch(self, repo: str, branch: str, sha: str, token: str) -> Path:
        """Make `sha` present in the cache clone (the branch first, the commit itself if it left it)."""
        git_dir = self._ensure(repo)
        if self._has(git_dir, sha):
            return git_dir
        url = self.url(repo)
        with contextlib.suppress(GitFailed):  # a branch deleted since: try the commit by id below
            self._git(
                git_dir, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url,
                f"+refs/heads/{branch}:{FETCHED}/{branch}", token=token, timeout=self.timeout,
            )  # fmt: skip
        if not self._has(git_dir, sha):
            self._git(
                git_dir, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, sha,
                token=token, timeout=self.timeout,
            )  # fmt: skip
        if not self._has(git_dir, sha):
            raise GitFailed(("fetch",), 1, f"{sha[:12]} is not on {repo}")
        return git_dir

    @contextlib.contextmanager
    def worktree(self, repo: str, branch: str, sha: str, token: str) -> Iterator[Path]:
        """A throw-away copy of `sha` (`copies.export_commit`), fetched first; nothing in it links
        back to the cache clone, which the checks' code must not be able to change. Removed after."""
        work = Path(tempfile.mkdtemp(prefix="osiris-check-"))
        try:
            (work / "src").mkdir()
            with self._locked(repo):
                git_dir = self.fetch(repo, branch, sha, token)
                copies.export_commit(git_dir, sha, work / "src", timeout=self.timeout)
            yield work / "src"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self, repo: str) -> Iterator[None]:
        lock = self.path(repo).with_suffix(".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
