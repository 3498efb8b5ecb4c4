"""Write .env.example from the Settings class: every setting, its default, and the comment above it,
in a section per group (`settings.github` is "OSIRIS_GITHUB_…").

.venv/bin/python scripts/gen_env_example.py > .env.example
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from osiris.app.config import GROUPS, Settings, setting_fields

SOURCE = Path(__file__).resolve().parents[1] / "osiris" / "app" / "config.py"


def comments() -> dict[tuple[str, str], str]:
    """The comment lines right above each field (and a comment after it), keyed by (class, field)."""
    lines = SOURCE.read_text().splitlines()
    tree = ast.parse(SOURCE.read_text())
    found: dict[tuple[str, str], str] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                text, i = [], node.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#"):
                    text.insert(0, lines[i].strip())
                    i -= 1
                trailing = lines[node.end_lineno - 1].split("#", 1)
                if len(trailing) == 2 and '"' not in trailing[1]:
                    text.append("# " + trailing[1].strip())
                found[(cls.name, node.target.id)] = "\n".join(text)
    return found


def render(value: object) -> str:
    if value is None or value is PydanticUndefined:
        return ""
    if isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if hasattr(value, "total_seconds"):
        return str(int(value.total_seconds()))  # a timedelta, in seconds as the setting reads it
    return str(value)


def header(group: str | None) -> str:
    cls = GROUPS[group] if group else Settings
    doc = (
        (cls.__doc__ or "").strip().splitlines()[0].rstrip(".")
        if group
        else "the data dir, and the reliability suite"
    )
    prefix = cls.model_config.get("env_prefix", "")
    title = f"# --- {f'settings.{group}' if group else 'settings'} ({prefix}…): {doc} "
    return title + "-" * max(3, 100 - len(title))


def main() -> None:
    notes = comments()
    print("# OSIRIS settings. Copy to .env and adjust; the environment overrides this file.")
    print("# Lines starting with '# NAME=' show the default; uncomment to change it.")
    last: object = ()
    for f in setting_fields():
        if f.group != last:
            print()
            print(header(f.group))
            last = f.group
        cls = GROUPS[f.group] if f.group else Settings
        if notes.get((cls.__name__, f.name)):
            print(notes[(cls.__name__, f.name)])
        print(f"# {f.env}={render(f.info.default)}")
    print()


if __name__ == "__main__":
    main()
