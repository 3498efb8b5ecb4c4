"""What approving a version will merge, as data: the files changed against the base branch, each
with its hunks and every line numbered on both sides; and `changes_of`, which asks the code host
(`ports.CodeHost.changes`) for them and bounds them.

The code hosts parse their unified diffs into these types (`github_bridge.diffs`). Every name and
line here is the agent's input: it is only ever rendered as text. The caps bound what one page or
API answer carries; a file past them keeps its counts and loses its lines (`too_large`), and has a
view of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from osiris.app.errors import NotFound
from osiris.app.models import Artifact, Task
from osiris.app.ports import CodeHost

FileStatus = Literal["added", "modified", "deleted", "renamed", "copied"]


class DiffLine(BaseModel):
    kind: Literal["context", "added", "removed", "note"]  # note: "\ No newline at end of file"
    old: int | None  # its number in the base, None for an added line
    new: int | None  # its number in the version, None for a removed line
    text: str  # without the leading marker and the line ending


class DiffHunk(BaseModel):
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    section: str  # what git printed after the second @@ (a function name, say)
    lines: list[DiffLine]


class FileChange(BaseModel):
    path: str
    old_path: str | None = None  # a rename's or copy's source
    status: FileStatus
    binary: bool = False
    additions: int = 0
    deletions: int = 0
    too_large: bool = False  # over the caps (or the host sent no patch): hunks left out
    hunks: list[DiffHunk] = []


class ChangesRead(BaseModel):
    """`GET /api/v1/tasks/{id}/changes`: the diff base...head of the newest published version."""

    task_id: int
    version: int  # the version whose published commit is the head
    latest_version: int  # when larger than `version`, the newest one is not published yet
    state: str  # open | draft | merged | closed
    base: str
    base_sha: str  # the base branch's head now (for a merged change: before the merge)
    head_sha: str  # the version's published commit: what an approval is pinned to
    merge_base_sha: str | None = None
    mergeable: bool | None  # None: unknown yet (GitHub computes it lazily), merged or closed
    mergeable_state: str | None = None  # GitHub's word (clean, dirty, blocked, …); "conflicts" locally
    conflicts: list[str] = []
    head_moved: bool = False  # the change request's head is no longer this commit (a push elsewhere)
    additions: int
    deletions: int
    files: list[FileChange]
    truncated: bool = False  # some files' lines were left out (see each file's too_large)


def cap(files: Iterable[FileChange], *, max_file_lines: int, max_lines: int) -> tuple[list[FileChange], bool]:
    """Keep each file's lines only while it is within `max_file_lines` and the running total within
    `max_lines`; the others keep their names and counts. Returns (files, whether any lost lines)."""
    kept, total, truncated = [], 0, False
    for f in files:
        n = sum(len(h.lines) for h in f.hunks)
        if f.too_large or n > max_file_lines or total + n > max_lines:
            f = f.model_copy(update={"hunks": [], "too_large": f.too_large or n > 0})
            truncated = truncated or f.too_large
        else:
            total += n
        kept.append(f)
    return kept, truncated


def newest_published(artifacts: list[Artifact]) -> Artifact | None:
    return next((a for a in reversed(artifacts) if a.commit_sha), None)


async def changes_of(
    host: CodeHost,
    task: Task,
    artifacts: list[Artifact],
    *,
    max_file_lines: int,
    max_lines: int,
    path: str | None = None,
) -> ChangesRead:
    """The changes the newest published version would merge (only `path`'s, when given: a file's
    own view). NotFound when no version is published yet."""
    published = newest_published(artifacts)
    if published is None or not artifacts:
        raise NotFound(f"task {task.id} has no published version yet")
    found = await host.changes(task, head_sha=published.commit_sha or "", paths=[path] if path else None)
    files = [FileChange.model_validate(f) for f in found["files"]]
    if path is not None:
        files = [f for f in files if path in (f.path, f.old_path)]
    files, truncated = cap(files, max_file_lines=max_file_lines, max_lines=max_lines)
    return ChangesRead(
        task_id=task.id,
        version=published.version,
        latest_version=artifacts[-1].version,
        state=found["state"],
        base=task.base_branch,
        base_sha=found["base_sha"],
        head_sha=published.commit_sha or "",
        merge_base_sha=found.get("merge_base_sha"),
        mergeable=found.get("mergeable"),
        mergeable_state=found.get("mergeable_state"),
        conflicts=found.get("conflicts") or [],
        head_moved=bool(found.get("head_moved")),
        additions=sum(f.additions for f in files),
        deletions=sum(f.deletions for f in files),
        files=files,
        truncated=truncated or bool(found.get("truncated")),
    )
