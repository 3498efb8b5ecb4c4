"""PostgreSQL stopped and started under traffic, on a cluster of this test's own (never the shared
server): /readyz goes 503, requests fail with a clear 503 `unavailable`, and OSIRIS recovers without a
restart — every acknowledged write kept, every job run."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import httpx
import pgserver
import pytest
from pgserver._commands import pg_ctl

from .reliability_helpers import agent_token, claimed_task, running_server


@pytest.fixture
def own_postgres():
    pgdata = Path(tempfile.mkdtemp(prefix="osr-pg-"))  # short: the socket lives in it
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    yield server
    server.cleanup()


class Traffic(threading.Thread):
    """An agent creating tasks as fast as it is answered; remembers what it was told."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.stop = threading.Event()
        self.created: list[int] = []
        self.refusals: list[tuple[int, str]] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=10) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                r = c.post("/api/v1/tasks", json={"title": f"traffic {n}"})
                if r.status_code == 201:
                    self.created.append(r.json()["id"])
                else:
                    self.refusals.append(
                        (r.status_code, r.headers.get("content-type", ""), r.json().get("code"))
                    )
                time.sleep(0.02)


def _wait(predicate, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _published(url: str, headers: dict[str, str], task: int) -> bool:
    versions = httpx.get(f"{url}/api/v1/tasks/{task}/artifacts", headers=headers, timeout=10).json()
    return bool(versions) and versions[0]["commit_sha"] is not None


def test_database_stopped_and_started_under_traffic(own_postgres, server_env, record_property):
    env = server_env | {"DATABASE_URL": own_postgres.get_uri()}
    with running_server(Path(env["OSIRIS_DATA_DIR"]), env=env) as (url, _proc, _):
        agent = {"Authorization": f"Bearer {agent_token(url, env['OSIRIS_ADMIN_PASSWORD'], 'bot')}"}

        before = claimed_task(url, agent, "submitted before the outage")
        body = {"content": {"before.txt": "1\n"}}
        assert (
            httpx.post(f"{url}/api/v1/tasks/{before}/artifacts", json=body, headers=agent).status_code == 201
        )
        traffic = Traffic(url, agent)
        traffic.start()
        time.sleep(0.5)

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=own_postgres.pgdata, user=own_postgres.system_user)
        down_at = time.monotonic()
        _wait(lambda: httpx.get(url + "/readyz").status_code == 503, 10, "/readyz never said 503")
        r = httpx.get(url + "/api/v1/tasks", headers=agent)
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json", r.text
        assert r.json()["code"] == "unavailable"
        time.sleep(1.0)  # traffic keeps coming while the database is away
        acknowledged_during_outage = len(traffic.created)

        own_postgres.ensure_postgres_running()
        _wait(lambda: httpx.get(url + "/readyz").status_code == 200, 20, "/readyz never recovered")
        recovered_after = time.monotonic() - down_at
        settled = len(traffic.created)
        _wait(lambda: len(traffic.created) >= settled + 20, 20, "requests did not succeed again")
        traffic.stop.set()
        traffic.join(10)

        # the job worker survived the outage: a submission made now is published
        after = claimed_task(url, agent, "submitted after the outage")
        body = {"content": {"after.txt": "2\n"}}
        assert (
            httpx.post(f"{url}/api/v1/tasks/{after}/artifacts", json=body, headers=agent).status_code == 201
        )
        _wait(lambda: _published(url, agent, after), 30, "the worker did not come back")
        assert _published(url, agent, before)

        # every acknowledged create is there; every refusal was a clean 503 `unavailable`
        listed = httpx.get(url + "/api/v1/tasks?limit=200", headers=agent).json()["items"]
        known = {t["id"] for t in listed}
        assert set(traffic.created) <= known
        assert traffic.refusals, "the outage refused nothing: did the database really stop?"
        assert {r for r in traffic.refusals} <= {(503, "application/problem+json", "unavailable")}
    record_property("readyz back after", f"{recovered_after:.1f} s")
    record_property("creates acknowledged, all kept", len(traffic.created))
    record_property("of them before the database came back", acknowledged_during_outage)
    record_property("refused with 503 unavailable", len(traffic.refusals))
