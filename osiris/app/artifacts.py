"""What an agent hands in: detect the kind, validate it, normalise it for storage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from unidiff import PatchedFile, PatchSet
from unidiff.constants import LINE_TYPE_NO_NEWLINE
from unidiff.errors import UnidiffParseError

from osiris.app.errors import InvalidArtifact, TooLarge
from osiris.app.git_safety import REGULAR, SYMLINK, check_entry, check_mode, check_path
from osiris.app.models import ArtifactKind

__all__ = ["ValidArtifact", "check_path", "patch_paths", "strip_level", "unquote_name", "validate_artifact"]

_DIFF_START = re.compile(r"^(diff --git |--- |Index: )", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ValidArtifact:
    kind: ArtifactKind
    content: str  # files are stored as canonical JSON of {path: content}
    paths: tuple[str, ...]  # the paths the artifact touches (empty for text)

    @property
    def files(self) -> dict[str, str]:
        if self.kind is not ArtifactKind.FILES:
            raise ValueError("only a files artifact has files")
        return json.loads(self.content)


def _looks_like_patch(text: str) -> bool:
    return text.startswith("diff --git ") or (bool(_DIFF_START.search(text)) and "@@" in text)


def _parse_files(content: Any, *, max_files: int | None) -> dict[str, str]:
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError as exc:
            raise InvalidArtifact(f"files artifact is not a JSON object: {exc.msg}") from None
    if not isinstance(content, dict) or not content:
        raise InvalidArtifact("files artifact must be a non-empty object of path -> content")
    if max_files is not None and len(content) > max_files:
        raise TooLarge(f"the artifact has {len(content)} files; the limit is {max_files}")
    files: dict[str, str] = {}
    for path, body in content.items():
        if not isinstance(path, str) or not isinstance(body, str):
            raise InvalidArtifact("files artifact maps string paths to string contents")
        check_entry(path, REGULAR, body)  # a files artifact writes regular files only
        files[path] = body
    return files


_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
_QUOTED_CHAR = re.compile(r"\\([0-7]{3}|.)", re.DOTALL)


def unquote_name(name: str) -> str:
    """A path as git apply reads it: git C-quotes names with unusual bytes ("b/\\303\\251")."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    out = bytearray()
    at = 1
    for found in _QUOTED_CHAR.finditer(name, 1, len(name) - 1):
        out += name[at : found.start()].encode()
        code = found.group(1)
        if len(code) == 3:
            out.append(int(code, 8))
        elif code in _ESCAPES:
            out.append(_ESCAPES[code])
        else:
            raise InvalidArtifact(f"bad escape in quoted path {name!r}")
        at = found.end()
    out += name[at:-1].encode()
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise InvalidArtifact(f"path is not valid UTF-8: {name!r}") from None


def _names(patch: PatchSet) -> list[str]:
    return [
        unquote_name(n)
        for pf in patch
        for n in (pf.source_file, pf.target_file)
        if n not in (None, "/dev/null")
    ]


def strip_level(patch: PatchSet) -> int:
    """git writes a/ and b/ prefixes; a hand-made diff may not have them."""
    names = _names(patch)
    return 1 if names and all(n.startswith(("a/", "b/")) for n in names) else 0


def _strip(name: str | None, strip: int) -> str | None:
    if name in (None, "/dev/null"):
        return None
    name = unquote_name(name)
    return name.split("/", strip)[-1] if strip else name


# Header lines git apply takes a path or a mode from (git's parse_git_diff_header).
_HEADER_PATH = re.compile(r"^(?:rename|copy) (?:from|to|old|new) (.+)$", re.MULTILINE)
_NEW_MODE = re.compile(r"^(?:new file mode|new mode) (\S+)$", re.MULTILINE)
_OLD_MODE = re.compile(r"^(?:old mode|deleted file mode) (\S+)$", re.MULTILINE)
_INDEX_MODE = re.compile(r"^index [0-9a-fA-F]+\.\.[0-9a-fA-F]+ (\S+)$", re.MULTILINE)
_ANY_GIT_MODE = frozenset({"100644", "100755", "100664", "120000", "160000"})


def patch_paths(text: str, *, max_files: int | None = None) -> tuple[int, tuple[str, ...]]:
    """Parse a patch and check every path and mode it names: (strip level, the paths it touches).

    Paths come from `---`/`+++` and the `diff --git` line (as unidiff reads them) and from the
    rename/copy lines git apply also honours; modes from every header line that sets one.
    """
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise InvalidArtifact(f"not a valid unified diff: {exc}") from None
    if not len(patch):
        raise InvalidArtifact("the patch changes no file")
    if max_files is not None and len(patch) > max_files:
        raise TooLarge(f"the patch changes {len(patch)} files; the limit is {max_files}")
    strip = strip_level(patch)
    paths: list[str] = []
    for pf in patch:
        # a file entry with no hunk is only meaningful as a rename, mode-only or binary change
        if not len(pf) and not (pf.is_rename or pf.is_binary_file or pf.is_removed_file or pf.is_added_file):
            raise InvalidArtifact(f"the patch for {pf.path} has no valid hunk")
        header = str(pf.patch_info or "")
        mine = [_strip(pf.source_file, strip), _strip(pf.target_file, strip)]
        mine += [unquote_name(n) for n in _HEADER_PATH.findall(header)]
        checked = [check_path(p) for p in mine if p is not None]
        paths.extend(checked)
        target = _strip(pf.target_file, strip) or (checked[-1] if checked else pf.path)
        for mode in _NEW_MODE.findall(header) + _INDEX_MODE.findall(header):
            check_mode(target, mode)
        for mode in _OLD_MODE.findall(header):
            if mode not in _ANY_GIT_MODE:
                raise InvalidArtifact(f"{target}: file mode {mode} is not a git file mode")
        if pf.is_added_file and SYMLINK in _NEW_MODE.findall(header):
            # The target is all there is of a new symlink; a changed one is checked once applied.
            check_entry(target, SYMLINK, _added_text(pf))
    return strip, tuple(dict.fromkeys(paths))


def _added_text(pf: PatchedFile) -> str:
    lines = [line.value for hunk in pf for line in hunk if line.is_added]
    text = "".join(lines)
    no_newline = any(line.line_type == LINE_TYPE_NO_NEWLINE for hunk in pf for line in hunk)
    return text[:-1] if no_newline and text.endswith("\n") else text


def _detect(content: Any) -> ArtifactKind:
    if isinstance(content, dict):
        return ArtifactKind.FILES
    stripped = content.lstrip()
    if stripped.startswith("{"):
        try:
            if isinstance(json.loads(stripped), dict):
                return ArtifactKind.FILES
        except json.JSONDecodeError:
            pass
    if _looks_like_patch(content):
        return ArtifactKind.PATCH
    return ArtifactKind.TEXT


def validate_artifact(
    content: Any, kind: str | None, *, max_bytes: int, max_files: int | None = None
) -> ValidArtifact:
    """Raise a typed error for anything we would not be able to publish (or would refuse to)."""
    if not isinstance(content, (str, dict)):
        raise InvalidArtifact("content must be a string (or an object of files)")
    size = len(json.dumps(content).encode() if isinstance(content, dict) else content.encode())
    if size > max_bytes:
        raise TooLarge(f"artifact is {size} bytes; the limit is {max_bytes}")
    if isinstance(content, str) and not content.strip():
        raise InvalidArtifact("content is empty")
    resolved = _detect(content) if kind in (None, "", "auto") else _kind(kind)

    if resolved is ArtifactKind.FILES:
        files = _parse_files(content, max_files=max_files)
        return ValidArtifact(resolved, json.dumps(files, sort_keys=True), tuple(sorted(files)))
    if not isinstance(content, str):
        raise InvalidArtifact(f"a {resolved.value} artifact must be a string")
    if resolved is ArtifactKind.PATCH:
        if not content.endswith("\n"):
            content += "\n"
        return ValidArtifact(resolved, content, patch_paths(content, max_files=max_files)[1])
    return ValidArtifact(resolved, content, ())


def _kind(kind: str) -> ArtifactKind:
    try:
        return ArtifactKind(kind)
    except ValueError:
        raise InvalidArtifact(f"unknown kind {kind!r}; use patch, files, text or auto") from None
