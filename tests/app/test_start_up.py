"""What a start costs (issue 17, bench/startup.py): no channel SDK is imported until its channel is
used, and nothing is computed at import that a constant can hold. Checks of what is imported, never
of how long it takes."""

from __future__ import annotations

import json
import subprocess
import sys

from osiris.app import security

CHANNEL_SDKS = ("aiohttp", "slack_sdk", "telegram", "twilio", "aiosmtpd", "aiosmtplib")
# Not needed before their first use either: the MCP SDK (the first /mcp request), pgqueuer (the job
# worker, which imports it off the event loop, and the first enqueue), YAML (a repository's
# `.osiris.yml`), psutil (a sandbox without cgroups); GitPython is not used at all (the git CLI is).
LATER = ("mcp", "mcp_types", "pgqueuer", "yaml", "psutil", "git")


def _imported_by_the_app(names: tuple[str, ...]) -> list[str]:
    """Which of these a fresh process has imported once it built the app `osiris serve` runs."""
    probe = (
        "import json, sys; import osiris.cli, osiris.server as s; s._extensions(); s.create_app(); "
        f"print(json.dumps([m for m in {list(names)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_app_and_its_edges_import_no_channel_sdk():
    """`osiris serve` imports the composition root and every edge; a channel's SDK (and aiohttp, under
    Slack's) waits until that channel sends, receives or listens."""
    assert _imported_by_the_app(CHANNEL_SDKS) == []


def test_the_app_imports_no_mcp_sdk_job_queue_yaml_or_gitpython_before_their_use():
    assert _imported_by_the_app(LATER) == []


def test_the_timing_equaliser_costs_what_a_real_password_hash_costs():
    """An unknown user's login verifies against the constant dummy hash: it must have the hasher's
    own parameters, or that login would take a different time than a wrong password."""
    assert not security._hasher.check_needs_rehash(security._DUMMY_HASH)
    assert security._hasher.verify(security._DUMMY_HASH, "osiris-timing-equaliser")
    assert not security.verify_password("osiris-timing-equaliser", None)


def test_the_head_revision_read_without_alembic_is_alembics_head():
    """A start skips Alembic when the database is at the head revision, which db.head_revision reads
    from the migration files' text: it must name what Alembic would."""
    from alembic.script import ScriptDirectory

    from osiris.app import db

    assert (
        db.head_revision()
        == ScriptDirectory.from_config(db.alembic_config("postgresql://x/y")).get_current_head()
    )
