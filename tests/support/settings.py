"""The settings every in-process test app starts from."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from osiris.app.config import Settings

ADMIN_PASSWORD = "admin-password-for-tests"


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """This run's database, a data dir, a random secret key and a known admin password; no job worker
    and no lease sweeping in the background (tests run the jobs themselves); `overrides` on top."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "db": {"url": database_url},
        "auth": {"secret_key": "test-secret-" + secrets.token_hex(16), "admin_password": ADMIN_PASSWORD},
        "server": {"run_worker": False},
        "tasks": {"sweep_interval_seconds": 3600},
    }
    for name, value in overrides.items():  # a group's mapping adds to (or overrides) the one above
        values[name] = {**values[name], **value} if isinstance(values.get(name), dict) else value
    return Settings(**values)
