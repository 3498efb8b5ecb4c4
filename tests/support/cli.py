"""The `osiris` command as an operator runs it, against this run's database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path


async def osiris_cli(
    database_url: str, tmp_path: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess:
    """`python -m osiris.cli ARGS` in a process of its own (off the event loop), with its data dir in
    `tmp_path`/cli-data; stdout and stderr captured as text."""
    env = os.environ | {
        "DATABASE_URL": database_url,
        "OSIRIS_SECRET_KEY": "cli-test-secret",
        "OSIRIS_DATA_DIR": str(tmp_path / "cli-data"),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "osiris.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )
