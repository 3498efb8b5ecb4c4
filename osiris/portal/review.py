"""The task page's "Files changed": the diff approving the newest published version would merge,
read from the code host (`ports.CodeHost.changes`), shaped for a unified and a side-by-side table.

A host that cannot answer now (GitHub rate-limited, a repository missing) costs the section, never
the page: the reviewer sees why, and the decision still names the pinned version and commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from osiris.app.changes import ChangesRead, DiffHunk, DiffLine, changes_of, newest_published
from osiris.app.errors import OsirisError
from osiris.app.jobs import Retry
from osiris.app.models import Artifact, ReviewComment, Task
from osiris.app.runtime import Runtime


@dataclass(frozen=True)
class Loaded:
    changes: ChangesRead | None
    problem: str | None  # why there is nothing to show (not published yet, host unavailable)


async def load(runtime: Runtime, task: Task, artifacts: list[Artifact], *, path: str | None = None) -> Loaded:
    host = runtime.services.code_host
    if host is None or not artifacts:
        return Loaded(None, None)
    if newest_published(artifacts) is None:
        return Loaded(None, "not published yet: the changes show once the code host has the commit")
    limits = runtime.settings
    try:
        found = await changes_of(
            host,
            task,
            artifacts,
            # A file's own view shows it up to the overall cap; the page caps each file too.
            max_file_lines=limits.changes.max_lines if path else limits.changes.max_file_lines,
            max_lines=limits.changes.max_lines,
            path=path,
        )
    except OsirisError as exc:
        return Loaded(None, exc.detail)
    except Retry as exc:
        return Loaded(None, f"the code host cannot answer now ({exc}); reload in a while")
    return Loaded(found, None)


@dataclass(frozen=True)
class SplitRow:
    left: DiffLine | None
    right: DiffLine | None


def split_rows(hunk: DiffHunk) -> list[SplitRow]:
    """The hunk side by side: context on both sides, each run of removed lines beside the added
    lines that follow it, row by row."""
    rows: list[SplitRow] = []
    removed: list[DiffLine] = []
    added: list[DiffLine] = []

    def flush() -> None:
        for i in range(max(len(removed), len(added))):
            rows.append(
                SplitRow(removed[i] if i < len(removed) else None, added[i] if i < len(added) else None)
            )
        removed.clear()
        added.clear()

    for line in hunk.lines:
        if line.kind == "removed":
            if added:
                flush()
            removed.append(line)
        elif line.kind == "added":
            added.append(line)
        else:
            flush()
            rows.append(SplitRow(line, line))
    flush()
    return rows


@dataclass(frozen=True)
class Placed:
    """Where each comment on lines shows: under its line in the diff, or (written on another version,
    or on a line no longer shown) in a list after it."""

    by_line: dict[tuple[str, str, int], list[ReviewComment]] = field(default_factory=dict)
    unplaced: list[ReviewComment] = field(default_factory=list)
    file_keys: dict[str, str] = field(default_factory=dict)  # what changes a file's live region

    def at(self, path: str, line: DiffLine | None) -> list[ReviewComment]:
        """The comments under one diff line: a removed line's by its old number, an added line's by
        its new one, a context line's by either."""
        if line is None:
            return []
        found: list[ReviewComment] = []
        if line.kind in ("removed", "context") and line.old is not None:
            found += self.by_line.get((path, "old", line.old), [])
        if line.kind in ("added", "context") and line.new is not None:
            found += self.by_line.get((path, "new", line.new), [])
        return found


def place(changes: ChangesRead | None, threads: Sequence[ReviewComment]) -> Placed:
    placed = Placed()
    shown: set[tuple[str, str, int]] = set()
    if changes is not None:
        for f in changes.files:
            for h in f.hunks:
                for ln in h.lines:
                    if ln.kind in ("removed", "context") and ln.old is not None:
                        shown.add((f.path, "old", ln.old))
                    if ln.kind in ("added", "context") and ln.new is not None:
                        shown.add((f.path, "new", ln.new))
    for c in threads:
        key = (c.path, c.side, c.line)
        if changes is not None and c.version == changes.version and key in shown:
            placed.by_line.setdefault(key, []).append(c)
        else:
            placed.unplaced.append(c)
        prior = placed.file_keys.get(c.path, "")
        placed.file_keys[c.path] = f"{prior} {c.id}:{'r' if c.resolved_at else 'o'}".strip()
    return placed
