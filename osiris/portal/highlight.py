"""Artifacts as a reviewer reads them: syntax-highlighted files and patches, and version diffs.

Pygments writes class names only (the colours live in a stylesheet), so the strict CSP holds and an
agent's code is always escaped text, never markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import DiffLexer, TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

from osiris.app.models import Artifact, ArtifactKind
from osiris.app.version_diff import diff_text, files_of

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


def _html(text: str, lexer: Lexer, max_chars: int = MAX_RENDERED_CHARS) -> tuple[Markup, bool]:
    limit = min(max_chars, MAX_RENDERED_CHARS)
    truncated = len(text) > limit
    if truncated:
        text = text[:limit]
    return Markup(highlight(text, lexer, _FORMATTER)), truncated  # noqa: S704 - Pygments escapes


@dataclass(frozen=True)
class RenderedVersion:
    """What the task page shows of one version: a few files highlighted, the others by name."""

    files: list[RenderedFile]
    names: list[str]  # this page of the files not shown inline
    file_count: int
    names_page: int
    names_pages: int


def render_artifact(
    artifact: Artifact, *, max_files: int, max_chars: int, names_page: int = 1, names_per_page: int = 500
) -> RenderedVersion:
    """A files artifact: the first `max_files` files with their own lexers, within `max_chars` of
    highlighting in all; every other file as a name on a page of `names_per_page`. A patch: the
    diff lexer; text: plain."""
    if artifact.kind != ArtifactKind.FILES.value:
        lexer: Lexer = (
            DiffLexer(stripnl=False)
            if artifact.kind == ArtifactKind.PATCH.value
            else TextLexer(stripnl=False)
        )
        label = "patch" if artifact.kind == ArtifactKind.PATCH.value else "text"
        return RenderedVersion([RenderedFile(label, *_html(artifact.content, lexer, max_chars))], [], 1, 1, 1)
    files = files_of(artifact)
    shown: list[RenderedFile] = []
    budget = max_chars
    for path, body in files.items():
        if len(shown) >= max_files or budget <= 0:
            break
        html, truncated = _html(body, _lexer_for(path, body), budget)
        shown.append(RenderedFile(path, html, truncated))
        budget -= min(len(body), budget)
    rest = list(files)[len(shown) :]
    pages = max(1, -(-len(rest) // names_per_page))
    page = min(max(names_page, 1), pages)
    start = (page - 1) * names_per_page
    return RenderedVersion(shown, rest[start : start + names_per_page], len(files), page, pages)


def render_file(artifact: Artifact, path: str, *, max_chars: int) -> RenderedFile | None:
    """One file of a files artifact, highlighted (None when the version has no such file)."""
    body = files_of(artifact).get(path)
    if body is None:
        return None
    return RenderedFile(path, *_html(body, _lexer_for(path, body), max_chars))


def render_diff(older: Artifact, newer: Artifact) -> RenderedFile:
    text = diff_text(older, newer, max_chars=MAX_RENDERED_CHARS)  # _html shows no more than this
    html, truncated = _html(text, DiffLexer(stripnl=False)) if text else (Markup(""), False)
    return RenderedFile(f"v{older.version} → v{newer.version}", html, truncated)


@lru_cache(maxsize=1)
def stylesheet() -> str:
    return _FORMATTER.get_style_defs(".hl")
