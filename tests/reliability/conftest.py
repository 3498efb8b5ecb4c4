"""Reliability suite: real `osiris serve` processes (loopback only) on this run's database, and the
in-process app wired to the GitHub fake (`github`)."""

from __future__ import annotations

import pytest

from tests.support.github_harness import github  # noqa: F401 - a fixture


@pytest.fixture
def server_env(database_url, settings, tmp_path) -> dict[str, str]:
    """What an `osiris serve` subprocess needs to share this run's database and key."""
    return {
        "DATABASE_URL": database_url,
        "OSIRIS_SECRET_KEY": settings.auth.secret_key.get_secret_value(),
        "OSIRIS_DATA_DIR": str(tmp_path / "data"),
        "OSIRIS_ADMIN_PASSWORD": settings.auth.admin_password.get_secret_value(),
        "OSIRIS_LOG_LEVEL": "WARNING",
    }
