"""What an agent hands in: detect the kind, validate it, normalise it for storage."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from osiris.app.errors import InvalidArtifact, TooLarge
from osiris.app.models import ArtifactKind

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


def check_path(path: str) -> str:
    """A repository-relative path that cannot escape the work tree or touch git's own files."""
    if not path or "\x00" in path or "\\" in path:
        raise InvalidArtifact(f"invalid path {path!r}")
    p = PurePosixPath(path)
    if p.is_absolute():
        raise InvalidArtifact(f"absolute path not allowed: {path}")
    if any(part in ("..", "") for part in path.split("/")):
        raise InvalidArtifact(f"path may not contain '..' or empty parts: {path}")
    if any(part == ".git" for part in p.parts):
        raise InvalidArtifact(f"path may not touch .git: {path}")
    return str(p)


def _looks_like_patch(text: str) -> bool:
    return text.startswith("diff --git ") or (bool(_DIFF_START.search(text)) and "@@" in text)


def _parse_files(content: Any) -> dict[str, str]:
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError as exc:
            raise InvalidArtifact(f"files artifact is not a JSON object: {exc.msg}") from None
    if not isinstance(content, dict) or not content:
        raise InvalidArtifact("files artifact must be a non-empty object of path -> content")
    files: dict[str, str] = {}
    for path, body in content.items():
        if not isinstance(path, str) or not isinstance(body, str):
            raise InvalidArtifact("files artifact maps string paths to string contents")
        files[check_path(path)] = body
    return files


def _patch_paths(text: str) -> tuple[str, ...]:
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise InvalidArtifact(f"not a valid unified diff: {exc}") from None
    if not len(patch):
        raise InvalidArtifact("the patch changes no file")
    paths: list[str] = []
    for pf in patch:
        # a file entry with no hunk is only meaningful as a rename, mode-only or binary change
        if not len(pf) and not (pf.is_rename or pf.is_binary_file or pf.is_removed_file or pf.is_added_file):
            raise InvalidArtifact(f"the patch for {pf.path} has no valid hunk")
        for raw in (pf.source_file, pf.target_file):
            if raw in (None, "/dev/null"):
                continue
            # strip git's a/ b/ prefixes before checking
            name = raw[2:] if raw[:2] in ("a/", "b/") else raw
            paths.append(check_path(name))
    return tuple(dict.fromkeys(paths))


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


def validate_artifact(content: Any, kind: str | None, *, max_bytes: int) -> ValidArtifact:
    """Raise a typed error for anything we would not be able to publish."""
    if not isinstance(content, (str, dict)):
        raise InvalidArtifact("content must be a string (or an object of files)")
    size = len(json.dumps(content).encode() if isinstance(content, dict) else content.encode())
    if size > max_bytes:
        raise TooLarge(f"artifact is {size} bytes; the limit is {max_bytes}")
    if isinstance(content, str) and not content.strip():
        raise InvalidArtifact("content is empty")
    resolved = _detect(content) if kind in (None, "", "auto") else _kind(kind)

    if resolved is ArtifactKind.FILES:
        files = _parse_files(content)
        return ValidArtifact(resolved, json.dumps(files, sort_keys=True), tuple(sorted(files)))
    if not isinstance(content, str):
        raise InvalidArtifact(f"a {resolved.value} artifact must be a string")
    if resolved is ArtifactKind.PATCH:
        if not content.endswith("\n"):
            content += "\n"
        return ValidArtifact(resolved, content, _patch_paths(content))
    return ValidArtifact(resolved, content, ())


def _kind(kind: str) -> ArtifactKind:
    try:
        return ArtifactKind(kind)
    except ValueError:
        raise InvalidArtifact(f"unknown kind {kind!r}; use patch, files, text or auto") from None
