"""What changed between two versions of a task's artifact: one file at a time for files artifacts.

The one implementation behind the REST diff (GET /api/v1/tasks/{id}/artifacts/diff) and the portal's
version compare. Pure and CPU-bound: callers on the event loop run it in a thread.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Literal

from osiris.app.models import Artifact, ArtifactKind

FileStatus = Literal["added", "deleted", "modified"]
TRUNCATION_NOTE = "... more files differ; see the change request\n"
# difflib's matcher is quadratic in the worst case, and an agent chooses the content: a side longer
# than this is not diffed line by line (a note says so), so a hostile version cannot pin a CPU.
MAX_DIFF_LINES = 20_000
# What one REST diff returns at most, before later files are left out (the portal caps lower).
MAX_DIFF_CHARS = 2_000_000


@dataclass(frozen=True, slots=True)
class FileDiff:
    path: str
    status: FileStatus
    diff: str  # a unified diff with a/<path> and b/<path> headers (/dev/null when added or deleted)


@dataclass(frozen=True, slots=True)
class VersionChanges:
    diff: str  # every file's diff in path order, or the text diff of patch and text versions
    files: list[FileDiff] | None  # per file when both versions are files artifacts, else None
    truncated: bool  # max_chars was reached: later files are left out


def files_of(artifact: Artifact) -> dict[str, str]:
    """A files artifact's {path: content}; empty for any other kind (or an unreadable row)."""
    if artifact.kind == ArtifactKind.FILES.value:
        try:
            files = json.loads(artifact.content)
        except json.JSONDecodeError:
            files = None
        if isinstance(files, dict):
            return {str(k): str(v) for k, v in files.items()}
    return {}


def _lines(text: str) -> list[str]:
    # Split on "\n" only (str.splitlines also splits on \r, \f, \u2028, ...), every element ends in a
    # newline so difflib never glues two lines together, and a missing final newline is marked the
    # way git marks it: "x" and "x\n" are different lines, and the diff says so.
    lines = text.split("\n")
    last = lines.pop()
    out = [line + "\n" for line in lines]
    if last:
        out.append(last + "\n\\ No newline at end of file\n")
    return out


def _unified(before: str, after: str, *, fromfile: str, tofile: str) -> str:
    old, new = _lines(before), _lines(after)
    if max(len(old), len(new)) > MAX_DIFF_LINES:
        return (
            f"--- {fromfile}\n+++ {tofile}\n"
            f"(not diffed: {len(old)} -> {len(new)} lines, more than {MAX_DIFF_LINES}; see the change request)\n"
        )
    return "".join(difflib.unified_diff(old, new, fromfile=fromfile, tofile=tofile))


def _file_diff(before: str | None, after: str | None, path: str) -> str:
    fromfile = "/dev/null" if before is None else f"a/{path}"
    tofile = "/dev/null" if after is None else f"b/{path}"
    # An empty file added or deleted has no hunk; its headers still say it came or went.
    return (
        _unified(before or "", after or "", fromfile=fromfile, tofile=tofile)
        or f"--- {fromfile}\n+++ {tofile}\n"
    )


def compare(older: Artifact, newer: Artifact, *, max_chars: int | None = MAX_DIFF_CHARS) -> VersionChanges:
    """The diff from `older` to `newer`. Two files versions: per file, in sorted path order, added
    and deleted files against /dev/null, unchanged files left out; once `max_chars` of diff are
    written no further file is diffed. Anything else (patch, text, or versions of different kinds):
    a diff of the stored text, headed vN."""
    if older.kind == newer.kind == ArtifactKind.FILES.value:
        a_files, b_files = files_of(older), files_of(newer)
        files: list[FileDiff] = []
        size = 0
        truncated = False
        for path in sorted(set(a_files) | set(b_files)):
            before, after = a_files.get(path), b_files.get(path)
            if before == after:
                continue
            if max_chars is not None and size > max_chars:
                truncated = True
                break
            status: FileStatus = "added" if before is None else "deleted" if after is None else "modified"
            text = _file_diff(before, after, path)
            files.append(FileDiff(path, status, text))
            size += len(text)
        diff = "".join(f.diff for f in files) + (TRUNCATION_NOTE if truncated else "")
        return VersionChanges(diff, files, truncated)
    text = _unified(older.content, newer.content, fromfile=f"v{older.version}", tofile=f"v{newer.version}")
    return VersionChanges(text, None, False)


def diff_text(older: Artifact, newer: Artifact, *, max_chars: int | None = None) -> str:
    return compare(older, newer, max_chars=max_chars).diff
