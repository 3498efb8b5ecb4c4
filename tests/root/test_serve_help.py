"""`osiris serve --help` describes every flag with its default: the setting it falls back to
(`OSIRIS_…`) and that setting's own default, read from the Settings class, so the help cannot drift
from what the server really does."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from osiris.app.config import setting_fields
from osiris.cli import build_parser


def _serve_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["serve"]


def _flat(text: str) -> str:
    return " ".join(text.split())  # argparse wraps to the terminal's width


def test_serve_help_describes_every_flag_with_its_default():
    env = os.environ | {"COLUMNS": "80"}
    for name in ("DATABASE_URL", "OSIRIS_HOST", "OSIRIS_PORT", "OSIRIS_WORKERS", "OSIRIS_DATA_DIR"):
        env.pop(name, None)  # the help is the same whatever this machine's environment says
    done = subprocess.run(
        [sys.executable, "-m", "osiris.cli", "serve", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shown = _flat(done.stdout)
    assert shown.startswith("usage: osiris serve")
    flags = [a for a in _serve_parser()._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in flags} >= {"host", "port", "data_dir", "workers"}
    fields = {f.name: f for f in setting_fields() if f.group in (None, "server")}
    for action in flags:
        flag = action.option_strings[-1]
        assert f"[{flag}" in shown, f"{flag} is not in the usage line"
        assert action.help and _flat(action.help) in shown, f"{flag} has no description"
        described = _flat(action.help)
        assert "default" in described, f"{flag} does not say its default"
        if action.dest in fields:  # it falls back to a setting: named, with that setting's default
            default = fields[action.dest].info.default
            assert fields[action.dest].env_names[0] in described, flag
            assert str(default) in described, f"{flag}: the default {default!r} is not in {described!r}"
        else:  # a flag of its own: its argparse default is stated
            assert str(action.default) in described, flag
    # Each flag is listed under the options with its own line.
    for action in flags:
        assert any(line.strip().startswith(action.option_strings[-1]) for line in done.stdout.splitlines())


def test_serve_help_needs_no_database_and_writes_nothing(tmp_path):
    env = os.environ | {"OSIRIS_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": "postgresql://nowhere:1/x"}
    done = subprocess.run(
        [sys.executable, "-m", "osiris.cli", "serve", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--port" in done.stdout, done.stderr
    assert not (tmp_path / "data").exists()
