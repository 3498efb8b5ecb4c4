"""The schema comes only from Alembic: it round-trips, and the models match it exactly."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench._server import create_database, drop_database
from osiris.app import db
from osiris.app.models import Base
from osiris.migrations_support import include_object


@pytest.fixture
async def scratch_url(database_url):
    """An empty database on the same server as this run's."""
    created = await create_database(database_url, "osiris_mig")
    yield created.render_as_string(hide_password=False)
    await drop_database(database_url, created)


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    await conn.close()
    return {r["tablename"] for r in rows}


async def test_upgrade_downgrade_upgrade(scratch_url):
    await db.upgrade(scratch_url)
    assert {"tasks", "task_events", "pgqueuer", "alembic_version"} <= await _tables(scratch_url)
    await asyncio.to_thread(command.downgrade, db.alembic_config(scratch_url), "base")
    assert await _tables(scratch_url) == {"alembic_version"}
    await db.upgrade(scratch_url)
    assert "tasks" in await _tables(scratch_url)


async def test_models_and_migrations_do_not_differ(scratch_url):
    await db.upgrade(scratch_url)
    engine = create_async_engine(scratch_url)

    def diff(sync_conn):
        ctx = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "include_object": include_object}
        )
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    await engine.dispose()
    assert differences == []


async def test_two_replicas_migrating_at_once_both_succeed(scratch_url):
    # Two processes, as two replicas would be: the advisory lock queues the second, so neither
    # fails on "relation already exists".
    code = "import sys; from osiris.app.db import upgrade_sync; upgrade_sync(sys.argv[1])"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, scratch_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode()[-2000:] for _, err in results]
    assert "tasks" in await _tables(scratch_url)


async def test_embedded_server_starts_migrates_and_keeps_data(tmp_path):
    first = db.EmbeddedPostgres(tmp_path)
    url = first.start()
    await db.upgrade(url)
    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    await conn.execute("INSERT INTO organizations (slug, name) VALUES ('kept', 'kept')")
    await conn.close()
    first.stop()

    second = db.EmbeddedPostgres(tmp_path)
    url = second.start()
    conn = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    assert await conn.fetchval("SELECT count(*) FROM organizations WHERE slug = 'kept'") == 1
    await conn.close()
    second.stop()


async def test_names_that_differ_only_in_case_stop_the_upgrade_with_a_clear_error(scratch_url):
    """0008 makes repository names unique ignoring case; clashing rows are not merged silently."""
    await asyncio.to_thread(db.upgrade_sync, scratch_url, "0007")
    conn = await asyncpg.connect(
        make_url(scratch_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        a = await conn.fetchval("INSERT INTO organizations (slug, name) VALUES ('a', 'a') RETURNING id")
        b = await conn.fetchval("INSERT INTO organizations (slug, name) VALUES ('b', 'b') RETURNING id")
        await conn.execute("INSERT INTO repositories (org_id, name) VALUES ($1, 'App'), ($2, 'app')", a, b)
        with pytest.raises(RuntimeError, match="differ only in case.*App \\(organization"):
            await asyncio.to_thread(db.upgrade_sync, scratch_url)
        await conn.execute("DELETE FROM repositories WHERE name = 'app'")
        await asyncio.to_thread(db.upgrade_sync, scratch_url)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO repositories (org_id, name) VALUES ($1, 'APP')", b)
    finally:
        await conn.close()
