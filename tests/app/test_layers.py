"""The layering rules, checked on every run: the core (osiris.app) imports no edge package, and no
two modules (or packages) import each other, even from inside a function.

The contracts are in pyproject.toml (`[tool.importlinter]`); import-linter reads the import graph
statically, so a core module that imports an adapter, even one level down, breaks this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_the_core_imports_no_edge_package_and_nothing_imports_in_a_circle():
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "The core (osiris.app) imports no edge package KEPT" in report, report
    assert "No import circles in osiris KEPT" in report, report
    assert "0 broken" in report, report
