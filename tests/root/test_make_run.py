"""`make run` on the embedded default: its own PostgreSQL, migrated, serving; the CLI beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from bench._server import free_port, serving

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OSIRIS_DATABASE_URL")}
    return env | {
        "OSIRIS_DATA_DIR": str(data_dir),
        "OSIRIS_PORT": str(port),
        "OSIRIS_ADMIN_PASSWORD": "smoke-test-pw",
    }


def _make_run(data: Path, port: int, log: Path | None = None):
    """`make -s run` until /readyz answers; stopped (its whole process group) at the end."""
    url = f"http://127.0.0.1:{port}"
    return serving(["make", "-s", "run"], url, ready="/readyz", env=_env(data, port), log=log, cwd=ROOT)


def test_make_run_serves_the_embedded_default_and_keeps_data(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "make-run.log"
    with _make_run(data, port, log):
        # the CLI works while the server runs on the same data dir; the token is alone on stdout
        out = subprocess.run(
            [sys.executable, "-m", "osiris.cli", "token", "create", "smoke-bot"],
            env=_env(data, port),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        token = out.stdout.strip()
        assert token.startswith("osr_") and "\n" not in token
        headers = {"Authorization": f"Bearer {token}"}
        r = httpx.post(url + "/api/v1/tasks", json={"title": "survives a restart"}, headers=headers)
        assert r.status_code == 201, r.text
        r = httpx.post(url + "/api/v1/auth/token", data={"username": "admin", "password": "smoke-test-pw"})
        assert r.status_code == 200
    said = log.read_text()
    assert "Application shutdown complete" in said, said[-3000:]
    # the embedded PostgreSQL was stopped with the server, not left running
    assert not (data / "pg" / "postmaster.pid").exists()

    with _make_run(data, port):
        tasks = httpx.get(url + "/api/v1/tasks", headers=headers).json()["items"]
        assert [t["title"] for t in tasks] == ["survives a restart"]
