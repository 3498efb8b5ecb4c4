"""Start a real `osiris serve` in a subprocess for benchmarks (loopback only)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(data_dir: Path, *, env: dict[str, str] | None = None):
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = os.environ | {
        "OSIRIS_DATA_DIR": str(data_dir),
        "OSIRIS_PORT": str(port),
        "OSIRIS_LOG_LEVEL": "WARNING",
    }
    full_env |= env or {}
    proc = subprocess.Popen(
        [sys.executable, "-m", "osiris.cli", "serve"],
        env=full_env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "server.log").open("ab"),  # kept for when a run goes wrong
    )
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - start > 120:
                raise RuntimeError("server not ready in 120 s")
            time.sleep(0.05)
        yield url, proc, time.monotonic() - start
    finally:
        with contextlib.suppress(ProcessLookupError):  # a crash test may have killed it already
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


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


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
