"""The extractor behind test_walkthroughs.py: fences, markers, console blocks and shown output."""

from __future__ import annotations

from pathlib import Path

from tests.support import walkthrough

PAGE = """# A page

Some words.

```sh
curl -s localhost:8000/api/v1/things   # → {"id": 1, "name": "thing…", ...}
```

<!-- walkthrough: skip — needs a real GitHub App -->
```bash
gh auth login
```

1. In a list:

   ```sh
   export A=1
   make run
   ```

## Console

<!-- walkthrough: skipp this -->
```console
$ echo one \\
    two
one two
$ date
…
```

```text
a diagram
```
"""


def test_fences_markers_and_headings(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    found = walkthrough.blocks(page)
    assert [(b.lang, b.heading) for b in found] == [
        ("sh", "A page"),
        ("bash", "A page"),
        ("sh", "A page"),
        ("console", "Console"),
        ("text", "Console"),
    ]
    plain, skipped, listed, console, _diagram = found
    assert skipped.skip == "needs a real GitHub App" and plain.skip is None
    assert listed.text == "export A=1\nmake run\n" and listed.starts_the_server
    assert console.stray_marker and console.skip is None
    assert console.script() == "echo one \\\n    two\ndate\n"
    assert console.expectations() == ["one two", "…"]
    assert plain.expectations() == ['{"id": 1, "name": "thing…", ...}']
    assert [b.line for b in walkthrough.runnable(page)] == [5, 16, 24]


def test_shown_output():
    answer = '{"id":1,"name":"thing one","extra":true}'
    assert walkthrough.shown_in('{"id": 1, "name": "thing…", ...}', "noise\n" + answer)
    assert not walkthrough.shown_in('{"id": 2, ...}', answer)
    assert not walkthrough.shown_in('{"name": "other…"}', answer)
    assert walkthrough.shown_in('201 {..., "id": 1}', answer)  # curl -s prints no status
    assert walkthrough.shown_in("HTTP 200 …", "HTTP 200 {}")
    assert not walkthrough.shown_in("HTTP 200 …", "HTTP 401 {}")
