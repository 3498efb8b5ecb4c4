"""The local git host, the embedded default: bare repositories on disk, no account anywhere.

Each artifact version is a commit on `osiris/task-<id>`; the task's change request (a draft pull
request's equivalent) lives in refs beside it, so its state moves atomically with the branches:

    refs/osiris/ready/task-<id>   the head that was marked ready for merging (draft → open)
    refs/osiris/merged/task-<id>  the merge (or squash) commit on the base branch
    refs/osiris/closed/task-<id>  the head when the task was cancelled

Every ref change is a compare-and-swap (`update-ref` with the old value), so two workers racing on
one task cannot both win, and every operation is safe to re-run after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from osiris.app.artifacts import ValidArtifact, validate_artifact
from osiris.app.config import Settings
from osiris.app.errors import InvalidInput, NotFound, Unavailable
from osiris.app.models import Artifact, Message, Task
from osiris.app.ports import MergeConflict, branch_name
from osiris.github_bridge import copies, diffs
from osiris.github_bridge.gitcmd import EMPTY_TREE, IDENTITY, ZERO_SHA, Git, GitFailed, run_bounded
from osiris.github_bridge.trees import Base, build_version_tree

log = logging.getLogger(__name__)

_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
MAX_DIFF_BYTES = 2 * 1024 * 1024
MAX_CHANGES_BYTES = 8 * 1024 * 1024  # of patch text read for "Files changed"
_ATTEMPTS = 5  # compare-and-swap retries when another writer moves a ref under us


class LocalGitHost:
    """Implements ports.CodeHost and ports.ChangeRequestSource on local repositories."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = (settings.data_dir / "repos").resolve()

    # --- repositories --------------------------------------------------------------------------

    def repo_path(self, name: str) -> Path:
        """Where project `name` lives; raises InvalidInput for a name that could escape the root."""
        if len(name) > 200 or not _REPO_NAME.match(name):
            raise InvalidInput(f"invalid repository name {name!r}")
        if self.settings.local.repo is not None and name == self.settings.repos.default_repo:
            return self.settings.local.repo.resolve()
        return self.root / f"{name}.git"

    def git_dir(self, name: str) -> Path | None:
        """The repository's git dir if it exists (bare, or a work tree's .git)."""
        path = self.repo_path(name)
        if (path / ".git").is_dir():
            return path / ".git"
        return path if (path / "HEAD").is_file() else None

    def _open(self, name: str, base_branch: str, *, create: bool) -> Git:
        found = self.git_dir(name)
        if found is None:
            if not create or self.repo_path(name) == self.settings.local.repo:
                raise Unavailable(f"repository {name!r} does not exist")
            found = self._create(name, base_branch)
        return Git(found)

    def _create(self, name: str, base_branch: str) -> Path:
        path = self.repo_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        run_bounded(
            ("init", "--quiet", "--bare", f"--initial-branch={base_branch}", str(path)),  # safe to repeat
            env={**os.environ, "LC_ALL": "C"},
            timeout=60,
        )
        g = Git(path)
        if g.rev(f"refs/heads/{base_branch}") is None:
            readme = f"# {name}\n\nA project managed by OSIRIS.\n".encode()
            blob = g.run("hash-object", "-w", "--stdin", stdin=readme).strip()
            tree = g.run("mktree", "-z", stdin=f"100644 blob {blob}\tREADME.md\0".encode()).strip()
            commit = g.with_env(**_identity()).run("commit-tree", tree, stdin=b"Initial commit\n").strip()
            if not g.update_refs(("create", f"refs/heads/{base_branch}", commit)):
                _wait_for_branch(g, base_branch)  # a racing creator holds the ref's lock
        log.info("created local repository", extra={"repo": name})
        return path

    async def start(self) -> None:
        """Create the configured projects (the default one first) and check OSIRIS_LOCAL_REPO."""
        s = self.settings
        for name in dict.fromkeys([s.repos.default_repo, *s.local.projects]):
            g = await asyncio.to_thread(self._open, name, s.repos.default_base_branch, create=True)
            # Another process starting at the same time (serve and a worker) may have made the
            # repository a moment ago and not yet its first commit.
            if await asyncio.to_thread(_wait_for_branch, g, s.repos.default_base_branch) is None:
                raise Unavailable(f"repository {name!r} has no branch {s.repos.default_base_branch!r}")
            if g.git_dir.name == ".git":
                # Merges move the base branch's ref, never a work tree: a checkout of it will look
                # as if someone reverted the merged changes until it is updated (`git merge --ff-only`).
                log.warning("OSIRIS_LOCAL_REPO has a work tree; prefer a bare clone", extra={"repo": name})

    def _base(self, g: Git, task: Task) -> str:
        sha = g.rev(f"refs/heads/{task.base_branch}")
        if sha is None:
            raise Unavailable(f"repository {task.repo!r} has no branch {task.base_branch!r}")
        return sha

    async def clone_url(self, task: Task) -> str:
        """Served read-only by git_http to the tokens of the repository's organization."""
        return f"{self.settings.server.public_url.rstrip('/')}/git/{task.repo}.git"

    def url(self, task: Task) -> str:
        # A link for a person: the portal's task page opens at its work (a browser has no bearer
        # token for the API's GET …/change-request, which scripts still use).
        return f"{self.settings.server.public_url.rstrip('/')}/tasks/{task.id}#work"

    # --- the port ------------------------------------------------------------------------------

    async def check(self, task: Task, artifact: ValidArtifact) -> None:
        await asyncio.to_thread(self._check, task, artifact)

    def _check(self, task: Task, artifact: ValidArtifact) -> None:
        g = self._open(task.repo, task.base_branch, create=True)
        branch, base = f"refs/heads/{branch_name(task.id)}", f"refs/heads/{task.base_branch}"
        found = g.refs(branch, base)
        head = found.get(branch)
        # Nothing but unreferenced objects is written: the very blobs and trees publishing will
        # reuse, or garbage for `git gc` to prune if the artifact is refused.
        bases = self._bases(g, task, head, found.get(base) or self._base(g, task))
        build_version_tree(g, bases, artifact, text_path=self._text_path(task))

    def _bases(self, g: Git, task: Task, head: str | None, base: str) -> list[Base]:
        """What a version may be a diff against: the branch head, then where the branch starts (its
        merge base with the base branch, the "files changed" view's left side); the base alone for
        a first version. Either way the version is committed on top of the branch head."""
        name = branch_name(task.id)
        if head is None:
            return [Base(base, f"{task.base_branch} at {base[:12]}")]
        found = [Base(head, f"{name} at {head[:12]}")]
        status, out, _ = g.run_raw("merge-base", base, head)
        start = out.decode().strip() if status == 0 else ""
        if start:
            found.append(Base(start, f"{task.base_branch} at {start[:12]} (where {name} starts)"))
        return found

    async def publish(self, task: Task, artifact: Artifact) -> dict[str, Any]:
        return await asyncio.to_thread(self._publish, task, artifact)

    def _publish(self, task: Task, artifact: Artifact) -> dict[str, Any]:
        g = self._open(task.repo, task.base_branch, create=True)
        ref = f"refs/heads/{branch_name(task.id)}"
        valid = validate_artifact(artifact.content, artifact.kind, max_bytes=sys.maxsize)
        for _ in range(_ATTEMPTS):
            head = g.rev(ref)
            if head is not None:
                seen, sha = _find_version(g, head, task, artifact)
                if seen:  # an earlier run got this far (or a later version did): do not commit
                    return self._published(task, sha, created=False, version=artifact.version)
            base = self._base(g, task)
            parent = head or base
            tree = build_version_tree(
                g, self._bases(g, task, head, base), valid, text_path=self._text_path(task)
            )
            message = _version_message(task, artifact)
            env = {**_identity(), **_dated(artifact.created_at)}
            commit = g.with_env(**env).run("commit-tree", tree, "-p", parent, stdin=message).strip()
            if g.update_refs(("update", ref, commit, head or ZERO_SHA)):
                return self._published(task, commit, created=True, version=artifact.version)
        raise Unavailable(f"{ref} kept moving while publishing; retry")

    def _published(self, task: Task, sha: str | None, *, created: bool, version: int) -> dict[str, Any]:
        result = {
            "host": self.name,
            "branch": branch_name(task.id),
            "commit_sha": sha,
            "pr_number": task.id,
            "pr_url": self.url(task),
            "created": created,
        }
        if sha is None:
            result["superseded"] = f"a version after {version} is already on the branch"
        return result

    def _text_path(self, task: Task) -> str:
        return self.settings.local.text_path.format(id=task.id, task_id=task.id)

    async def merge(self, task: Task, *, head_sha: str | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self._merge, task, head_sha)

    def _merge(self, task: Task, head_sha: str | None) -> dict[str, Any]:
        g = self._open(task.repo, task.base_branch, create=False)
        refs = _Refs(task)
        done = g.rev(refs.merged)
        if done is not None:
            return {"merged": True, "already": True, "merge_commit_sha": done, "base": task.base_branch}
        head = g.rev(refs.branch)
        if head is None:
            raise MergeConflict(f"branch {branch_name(task.id)} does not exist")
        if head_sha is not None and head != head_sha:
            raise MergeConflict(f"{branch_name(task.id)} is at {head[:12]}, not the approved {head_sha[:12]}")
        g.update_refs(("update", refs.ready, head, ""))  # draft → open, as GitHub's "ready for review"
        squash = self.settings.local.merge_method == "squash"
        for _ in range(_ATTEMPTS):
            base = self._base(g, task)
            tree, conflicts = merge_tree(g, base, head)
            if conflicts:
                raise MergeConflict(
                    f"{branch_name(task.id)} conflicts with {task.base_branch}", files=conflicts
                )
            parents = ["-p", base] if squash else ["-p", base, "-p", head]
            message = _merge_message(task, head, squash=squash)
            commit = g.with_env(**_identity()).run("commit-tree", tree, *parents, stdin=message).strip()
            # Base, merged marker and (if configured) the branch deletion land together or not at all.
            updates: list[tuple[str, ...]] = [
                ("update", f"refs/heads/{task.base_branch}", commit, base),
                ("create", refs.merged, commit),
            ]
            if self.settings.repos.delete_branch_on_merge:
                updates.append(("delete", refs.branch, head))
            if g.update_refs(*updates):
                return {
                    "merged": True,
                    "merge_commit_sha": commit,
                    "method": self.settings.local.merge_method,
                    "base": task.base_branch,
                    "head_sha": head,
                    "branch_deleted": self.settings.repos.delete_branch_on_merge,
                }
            if g.rev(refs.merged) is not None:  # another worker merged it meanwhile
                return {"merged": True, "already": True, "merge_commit_sha": g.rev(refs.merged)}
        raise Unavailable(f"{task.base_branch} kept moving while merging; retry")

    async def close(self, task: Task) -> dict[str, Any]:
        return await asyncio.to_thread(self._close, task)

    def _close(self, task: Task) -> dict[str, Any]:
        if self.git_dir(task.repo) is None:
            return {"closed": False, "why": "no repository"}
        g = self._open(task.repo, task.base_branch, create=False)
        refs = _Refs(task)
        if g.rev(refs.merged) is not None:
            return {"closed": False, "why": "already merged"}
        # Point at the branch (kept for the record) or, if the publish job has not run, at the base:
        # the marker must exist either way so a late publish still shows a closed change request.
        head = g.rev(refs.branch) or self._base(g, task)
        g.update_refs(("update", refs.closed, head, ""))
        return {"closed": True, "head_sha": head}

    async def comment(self, task: Task, message: Message) -> dict[str, Any]:
        # The local change request shows the task's own message thread; there is nowhere else to copy to.
        return {"mirrored": False, "why": "the local change request reads the task's messages"}

    # --- the change request view -------------------------------------------------------------

    async def change_request(self, task: Task) -> dict[str, Any]:
        return await asyncio.to_thread(self._change_request, task)

    def _change_request(self, task: Task) -> dict[str, Any]:
        if self.git_dir(task.repo) is None:
            raise NotFound(f"task {task.id} has no change request yet")
        g = self._open(task.repo, task.base_branch, create=False)
        refs = _Refs(task)
        base_ref = f"refs/heads/{task.base_branch}"
        found = g.refs(*refs.all(), base_ref)
        branch, merged, closed = found.get(refs.branch), found.get(refs.merged), found.get(refs.closed)
        mergeable: bool | None = None
        conflicts: list[str] = []
        if merged is not None:
            state = "merged"
            base_sha = g.run("rev-parse", f"{merged}^1").strip()
            head = g.trailers(merged, "Osiris-Head").get("Osiris-Head") or branch or merged
            span = [base_sha, merged]  # what the merge brought into the base
        elif closed is not None or branch is not None:
            head = branch or closed or ""
            base_sha = found.get(base_ref) or self._base(g, task)
            span = [f"{base_sha}...{head}"]  # since the fork point, as a pull request shows it
            if closed is not None:
                state = "closed"
            else:
                state = "open" if found.get(refs.ready) == head else "draft"
                _, conflicts = merge_tree(g, base_sha, head)  # objects it writes, a merge reuses
                mergeable = not conflicts
        else:
            raise NotFound(f"task {task.id} has no change request yet")
        _, raw, _ = g.run_raw("diff", "--no-color", "--no-ext-diff", "-M", *span)
        diff = raw[:MAX_DIFF_BYTES].decode("utf-8", "replace")
        return {
            "number": task.id,
            "url": self.url(task),
            "state": state,
            "base": task.base_branch,
            "head": branch_name(task.id),
            "base_sha": base_sha,
            "head_sha": head,
            "diff": diff,
            "diff_truncated": len(raw) > MAX_DIFF_BYTES,
            "files": _changed_files(g, span),
            # The ready marker keeps a squashed head reachable, so its commits stay listable.
            "commits": _commits(g, base_sha, head),
            "mergeable": mergeable,
            "conflicts": conflicts,
        }

    async def changes(self, task: Task, *, head_sha: str, paths: list[str] | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self._changes, task, head_sha, paths)

    def _changes(self, task: Task, head_sha: str, paths: list[str] | None) -> dict[str, Any]:
        if self.git_dir(task.repo) is None:
            raise NotFound(f"task {task.id} has no change request yet")
        g = self._open(task.repo, task.base_branch, create=False)
        if g.rev(head_sha) is None:
            raise NotFound(f"commit {head_sha[:12]} is not in repository {task.repo!r}")
        refs = _Refs(task)
        base_ref = f"refs/heads/{task.base_branch}"
        found = g.refs(*refs.all(), base_ref)
        merged, closed, branch = found.get(refs.merged), found.get(refs.closed), found.get(refs.branch)
        mergeable: bool | None = None
        mergeable_state: str | None = None
        conflicts: list[str] = []
        if merged is not None:
            state = "merged"
            base_sha = merge_base = g.run("rev-parse", f"{merged}^1").strip()
            old, new = base_sha, merged  # what the merge brought into the base
        else:
            base_sha = found.get(base_ref) or self._base(g, task)
            status, out, _ = g.run_raw("merge-base", base_sha, head_sha)
            merge_base = out.decode().strip() if status == 0 else None
            old, new = merge_base or EMPTY_TREE, head_sha
            if closed is not None:
                state = "closed"
            else:
                state = "open" if found.get(refs.ready) == head_sha else "draft"
                _, conflicts = merge_tree(g, base_sha, head_sha)
                mergeable, mergeable_state = not conflicts, ("conflicts" if conflicts else "clean")
        files, truncated = _diff_files(g, old, new, paths)
        return {
            "state": state,
            "base_sha": base_sha,
            "merge_base_sha": merge_base,
            "mergeable": mergeable,
            "mergeable_state": mergeable_state,
            "conflicts": conflicts,
            "head_moved": merged is None and branch is not None and branch != head_sha,
            "truncated": truncated,
            "files": files,
        }

    # --- pre-review checks (ports.CheckoutSource) -----------------------------------------------

    def base_file(self, task: Task, path: str) -> str | None:
        """A file on the task's base branch (e.g. `.osiris.yml`), or None when it is not there."""
        if self.git_dir(task.repo) is None:
            return None
        g = self._open(task.repo, task.base_branch, create=False)
        status, out, _ = g.run_raw("show", f"refs/heads/{task.base_branch}:{path}")
        return out.decode("utf-8", "replace") if status == 0 else None

    def worktree(self, task: Task, sha: str) -> contextlib.AbstractContextManager[Path]:
        """A throw-away copy of one commit (`copies.check_copy`), nothing linked to the repository:
        the checks run the agent's code, which must not reach the live repository through it."""
        g = self._open(task.repo, task.base_branch, create=False)
        return copies.check_copy(g.git_dir, sha)


class _Refs:
    def __init__(self, task: Task) -> None:
        self.branch = f"refs/heads/{branch_name(task.id)}"
        self.ready = f"refs/osiris/ready/task-{task.id}"
        self.merged = f"refs/osiris/merged/task-{task.id}"
        self.closed = f"refs/osiris/closed/task-{task.id}"

    def all(self) -> tuple[str, ...]:
        return (self.branch, self.ready, self.merged, self.closed)


def merge_tree(g: Git, base: str, head: str) -> tuple[str, list[str]]:
    """Merge in the object store only (git ≥ 2.38): the tree, and the conflicting paths if any."""
    status, out, err = g.run_raw(
        "merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", base, head
    )
    if status not in (0, 1):
        raise GitFailed(("merge-tree",), status, err)
    tree, _, rest = out.decode("utf-8", "replace").partition("\0")
    conflicts = list(dict.fromkeys(p for p in rest.split("\0") if p)) if status == 1 else []
    return tree.strip(), conflicts


def _find_version(g: Git, head: str, task: Task, artifact: Artifact) -> tuple[bool, str | None]:
    """(True, commit) when this artifact already has a commit on the branch; (True, None) when a
    later version is there instead, so this one must not be committed on top; else (False, None).

    Walks the branch's first-parent chain, one commit per version, so the walk is short.
    """
    fmt = "%H%x1f" + "%x1f".join(
        f"%(trailers:key={k},valueonly,separator=%x2C)"
        for k in ("Osiris-Task", "Osiris-Version", "Osiris-Artifact")
    )
    log_out = g.run("log", "--first-parent", "-n", "256", f"--format={fmt}%x1e", head)
    for record in log_out.split("\x1e"):
        fields = record.strip("\n").split("\x1f")
        if len(fields) != 4 or fields[1].strip() != str(task.id):
            continue
        sha, _, version, artifact_id = (f.strip() for f in fields)
        if artifact_id == str(artifact.id):
            return True, sha
        if version.isdigit() and int(version) > artifact.version:
            return True, None
    return False, None


def _changed_files(g: Git, span: list[str]) -> list[dict[str, Any]]:
    out = g.run("diff", "--name-status", "-z", "-M", *span).split("\0")
    files: list[dict[str, Any]] = []
    i = 0
    while i < len(out) and out[i]:
        status = out[i]
        if status[:1] in ("R", "C"):
            files.append({"status": status[:1], "old_path": out[i + 1], "path": out[i + 2]})
            i += 3
        else:
            files.append({"status": status[:1], "path": out[i + 1]})
            i += 2
    return files


_STATUS = {"A": "added", "D": "deleted", "R": "renamed", "C": "copied"}


def _diff_files(g: Git, old: str, new: str, paths: list[str] | None) -> tuple[list[dict[str, Any]], bool]:
    """Each changed file with its exact names (git's -z output), counts and hunks. The patch is read
    up to MAX_CHANGES_BYTES, cut where a file starts; the files after the cut keep their counts."""
    spec = ["--", *paths] if paths else []
    listed = _changed_files(g, [old, new, *spec])
    counts = g.run("diff", "--numstat", "-z", "-M", old, new, *spec).split("\0")
    numbers: list[tuple[str, str]] = []
    i = 0
    while i < len(counts) and counts[i]:
        added, deleted, name = counts[i].split("\t", 2)
        numbers.append((added, deleted))
        i += 3 if name == "" else 1  # a rename: "a\td\t\0old\0new\0"
    _, raw, _ = g.run_raw(
        "-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff", "-M", old, new, *spec
    )
    truncated = len(raw) > MAX_CHANGES_BYTES
    if truncated:  # a "\ndiff --git " is always a header: every line of content has a +, - or space first
        cut = raw.rfind(b"\ndiff --git ", 0, MAX_CHANGES_BYTES + 1)
        raw = raw[: cut + 1] if cut >= 0 else b""
    parsed = diffs.parse_patch(raw.decode("utf-8", "replace"))
    files = []
    for n, entry in enumerate(listed):
        added, deleted = numbers[n] if n < len(numbers) else ("0", "0")
        binary = added == "-"
        section = parsed[n] if n < len(parsed) and len(parsed) <= len(listed) else None
        files.append(
            {
                "path": entry["path"],
                "old_path": entry.get("old_path"),
                "status": _STATUS.get(entry["status"], "modified"),
                "binary": binary,
                "additions": 0 if binary else int(added),
                "deletions": 0 if binary else int(deleted),
                "too_large": section is None and not binary,
                "hunks": [h.model_dump() for h in section.hunks] if section is not None else [],
            }
        )
    return files, truncated


def _commits(g: Git, base: str, head: str) -> list[dict[str, str]]:
    out = g.run("log", "--first-parent", "-n", "100", "--format=%H%x1f%s%x1e", f"{base}..{head}")
    rows = [r.strip("\n").split("\x1f") for r in out.split("\x1e") if r.strip()]
    return [{"sha": sha, "title": title} for sha, title in rows]


def _identity() -> dict[str, str]:
    return dict(IDENTITY)


def _dated(when: datetime | None) -> dict[str, str]:
    """Commit dates from the artifact, so a re-run builds the very same commit."""
    if when is None:
        return {}
    stamp = f"@{int(when.timestamp())} +0000"
    return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _version_message(task: Task, artifact: Artifact) -> bytes:
    parts = [f"{_one_line(task.title)} (version {artifact.version})"]
    if artifact.summary and artifact.summary.strip():
        parts.append(artifact.summary.strip())
    parts.append(
        f"Osiris-Task: {task.id}\nOsiris-Version: {artifact.version}\nOsiris-Artifact: {artifact.id}"
    )
    return ("\n\n".join(parts) + "\n").encode()


def _merge_message(task: Task, head: str, *, squash: bool) -> bytes:
    title = (
        f"{_one_line(task.title)} (#{task.id})"
        if squash
        else f"Merge {branch_name(task.id)} into {task.base_branch}: {_one_line(task.title)}"
    )
    return f"{title}\n\nOsiris-Task: {task.id}\nOsiris-Head: {head}\n".encode()


def _wait_for_branch(g: Git, branch: str, *, seconds: float = 5.0) -> str | None:
    """The branch's commit, waiting a little for a racing creator of the repository (serve and a
    worker starting together on a new data dir) to write it; None if it never comes."""
    deadline = time.monotonic() + seconds
    while (sha := g.rev(f"refs/heads/{branch}")) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return sha
