"""An agent dies holding a claim: the real sweeper of a real server returns the task when the lease
runs out, another agent takes it, and the late agent's submission is refused with `not_your_task`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from .reliability_helpers import agent_token, claimed_task, running_server


def test_a_dead_agents_claim_expires_and_its_late_submission_is_refused(server_env, record_property):
    env = server_env | {"OSIRIS_LEASE_SECONDS": "2", "OSIRIS_SWEEP_INTERVAL_SECONDS": "0.25"}
    with running_server(Path(server_env["OSIRIS_DATA_DIR"]), env=env) as (url, _proc, _):
        password = env["OSIRIS_ADMIN_PASSWORD"]
        dead = {"Authorization": f"Bearer {agent_token(url, password, 'dies')}"}
        alive = {"Authorization": f"Bearer {agent_token(url, password, 'lives')}"}
        task = claimed_task(url, dead, "held by an agent that dies")
        claimed_at = time.monotonic()
        # the agent dies: no heartbeat, no release. The sweeper, not a test hook, must notice.
        while (state := httpx.get(f"{url}/api/v1/tasks/{task}", headers=alive).json())["status"] != "PENDING":
            assert time.monotonic() - claimed_at < 15, state
            time.sleep(0.1)
        assert state["assignee_id"] is None
        assert time.monotonic() - claimed_at >= 1.5  # not before the lease ran out
        record_property("lease", "2 s")
        record_property("back in PENDING after", f"{time.monotonic() - claimed_at:.1f} s")
        events = httpx.get(f"{url}/api/v1/tasks/{task}/events", headers=alive).json()
        expiry = events[-1]
        assert (expiry["kind"], expiry["from_status"], expiry["to_status"]) == (
            "expire",
            "IN_PROGRESS",
            "PENDING",
        )

        assert httpx.post(f"{url}/api/v1/tasks/{task}/claim", headers=alive).status_code == 200
        late = {"content": {"late.txt": "too late\n"}, "idempotency_key": "late-1"}
        r = httpx.post(f"{url}/api/v1/tasks/{task}/artifacts", json=late, headers=dead)
        assert r.status_code == 403 and r.json()["code"] == "not_your_task", r.text
        r = httpx.post(f"{url}/api/v1/tasks/{task}/heartbeat", headers=dead)
        assert r.status_code == 403 and r.json()["code"] == "not_your_task", r.text
        r = httpx.post(f"{url}/api/v1/tasks/{task}/release", headers=dead)
        assert r.status_code == 403 and r.json()["code"] == "not_your_task", r.text
        # the new holder is untouched: still holds it, no version was stored
        detail = httpx.get(f"{url}/api/v1/tasks/{task}", headers=alive).json()
        assert detail["status"] == "IN_PROGRESS" and detail["artifacts"] == []
