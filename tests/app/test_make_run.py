"""`make run` on the embedded default: its own PostgreSQL, migrated, serving; the CLI beside it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, limit: float = 90) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server never became ready")


def _env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OSIRIS_DATABASE_URL")}
    return env | {
        "OSIRIS_DATA_DIR": str(data_dir),
        "OSIRIS_PORT": str(port),
        "OSIRIS_ADMIN_PASSWORD": "smoke-test-pw",
    }


def _make_run(data: Path, port: int, *, stderr: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["make", "-s", "run"],
        cwd=ROOT,
        env=_env(data, port),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def test_make_run_serves_the_embedded_default_and_keeps_data(tmp_path):
    port = _free_port()
    data = tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    proc = _make_run(data, port, stderr=subprocess.PIPE)
    try:
        _wait_ready(url, proc)
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
    finally:
        _stop(proc)
    log = proc.stderr.read().decode()
    assert "Application shutdown complete" in log, log[-3000:]
    # the embedded PostgreSQL was stopped with the server, not left running
    assert not (data / "pg" / "postmaster.pid").exists()

    proc = _make_run(data, port, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(url, proc)
        tasks = httpx.get(url + "/api/v1/tasks", headers=headers).json()["items"]
        assert [t["title"] for t in tasks] == ["survives a restart"]
    finally:
        _stop(proc)
