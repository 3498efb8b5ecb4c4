"""Artifacts as a reviewer reads them: syntax-highlighted files and patches, and version diffs.

Pygments writes class names only (the colours live in a stylesheet), so the strict CSP holds and an
agent's code is always escaped text, never markup.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import DiffLexer, TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

from osiris.app.models import Artifact, ArtifactKind

MAX_RENDERED_CHARS = 400_000  # past this a page gets slow to read; the rest is on the PR or the API
_FORMATTER = HtmlFormatter(cssclass="hl", wrapcode=True)


@dataclass(frozen=True)
class RenderedFile:
    path: str
    html: Markup
    truncated: bool


def _lexer_for(path: str, sample: str) -> Lexer:
    try:
        return get_lexer_for_filename(path, sample[:2000], stripnl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False)


def _html(text: str, lexer: Lexer) -> tuple[Markup, bool]:
    truncated = len(text) > MAX_RENDERED_CHARS
    if truncated:
        text = text[:MAX_RENDERED_CHARS]
    return Markup(highlight(text, lexer, _FORMATTER)), truncated  # noqa: S704 - Pygments escapes


def files_of(artifact: Artifact) -> dict[str, str]:
    if artifact.kind == ArtifactKind.FILES.value:
        try:
            files = json.loads(artifact.content)
        except json.JSONDecodeError:
            files = None
        if isinstance(files, dict):
            return {str(k): str(v) for k, v in files.items()}
    return {}


def render_artifact(artifact: Artifact) -> list[RenderedFile]:
    """A files artifact: each file with its own lexer; a patch: the diff lexer; text: plain."""
    if artifact.kind == ArtifactKind.FILES.value:
        return [
            RenderedFile(path, *_html(body, _lexer_for(path, body)))
            for path, body in files_of(artifact).items()
        ]
    lexer: Lexer = (
        DiffLexer(stripnl=False) if artifact.kind == ArtifactKind.PATCH.value else TextLexer(stripnl=False)
    )
    label = "patch" if artifact.kind == ArtifactKind.PATCH.value else "text"
    return [RenderedFile(label, *_html(artifact.content, lexer))]


def _lines(text: str) -> list[str]:
    # Every line ends in a newline, or difflib glues a last line onto the next hunk line.
    return [line + "\n" for line in text.splitlines()]


def diff_text(older: Artifact, newer: Artifact) -> str:
    """A unified diff between two versions; per file for files artifacts, so paths read naturally."""
    a_files, b_files = files_of(older), files_of(newer)
    if a_files or b_files:
        chunks: list[str] = []
        for path in sorted(set(a_files) | set(b_files)):
            chunks.extend(
                difflib.unified_diff(
                    _lines(a_files.get(path, "")),
                    _lines(b_files.get(path, "")),
                    fromfile=f"a/{path}" if path in a_files else "/dev/null",
                    tofile=f"b/{path}" if path in b_files else "/dev/null",
                )
            )
        return "".join(chunks)
    return "".join(
        difflib.unified_diff(
            _lines(older.content),
            _lines(newer.content),
            fromfile=f"v{older.version}",
            tofile=f"v{newer.version}",
        )
    )


def render_diff(older: Artifact, newer: Artifact) -> RenderedFile:
    text = diff_text(older, newer)
    html, truncated = _html(text, DiffLexer(stripnl=False)) if text else (Markup(""), False)
    return RenderedFile(f"v{older.version} → v{newer.version}", html, truncated)


@lru_cache(maxsize=1)
def stylesheet() -> str:
    return _FORMATTER.get_style_defs(".hl")
