"""Helpers of the reliability suite: the git host's refs and a claimed task on a live server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # for bench._server, the benchmarks' server starter, shared rather than copied

from bench._server import running_server  # noqa: E402

__all__ = ["agent_token", "claimed_task", "git", "running_server"]


def git(data_dir: Path, *args: str) -> str:
    repo = data_dir / "repos" / "default.git"
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def claimed_task(url: str, headers: dict[str, str], title: str) -> int:
    r = httpx.post(url + "/api/v1/tasks", json={"title": title}, headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    task = r.json()["id"]
    assert httpx.post(f"{url}/api/v1/tasks/{task}/claim", headers=headers, timeout=10).status_code == 200
    return task


def agent_token(url: str, admin_password: str, name: str) -> str:
    """A new agent and its token, made the way an operator would: as the admin, over REST."""
    login = {"username": "admin", "password": admin_password}
    jwt = httpx.post(url + "/api/v1/auth/token", data=login, timeout=10).json()["access_token"]
    admin = {"Authorization": f"Bearer {jwt}"}
    r = httpx.post(url + "/api/v1/users", json={"username": name, "role": "agent"}, headers=admin, timeout=10)
    assert r.status_code == 201, r.text
    r = httpx.post(url + "/api/v1/tokens", json={"name": name, "username": name}, headers=admin, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["token"]
