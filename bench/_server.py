"""What the benches share: a real `osiris serve` in a subprocess (loopback only), a scratch database,
the admin's and the agents' tokens, seeded tasks, percentiles, and the command line every bench has
(`--json PATH` for bench/report.py). The tests use `running_server`, `serving`, `free_port` and
`create_database` / `drop_database` too, rather than copies (tests/support/__init__.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import URL, make_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ADMIN_PASSWORD = "bench-admin-password"  # OSIRIS_ADMIN_PASSWORD of every bench's server


def use_repository_root() -> None:
    """Put the repository's root where Python put bench/ (a script's own folder is first on sys.path).

    Called before the `mcp` SDK is imported, by the benches that import it or the app in-process:
    bench/mcp.py would hide it otherwise; and `tests.support` (the GitHub fake) resolves.
    """
    sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == HERE else p for p in sys.path]


# --- the command line -----------------------------------------------------------------------------


def arguments(doc: str | None, *, deadline: float | None = None) -> argparse.ArgumentParser:
    """A bench's parser: its docstring as help, `--json PATH`, and `--deadline SECONDS` when given one."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if deadline is not None:
        parser.add_argument(
            "--deadline", type=float, default=deadline, help="stop measuring after this many seconds"
        )
    parser.add_argument("--json", type=Path, help="also write the key numbers here (bench/report.py)")
    return parser


def write_summary(
    path: Path | None,
    *,
    name: str,
    baseline_label: str,
    baseline: float | None,
    osiris_label: str,
    osiris: float | None,
    ratio: float | None,
    unit: str,
    goal: str,
    notes: str,
    **more: Any,
) -> None:
    """One row of docs/benchmarks.md, as `--json PATH` (nothing without a path): OSIRIS against the
    baseline measured in the same run."""
    if path is None:
        return
    summary = {
        "name": name,
        "baseline_label": baseline_label,
        "baseline": baseline,
        "osiris_label": osiris_label,
        "osiris": osiris,
        "ratio": ratio,
        "unit": unit,
        "goal": goal,
        "notes": notes,
        **more,
    }
    path.write_text(json.dumps(summary, indent=2) + "\n")


# --- numbers ----------------------------------------------------------------------------------------


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The q-quantile (0 to 1; 0.5 is the median) of samples in seconds, in milliseconds: linear
    between the closest ranks, NaN without samples."""
    if not seconds:
        return math.nan
    ordered = sorted(seconds)
    at = q * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return (ordered[low] + (ordered[high] - ordered[low]) * (at - low)) * 1000


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak (VmHWM), from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


# --- servers ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(
    cmd: list[str],
    url: str,
    *,
    ready: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[subprocess.Popen, float]]:
    """Run `cmd` in a process group of its own until `url + ready` answers 200 (at most 120 s); yield the
    process and the seconds that took; stop the group (SIGTERM, then SIGKILL after 60 s) at the end.
    Its stderr goes to `log` (appended), which a start that fails quotes."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab") if log else subprocess.DEVNULL,  # kept for when a run goes wrong
    )
    start = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                said = log.read_text(errors="replace")[-3000:] if log else ""
                raise RuntimeError(f"server exited with {proc.returncode}\n{said}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + ready, timeout=1).status_code == 200:
                    break
            if time.monotonic() - start > 120:
                raise RuntimeError("server not ready in 120 s")
            time.sleep(0.05)
        yield proc, time.monotonic() - start
    finally:
        with contextlib.suppress(ProcessLookupError):  # a crash test may have killed it already
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@contextmanager
def running_server(data_dir: Path, *, env: dict[str, str] | None = None):
    """`osiris serve` on a free loopback port with its data (and, without DATABASE_URL, its embedded
    PostgreSQL) in `data_dir`; yields (url, process, seconds to /readyz). `env` adds to or overrides
    the defaults (this environment, the port, WARNING logs, the bench admin password)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = os.environ | {
        "OSIRIS_DATA_DIR": str(data_dir),
        "OSIRIS_PORT": str(port),
        "OSIRIS_LOG_LEVEL": "WARNING",
        "OSIRIS_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    full_env |= env or {}
    cmd = [sys.executable, "-m", "osiris.cli", "serve"]
    with serving(cmd, url, ready="/readyz", env=full_env, log=data_dir / "server.log") as (proc, took):
        yield url, proc, took


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full_env = os.environ | {"OSIRIS_DATA_DIR": str(data_dir)} | (env or {})
    out = subprocess.run(
        [sys.executable, "-m", "osiris.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip()


# --- databases --------------------------------------------------------------------------------------


def embedded_dsn(data_dir: Path) -> str:
    """The asyncpg DSN of the embedded PostgreSQL a server with this data dir runs."""
    return f"postgresql://postgres@/postgres?host={(data_dir / 'pg').resolve()}"


async def _sql(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _admin_dsn(server: str) -> str:
    return make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server: str, prefix: str) -> URL:
    """A new, empty database on the PostgreSQL server of the URL `server`, named `prefix`, the process id
    and a random suffix (parallel runs never collide); its URL, with `server`'s driver."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    await _sql(_admin_dsn(server), f'CREATE DATABASE "{name}"')
    return make_url(server).set(database=name)


async def drop_database(server: str, url: URL) -> None:
    """Drop the database of `url`, which `create_database` made on `server`, connections and all."""
    await _sql(_admin_dsn(server), f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@contextmanager
def scratch_database(tmp: Path | None) -> Iterator[str | None]:
    """A database of this run's own (a `postgresql://` URL), dropped at the end: created on the server
    of OSIRIS_BENCH_DATABASE_URL, else of OSIRIS_TEST_DATABASE_URL. Without either, an embedded
    PostgreSQL under `tmp`; or None when `tmp` is None (the bench's servers then run their own)."""
    server = os.environ.get("OSIRIS_BENCH_DATABASE_URL") or os.environ.get("OSIRIS_TEST_DATABASE_URL")
    if not server:
        if tmp is None:
            yield None
            return
        from osiris.app.db import EmbeddedPostgres

        embedded = EmbeddedPostgres(tmp)
        try:
            yield make_url(embedded.start()).set(drivername="postgresql").render_as_string(False)
        finally:
            embedded.stop()
        return
    url = asyncio.run(create_database(server, "osiris_bench"))
    try:
        yield url.set(drivername="postgresql").render_as_string(hide_password=False)
    finally:
        asyncio.run(drop_database(server, url))


async def seed_tasks(dsn: str, n: int, title: str, *, replace: bool = False) -> int:
    """`n` pending tasks in the first organization's default repository, priorities 0 to 3 in turn,
    straight into the table (through the API it would take minutes); with `replace`, instead of every
    task there was. Returns the organization's id."""
    conn = await asyncpg.connect(dsn)
    try:
        org = await conn.fetchval("SELECT id FROM organizations ORDER BY id LIMIT 1")
        if replace:
            await conn.execute("DELETE FROM tasks")
        await conn.executemany(
            "INSERT INTO tasks (org_id, title, description, repo, base_branch, priority)"
            " VALUES ($1, $2, 'seeded by a bench', 'default', 'main', $3)",
            [(org, f"{title} {i}", i % 4) for i in range(n)],
        )
        return org
    finally:
        await conn.close()


# --- people -----------------------------------------------------------------------------------------


async def admin_headers(http: httpx.AsyncClient, password: str = ADMIN_PASSWORD) -> dict[str, str]:
    """Signed in as the admin `osiris serve` made at its first start (OSIRIS_ADMIN_PASSWORD)."""
    r = await http.post("/api/v1/auth/token", data={"username": "admin", "password": password})
    return {"Authorization": f"Bearer {r.raise_for_status().json()['access_token']}"}


async def new_member(
    http: httpx.AsyncClient, admin: dict[str, str], name: str, role: str = "agent"
) -> tuple[str, int]:
    """A new user made by the admin over REST, and an API token of theirs: (token, user id)."""
    r = await http.post("/api/v1/users", json={"username": name, "role": role}, headers=admin)
    user_id = r.raise_for_status().json()["id"]
    r = await http.post("/api/v1/tokens", json={"name": "bench", "username": name}, headers=admin)
    return r.raise_for_status().json()["token"], user_id


async def agent_tokens(http: httpx.AsyncClient, admin: dict[str, str], n: int) -> list[str]:
    """`n` agents (bench-agent-0, -1, ...) and a token of each."""
    return [(await new_member(http, admin, f"bench-agent-{i}"))[0] for i in range(n)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
