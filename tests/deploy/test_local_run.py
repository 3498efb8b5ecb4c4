"""The manifests' own commands, run here: `osiris migrate` (the hook Job), then `osiris serve` with
the API Deployment's args and environment (its ConfigMap and credentials), probed where its
readiness and liveness probes and the ServiceMonitor look, `osiris worker --skip-jobs run_checks`
with the worker Deployment's narrower credentials, and `osiris worker --jobs run_checks` with the
checks Deployment's fewer still (no chat-provider token, no webhook secret, no admin password, no
signing key) as the PostgreSQL role the migration Job granted, all against a fresh, empty database.

What differs from a pod, and why: the port is a free one and the host is 127.0.0.1 (tests listen on
loopback only), and OSIRIS_DATA_DIR is a temporary folder (the pod's emptyDir)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from bench._server import create_database, drop_database, free_port

from .deploy_manifests import committed, one, osiris_script


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A new database with nothing in it, on the server the run's `database_url` fixture
    (tests/conftest.py) set up: OSIRIS_TEST_DATABASE_URL's, or the embedded one."""
    created = await create_database(database_url, "osiris_deploy")
    try:
        yield created.set(drivername="postgresql").render_as_string(hide_password=False)
    finally:
        await drop_database(database_url, created)


@pytest.fixture
async def checks_role(empty_database: str) -> AsyncIterator[tuple[str, str]]:
    """A LOGIN role for the checks pods (unique: roles are shared by the whole server) and its URL,
    as the operator creates them; dropped afterwards with what the migration Job granted it."""
    role = f"osiris_checks_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    conn = await asyncpg.connect(empty_database)
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        yield (
            role,
            str(
                make_url(empty_database)
                .set(username=role, password=password)
                .render_as_string(hide_password=False)
            ),
        )
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")
        await conn.close()


CHECKS_SECRET = "osiris-checks-database"  # checks.database.existingSecret


def _env(
    container: dict, config: dict[str, str], credentials: dict[str, str], checks_url: str = ""
) -> dict[str, str]:
    """The container's environment as Kubernetes would build it: envFrom the ConfigMap, then each
    env entry (a secretKeyRef resolves to the credential, or is left out when optional and absent;
    the checks role's Secret to `checks_url`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_") and k != "DATABASE_URL"}
    if container.get("envFrom"):
        env |= config
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if ref["name"] == CHECKS_SECRET:
            assert ref["key"] == "url" and checks_url
            env[entry["name"]] = checks_url
        elif ref["key"] in credentials:
            env[entry["name"]] = credentials[ref["key"]]
        else:
            assert ref.get("optional"), f"{entry['name']}: a required key is missing"
    return env


async def _migrated(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        at_head = await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
        return at_head and await conn.fetchval("SELECT to_regclass('public.tasks') IS NOT NULL")
    finally:
        await conn.close()


def _pod_args(args: list[str], port: int) -> list[str]:
    out = list(args)
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        if flag in out:
            out[out.index(flag) + 1] = value
    return out


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"not ready in 120 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def _job_kinds_taken(proc: subprocess.Popen, log: Path) -> set[str]:
    """The kinds a worker logged it takes (`job worker takes: …`, once its services are installed)."""
    deadline = time.monotonic() + 120
    while True:
        found = re.search(r"job worker takes: ([a-z_, ]*)", log.read_text())
        if found:
            return {k.strip() for k in found.group(1).split(",") if k.strip()}
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no `job worker takes` line in 120 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def test_migrate_serve_and_worker_as_the_manifests_run_them(
    empty_database: str, checks_role: tuple[str, str], tmp_path: Path
) -> None:
    docs = committed()
    role, checks_url = checks_role
    config = dict(one(docs, "ConfigMap", "osiris-config")["data"])
    config["OSIRIS_DATA_DIR"] = str(tmp_path / "data")
    credentials = {
        "url": empty_database,  # the database Secret's key
        "OSIRIS_SECRET_KEY": secrets.token_urlsafe(48),
        "OSIRIS_ADMIN_PASSWORD": "deploy-test-" + secrets.token_hex(8),
        # channel secrets the API and the worker get and the checks pod must not
        "OSIRIS_SLACK_BOT_TOKEN": "xoxb-deploy-test-" + secrets.token_hex(8),
        "OSIRIS_TELEGRAM_BOT_TOKEN": "123456:deploy-test-" + secrets.token_hex(8),
    }
    containers = {
        obj["metadata"]["name"]: obj["spec"]["template"]["spec"]["containers"][0]
        for obj in docs
        if obj["kind"] in ("Deployment", "Job")
    }
    script = str(osiris_script())

    # 1. the migration Job, on an empty database: migrates, then grants the checks pods' role
    # (the manifests name `osiris_checks`; here a role of this test's own)
    job = containers["osiris-migrate"]
    assert job["args"] == ["db", "grant-checks-role", "osiris_checks"]
    done = subprocess.run(
        [script, *job["args"][:-1], role],
        env=_env(job, config, credentials),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert asyncio.run(_migrated(empty_database))

    # 2. the API Deployment's container
    api = containers["osiris-api"]
    port = free_port()
    api_env = _env(api, config, credentials)
    api_env["OSIRIS_PORT"] = str(port)
    serve_log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [script, *_pod_args(api["args"], port)],
        env=api_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=serve_log.open("wb"),
        start_new_session=True,
    )
    # 3. the worker Deployment's container, with only its own credentials
    worker = containers["osiris-worker"]
    worker_log = tmp_path / "worker.log"
    work = subprocess.Popen(
        [script, *worker["args"]],
        env=_env(worker, config, credentials),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=worker_log.open("wb"),
        start_new_session=True,
    )
    # 4. the checks Deployment's container: pre-review checks only, with its reduced environment
    checker = containers["osiris-checks"]
    checks_env = _env(checker, config, credentials, checks_url)
    assert (
        not {"OSIRIS_ADMIN_PASSWORD", "OSIRIS_SLACK_BOT_TOKEN", "OSIRIS_TELEGRAM_BOT_TOKEN"}
        & checks_env.keys()
    )
    # its own role, and not the signing key (a placeholder: Settings requires one)
    assert checks_env["DATABASE_URL"] == checks_url
    assert checks_env["OSIRIS_SECRET_KEY"] != credentials["OSIRIS_SECRET_KEY"]
    checks_log = tmp_path / "checks.log"
    check = subprocess.Popen(
        [script, *checker["args"]],
        env=checks_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=checks_log.open("wb"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # each worker says which kinds it took: the checks alone, and everything else
        assert _job_kinds_taken(check, checks_log) == {"run_checks"}
        taken = _job_kinds_taken(work, worker_log)
        assert taken and "run_checks" not in taken
        ready = api["readinessProbe"]["httpGet"]["path"]
        live = api["livenessProbe"]["httpGet"]["path"]
        _wait_ready(serve, base + ready, serve_log)
        assert httpx.get(base + live, timeout=5).json() == {"status": "ok"}
        assert httpx.get(base + ready, timeout=5).json() == {"status": "ok", "database": "ok"}
        assert "osiris_" in httpx.get(base + "/metrics", timeout=5).text  # the ServiceMonitor's path
        # the admin password from the Secret works; a task made here is a job for the worker pod
        token = httpx.post(
            base + "/api/v1/auth/token",
            data={"username": "admin", "password": credentials["OSIRIS_ADMIN_PASSWORD"]},
            timeout=10,
        )
        headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
        created = httpx.post(base + "/api/v1/tasks", json={"title": "from the manifests"}, headers=headers)
        assert created.status_code == 201, created.text
        time.sleep(2)
        assert work.poll() is None, worker_log.read_text()[-3000:]
        assert check.poll() is None, checks_log.read_text()[-3000:]  # up with its reduced env
        assert serve.poll() is None, serve_log.read_text()[-3000:]
    finally:
        for proc in (serve, work, check):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        serve.wait(60)
        work.wait(60)
        check.wait(60)
    # uvicorn re-raises the SIGTERM after a clean shutdown, as under tini in the pod
    assert serve.returncode in (0, -signal.SIGTERM), serve_log.read_text()[-3000:]
    assert "Application shutdown complete" in serve_log.read_text()
    assert work.returncode in (0, -signal.SIGTERM), worker_log.read_text()[-3000:]
    assert check.returncode in (0, -signal.SIGTERM), checks_log.read_text()[-3000:]
    assert "permission denied" not in checks_log.read_text()  # the restricted role was enough
    # serve ran no job worker of its own (OSIRIS_RUN_WORKER=false): the worker pod does that
    assert "OSIRIS admin account created" not in serve_log.read_text()  # the Secret's password was used
