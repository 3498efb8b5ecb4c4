"""`osiris serve --workers 2` on the embedded default: one database, one admin, two processes serving."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import psutil

from bench._server import free_port, serving


def test_two_worker_processes_share_one_embedded_database(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_") and k != "DATABASE_URL"}
    env |= {"OSIRIS_DATA_DIR": str(tmp_path / "data"), "OSIRIS_PORT": str(port)}
    stderr = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "osiris.cli", "serve", "--workers", "2"]
    with serving(cmd, url, ready="/readyz", env=env, log=stderr) as (proc, _):
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "postgres" not in p.name()]
        assert len(workers) >= 2, [p.cmdline() for p in workers]
        # Both workers started on a new folder together; the admin was created once, not twice.
        time.sleep(1)
        log = stderr.read_text()
        assert log.count("OSIRIS admin account created") == 1, log[-3000:]
        password = log.split("export OSIRIS_ADMIN_PASSWORD=", 1)[1].split("\n", 1)[0]
        assert (tmp_path / "data" / "admin-password").read_text() == password + "\n"
        jwt = httpx.post(url + "/api/v1/auth/token", data={"username": "admin", "password": password})
        headers = {"Authorization": f"Bearer {jwt.raise_for_status().json()['access_token']}"}
        # Fresh connections land on either process; each answers from the same data.
        created = httpx.post(url + "/api/v1/tasks", json={"title": "from worker A or B"}, headers=headers)
        task_id = created.raise_for_status().json()["id"]
        for _ in range(20):
            with httpx.Client(base_url=url, timeout=10) as client:
                assert client.get(f"/api/v1/tasks/{task_id}", headers=headers).json()["id"] == task_id
    assert proc.returncode == 0, stderr.read_text()[-3000:]
    # the shared postmaster went away with the last worker
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
