"""The checks worker's PostgreSQL role (`osiris db grant-checks-role`), on the real server: the real
`osiris worker --jobs run_checks` runs a check as that role end to end, and everything an agent's
code that escaped its sandbox would try with that credential is refused by PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bench._server import create_database, drop_database
from osiris.app import check_runs, checks_role, db, jobs
from osiris.app.models import CheckRun, TaskEvent
from osiris.server import asyncpg_dsn
from tests.support.jobs import drain_kinds
from tests.support.rest import claimed_task, submitted, task_view

DENIED = asyncpg.InsufficientPrivilegeError  # SQLSTATE 42501, also a row-level security refusal


@pytest.fixture
async def role_url(database_url: str, runtime) -> AsyncIterator[str]:
    """A new LOGIN role (unique: roles are shared by the whole server), granted by the real CLI,
    dropped afterwards with every privilege and policy that names it."""
    role = f"osiris_checks_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        env = os.environ | {"DATABASE_URL": database_url, "OSIRIS_SECRET_KEY": "grant-test-key"}
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "osiris.cli", "db", "grant-checks-role", role],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"role {role} may now do only what the checks worker does" in out.stderr
        yield (
            make_url(database_url).set(username=role, password=password).render_as_string(hide_password=False)
        )
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.execute(f"DROP POLICY IF EXISTS {checks_role.OTHERS_POLICY} ON pgqueuer")
        await admin.execute("ALTER TABLE pgqueuer DISABLE ROW LEVEL SECURITY")
        await admin.close()


def _checks_worker(role_url: str, data_dir) -> subprocess.CompletedProcess:
    """The checks Deployment's command, as the restricted role."""
    env = os.environ | {
        "DATABASE_URL": role_url,
        "OSIRIS_SECRET_KEY": "the-checks-pods-sign-nothing",
        "OSIRIS_DATA_DIR": str(data_dir),
        "OSIRIS_CHECKS_ISOLATION": "userns",
    }
    return subprocess.run(
        [sys.executable, "-m", "osiris.cli", "worker", "--drain", "--jobs", "run_checks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_the_checks_worker_runs_a_check_as_the_restricted_role_and_the_role_can_do_nothing_else(
    client,
    factory,
    runtime,
    role_url,
    monkeypatch,
):
    s = runtime.settings
    repo_name = f"t-{secrets.token_hex(4)}"  # a repository of its own on the local git host
    monkeypatch.setitem(s.checks.commands, repo_name, ["grep -q 'a + b' calc.py"])
    monkeypatch.setitem(s.checks.mode, repo_name, "block")
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    task_id = await claimed_task(client, agent, title="add()", repo=repo_name)
    await submitted(client, agent, task_id, {"calc.py": "def add(a, b):\n    return a + b\n"}, kind="files")
    await drain_kinds(runtime, jobs.PUBLISH_ARTIFACT)  # the worker publishes; run_checks is queued
    async with runtime.sessions() as session:
        assert (await jobs.queue_depth(session)).get(check_runs.RUN_CHECKS) == 1

    done = await asyncio.to_thread(_checks_worker, role_url, s.data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "job worker takes: run_checks" in done.stderr
    assert "permission denied" not in done.stderr

    async with runtime.sessions() as session:
        [run] = (await session.execute(select(CheckRun).where(CheckRun.task_id == task_id))).scalars()
        assert (run.status, run.recorded_at) == ("passed", None)  # its outcome, not yet recorded
        kinds = set(
            (await session.execute(select(TaskEvent.kind).where(TaskEvent.task_id == task_id))).scalars()
        )
        assert "checks_completed" not in kinds  # the checks worker writes no event
        assert (await jobs.queue_depth(session)).get(check_runs.RECORD_CHECKS, 0) >= 1

    await drain_kinds(runtime, check_runs.RECORD_CHECKS)  # the ordinary worker records it
    events = (await client.get(f"/api/v1/tasks/{task_id}/events", headers=reviewer)).json()
    completed = [e for e in events if e["kind"] == "checks_completed"]
    assert [e["data"]["status"] for e in completed] == ["passed"]
    requested = [e for e in events if e["kind"] == "review_requested"]
    assert [(e["data"]["version"], e["data"]["checks"]) for e in requested] == [(1, "passed")]
    assert "checks_started" in {e["kind"] for e in events}
    assert (await task_view(client, reviewer, task_id))["status"] == "REVIEW"

    # What an agent's code holding this credential would try next.
    async with db.transaction(runtime.sessions) as session:  # another kind of job, queued
        await jobs.enqueue(session, jobs.DELIVER_MESSAGE, {"message_id": 1})
    conn = await asyncpg.connect(asyncpg_dsn(role_url))
    try:
        for statement in (
            f"UPDATE tasks SET status = 'DONE' WHERE id = {task_id}",
            "DELETE FROM tasks",
            "SELECT password_hash FROM users",
            "SELECT username FROM users",
            "SELECT token_hash FROM api_tokens",
            "SELECT secret_hash FROM oauth_clients",
            "SELECT * FROM oauth_access_tokens",
            "SELECT secret FROM webhook_subscriptions",
            "SELECT settings FROM channel_accounts",
            "SELECT address FROM user_channels",
            "SELECT body FROM messages",
            "INSERT INTO task_events (org_id, task_id, kind, actor_name, data) "
            f"SELECT org_id, id, 'approved', 'x', '{{}}' FROM tasks WHERE id = {task_id}",
            f"INSERT INTO messages (org_id, task_id, author_name, direction, body, source) "
            f"SELECT org_id, id, 'x', 'to_agent', 'x', 'portal' FROM tasks WHERE id = {task_id}",
            f"UPDATE check_runs SET task_id = task_id, recorded_at = now() WHERE task_id = {task_id}",
            f"UPDATE artifacts SET commit_sha = 'x' WHERE task_id = {task_id}",
            "INSERT INTO pgqueuer (priority, entrypoint, status, payload) "
            "VALUES (0, 'merge_task', 'queued', '{}'::bytea)",
            "INSERT INTO pgqueuer (priority, entrypoint, status, payload) "
            "VALUES (0, 'github_event', 'queued', '{}'::bytea)",
            "CREATE TABLE osiris_checks_was_here (x int)",
        ):
            with pytest.raises(DENIED):
                await conn.execute(statement)
        # The other kinds of job are invisible, and so out of reach of UPDATE and DELETE.
        assert await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'deliver_message'") == 0
        assert await conn.execute("DELETE FROM pgqueuer WHERE entrypoint = 'deliver_message'") == "DELETE 0"
        assert await conn.execute("UPDATE pgqueuer SET payload = NULL") == "UPDATE 0"
        # What it may do: read a version's check run and write its outcome columns.
        assert await conn.fetchval(f"SELECT status FROM check_runs WHERE task_id = {task_id}") == "passed"
    finally:
        await conn.close()
    async with runtime.sessions() as session:
        assert (await jobs.queue_depth(session)).get(jobs.DELIVER_MESSAGE) == 1  # untouched
        status = await session.scalar(text(f"SELECT status FROM tasks WHERE id = {task_id}"))
    assert status == "REVIEW"


async def test_a_role_that_would_not_be_restricted_is_refused(database_url, runtime):
    async with db.transaction(runtime.sessions) as session:
        owner = await session.scalar(text("SELECT current_user"))
    for role, why in (
        (owner, "superuser"),  # the tests' own role: a superuser, the tables' owner
        ("no_such_role_" + secrets.token_hex(3), "does not exist"),
        ('x"; DROP TABLE tasks; --', "not a plain PostgreSQL role name"),
    ):
        with pytest.raises(checks_role.RoleRefused, match=why):
            async with db.transaction(runtime.sessions) as session:
                await checks_role.grant(session, role)
    # a member of the owner's role inherits its rights: refused too
    member = f"osiris_member_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute(f"CREATE ROLE {member} NOLOGIN IN ROLE {owner}")
        with pytest.raises(checks_role.RoleRefused, match="is a member of, the role that owns"):
            async with db.transaction(runtime.sessions) as session:
                await checks_role.grant(session, member)
    finally:
        await admin.execute(f"DROP ROLE {member}")
        await admin.close()


async def test_the_checks_worker_never_migrates_it_waits_for_the_migration_job(database_url, tmp_path):
    """Started first on an empty database (plain manifests applied at once), the checks worker
    creates nothing (on PostgreSQL before 15 any role may create tables in `public`, and the one
    that migrated would own them): it waits, and starts once the Job has migrated and granted."""
    created = await create_database(database_url, "osiris_checks_wait")
    empty = created.set(drivername="postgresql").render_as_string(hide_password=False)
    role, password = f"osiris_checks_{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = await asyncpg.connect(empty)
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    await admin.execute(f"GRANT CREATE ON SCHEMA public TO {role}")  # as PostgreSQL 14 let anyone
    log = tmp_path / "checks.log"
    env = os.environ | {
        "DATABASE_URL": make_url(empty)
        .set(username=role, password=password)
        .render_as_string(hide_password=False),
        "OSIRIS_SECRET_KEY": "the-checks-pods-sign-nothing",
        "OSIRIS_DATA_DIR": str(tmp_path / "data"),
        "OSIRIS_CHECKS_ISOLATION": "none",
    }
    worker = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "osiris.cli", "worker", "--jobs", "run_checks"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )
    try:
        await _until(lambda: "waiting for the migrations" in log.read_text(), worker, log)
        assert await admin.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        owner_env = os.environ | {"DATABASE_URL": empty, "OSIRIS_SECRET_KEY": "grant-test-key"}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "osiris.cli", "db", "grant-checks-role", role],
            env=owner_env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        await _until(lambda: "job worker takes: run_checks" in log.read_text(), worker, log)
        owners = await admin.fetch("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
        assert role not in {r["tableowner"] for r in owners}
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.close()
        await drop_database(database_url, created)
        server = await asyncpg.connect(asyncpg_dsn(database_url))
        await server.execute(f"DROP ROLE {role}")
        await server.close()


async def _until(condition, proc: subprocess.Popen, log, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        await asyncio.sleep(0.2)
