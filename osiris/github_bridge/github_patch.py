"""Apply a unified diff in Python, to the few files it touches.

Why not `git apply`: on GitHub there is no checkout. We fetch only the touched files through the API,
apply the hunks here, and send the results back as tree entries, so the cost follows the patch, not
the repository. Hunks must match exactly; like `patch` without fuzz they may sit at an offset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from unidiff import PatchedFile, PatchSet
from unidiff.constants import LINE_TYPE_NO_NEWLINE

from osiris.app.artifacts import unquote_name
from osiris.app.errors import PatchDoesNotApply
from osiris.app.git_safety import check_entry

_INDEX_MODE = re.compile(r"^index [0-9a-f]+\.\.[0-9a-f]+ (\d{6})$", re.MULTILINE)
_NEW_MODE = re.compile(r"^new file mode (\d{6})$", re.MULTILINE)
EXECUTABLE, REGULAR = "100755", "100644"


@dataclass(frozen=True, slots=True)
class Change:
    """One tree entry to write: new content, or None to delete the path."""

    path: str
    content: str | None
    mode: str = REGULAR


def _strip(name: str | None) -> str | None:
    if name is None or name == "/dev/null":
        return None
    name = unquote_name(name)
    return name[2:] if name[:2] in ("a/", "b/") else name


def sources(patch_text: str) -> list[str]:
    """The existing files a patch reads (new files are not fetched)."""
    needed: list[str] = []
    for pf in PatchSet(patch_text):
        src = _strip(pf.source_file)
        if src is not None and not pf.is_added_file:
            needed.append(src)
    return list(dict.fromkeys(needed))


def _sides(pf: PatchedFile) -> Iterable[tuple[int, list[str], list[str]]]:
    """Per hunk: (0-based start in the source, the lines it expects, the lines it leaves)."""
    for hunk in pf:
        expect: list[str] = []
        leave: list[str] = []
        last: list[list[str]] = []
        for line in hunk:
            if line.line_type == LINE_TYPE_NO_NEWLINE:
                for side in last:  # "\ No newline at end of file" belongs to the line before it
                    if side and side[-1].endswith("\n"):
                        side[-1] = side[-1][:-1]
                continue
            if line.is_context:
                expect.append(line.value)
                leave.append(line.value)
                last = [expect, leave]
            elif line.is_removed:
                expect.append(line.value)
                last = [expect]
            elif line.is_added:
                leave.append(line.value)
                last = [leave]
        yield max(hunk.source_start - 1, 0), expect, leave


def _find(lines: list[str], expect: list[str], hint: int, floor: int) -> int | None:
    if not expect:
        return min(max(hint, floor), len(lines))
    span = len(expect)
    for distance in range(len(lines) + 1):
        for at in (hint - distance, hint + distance) if distance else (hint,):
            if floor <= at <= len(lines) - span and lines[at : at + span] == expect:
                return at
    return None


def apply_file(pf: PatchedFile, path: str, original: str) -> str:
    lines = original.splitlines(keepends=True)
    out: list[str] = []
    cursor = 0
    offset = 0
    for start, expect, leave in _sides(pf):
        at = _find(lines, expect, start + offset, cursor)
        if at is None:
            raise PatchDoesNotApply(f"{path}: the hunk at line {start + 1} does not match the file")
        offset = at - start
        out.extend(lines[cursor:at])
        out.extend(leave)
        cursor = at + len(expect)
    out.extend(lines[cursor:])
    return "".join(out)


def apply_patch(patch_text: str, originals: dict[str, str | None]) -> list[Change]:
    """Apply every file of the patch to `originals` (path -> content, None if absent)."""
    changes: dict[str, Change] = {}
    for pf in PatchSet(patch_text):
        src, dst = _strip(pf.source_file), _strip(pf.target_file)
        if pf.is_binary_file:
            raise PatchDoesNotApply(f"{dst or src}: binary patches cannot be applied on GitHub")
        header = str(pf.patch_info or "")
        if pf.is_added_file:
            assert dst is not None  # noqa: S101 - unidiff marks an added file by its target
            if originals.get(dst) is not None:
                raise PatchDoesNotApply(f"{dst}: already exists")
            mode = _NEW_MODE.search(header)
            changes[dst] = Change(dst, apply_file(pf, dst, ""), mode.group(1) if mode else REGULAR)
            continue
        assert src is not None  # noqa: S101
        original = originals.get(src)
        if original is None:
            raise PatchDoesNotApply(f"{src}: does not exist on the branch")
        if pf.is_removed_file:
            if apply_file(pf, src, original):
                raise PatchDoesNotApply(f"{src}: the deletion does not match the file")
            changes[src] = Change(src, None)
            continue
        mode = _INDEX_MODE.search(header)
        result = apply_file(pf, src, original)
        target = dst or src
        if target != src:  # a rename: the old path goes
            changes[src] = Change(src, None)
        changes[target] = Change(target, result, mode.group(1) if mode else REGULAR)
    for change in changes.values():  # what the patch produced: a symlink's target, a .gitmodules
        check_entry(change.path, change.mode, change.content)
    return list(changes.values())
