"""version_diff.compare on its own: what the portal's bounded compare and mixed kinds get."""

from __future__ import annotations

import json

from osiris.app import version_diff
from osiris.app.models import Artifact


def _version(n: int, kind: str, content: str | dict[str, str]) -> Artifact:
    text = json.dumps(content) if isinstance(content, dict) else content
    return Artifact(version=n, kind=kind, content=text)


def test_max_chars_stops_after_the_file_that_crosses_it():
    older = _version(1, "files", {f"f{i}.txt": "a\n" for i in range(5)})
    newer = _version(2, "files", {f"f{i}.txt": "b\n" * 50 for i in range(5)})
    full = version_diff.compare(older, newer)
    assert [f.path for f in full.files] == [f"f{i}.txt" for i in range(5)] and not full.truncated

    cut = version_diff.compare(older, newer, max_chars=len(full.files[0].diff) + 1)
    assert [f.path for f in cut.files] == ["f0.txt", "f1.txt"] and cut.truncated
    assert cut.diff.endswith(version_diff.TRUNCATION_NOTE)


def test_an_empty_file_added_still_has_headers_and_other_kinds_diff_as_text():
    older = _version(1, "files", {"a.txt": "x\n"})
    newer = _version(2, "files", {"a.txt": "x\n", "empty.txt": ""})
    [added] = version_diff.compare(older, newer).files
    assert (added.status, added.diff) == ("added", "--- /dev/null\n+++ b/empty.txt\n")

    mixed = version_diff.compare(_version(1, "text", "plan\n"), newer)
    assert mixed.files is None and mixed.diff.startswith("--- v1\n+++ v2\n")


def test_a_hostile_version_is_not_diffed_line_by_line() -> None:
    """An agent picks the content: 200,000 one-character lines would take difflib's quadratic
    worst case for minutes. Past MAX_DIFF_LINES the file is named, counted and not diffed."""
    many = "".join(f"{i % 7}\n" for i in range(200_000))
    older = _version(1, "files", {"big.txt": many})
    changes = version_diff.compare(older, _version(2, "files", {"big.txt": many + "x\n"}))
    (only,) = changes.files
    assert only.status == "modified"
    assert "not diffed: 200000 -> 200001 lines" in only.diff
