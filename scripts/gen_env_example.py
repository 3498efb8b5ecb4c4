"""Write .env.example from the Settings class: every setting, its default, and the comment above it.

.venv/bin/python scripts/gen_env_example.py > .env.example
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from pydantic import SecretStr

from osiris.app.config import Settings

SOURCE = Path(__file__).resolve().parents[1] / "osiris" / "app" / "config.py"


def comments() -> dict[str, str]:
    """The comment lines right above each field, and section headers, keyed by field name."""
    lines = SOURCE.read_text().splitlines()
    tree = ast.parse(SOURCE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    found: dict[str, str] = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text, i = [], node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                text.insert(0, lines[i].strip())
                i -= 1
            trailing = lines[node.lineno - 1].split("#", 1)
            if len(trailing) == 2 and '"' not in trailing[1]:
                text.append("# " + trailing[1].strip())
            found[node.target.id] = "\n".join(text)
    return found


def render(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def main() -> None:
    notes = comments()
    print("# OSIRIS settings. Copy to .env and adjust; the environment overrides this file.")
    print("# Lines starting with '# NAME=' show the default; uncomment to change it.\n")
    for name, field in Settings.model_fields.items():
        env = "DATABASE_URL" if name == "database_url" else f"OSIRIS_{name.upper()}"
        if notes.get(name):
            print(notes[name])
        print(f"# {env}={render(field.default)}")
    print()


if __name__ == "__main__":
    main()
