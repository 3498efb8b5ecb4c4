"""Unified diff → `osiris.app.changes` types: how both code hosts read their diffs.

Both code hosts speak unified diff (git's own output on the local host, GitHub's per-file `patch`);
unidiff parses it. Every name and line here is the agent's input: it is only ever rendered as text.
"""

from __future__ import annotations

from typing import Any

import unidiff

from osiris.app.changes import DiffHunk, DiffLine, FileChange, FileStatus


def parse_patch(text: str) -> list[FileChange]:
    """Files of a git-style unified diff, in order (one per `diff --git` section). Paths are taken
    as unidiff read them; hosts that know the exact names (git's -z output, GitHub's API) replace them."""
    out = []
    for pf in unidiff.PatchSet(text):
        if pf.is_added_file:
            status: FileStatus = "added"
        elif pf.is_removed_file:
            status = "deleted"
        elif pf.is_rename:
            status = "renamed"
        else:
            status = "modified"
        source = _strip_prefix(pf.source_file)
        out.append(
            FileChange(
                path=_strip_prefix(pf.target_file) if not pf.is_removed_file else source,
                old_path=source if pf.is_rename else None,
                status=status,
                binary=bool(pf.is_binary_file),
                additions=pf.added,
                deletions=pf.removed,
                hunks=[_hunk(h) for h in pf],
            )
        )
    return out


def hunks_of(patch: str) -> list[DiffHunk]:
    """The hunks of one file's patch as GitHub sends it (from the first @@, no file headers)."""
    if not patch.strip():
        return []
    text = patch if patch.endswith("\n") else patch + "\n"
    files = parse_patch(f"--- a/f\n+++ b/f\n{text}")
    return files[0].hunks if files else []


def _strip_prefix(name: str | None) -> str:
    name = name or ""
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1]
    return name[2:] if name[:2] in ("a/", "b/") else name


def _hunk(h: Any) -> DiffHunk:
    lines = []
    for line in h:
        kind = {"+": "added", "-": "removed", " ": "context"}.get(line.line_type, "note")
        lines.append(
            DiffLine(
                kind=kind, old=line.source_line_no, new=line.target_line_no, text=line.value.rstrip("\r\n")
            )
        )
    return DiffHunk(
        old_start=h.source_start,
        old_lines=h.source_length,
        new_start=h.target_start,
        new_lines=h.target_length,
        section=(h.section_header or "").strip(),
        lines=lines,
    )
