"""Pre-review check overhead: what OSIRIS adds around a check command.

Starts a real `osiris serve` (embedded PostgreSQL, local git host, in-process worker) whose default
repository has one check, submits N versions one after another, and for each takes

    overhead = (checks_completed event − published event) − the command's own measured time

i.e. the job pick-up, reading the configuration, exporting the commit into a throw-away copy, setting up the sandbox
(namespaces, hidden paths, another uid), starting the process
with its clean environment, and recording the result with its events (the time from submit to
published is the publish job, measured by bench/github_sync.py). Prints p50/p95/max; goal p95 < 300 ms.

    .venv/bin/python bench/checks.py [--runs 20] [--command "sleep 0.1"]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import running_server  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"


def _at(event: dict) -> float:
    return datetime.fromisoformat(event["created_at"]).timestamp()


async def one_version(
    client: httpx.AsyncClient, agent: dict, admin: dict, n: int
) -> tuple[float, float, float]:
    task = (await client.post("/api/v1/tasks", json={"title": f"bench {n}"}, headers=admin)).json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task}/claim", headers=agent)).status_code == 200
    body = {"content": {f"bench/file-{n}.txt": f"version {n}\n"}, "kind": "files"}
    r = await client.post(f"/api/v1/tasks/{task}/artifacts", json=body, headers=agent)
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = (await client.get(f"/api/v1/tasks/{task}/events", headers=admin)).json()
        done = [e for e in events if e["kind"] == "checks_completed"]
        if done:
            published = next(e for e in events if e["kind"] == "published")
            runs = (await client.get(f"/api/v1/tasks/{task}/checks", headers=admin)).json()
            own = sum(res["duration_ms"] for res in runs[0]["results"]) / 1000
            assert runs[0]["status"] == "passed", runs[0]
            total = _at(done[0]) - _at(published)
            return total - own, total, own
        await asyncio.sleep(0.02)
    raise RuntimeError(f"task {task}: no check result within 60 s")


async def bench(url: str, runs: int) -> list[tuple[float, float, float]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        r = await client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
        admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
        await client.post("/api/v1/users", json={"username": "bench-agent", "role": "agent"}, headers=admin)
        r = await client.post(
            "/api/v1/tokens", json={"name": "bench", "username": "bench-agent"}, headers=admin
        )
        agent = {"Authorization": f"Bearer {r.json()['token']}"}
        await one_version(client, agent, admin, 0)  # warm-up: first copy, first job
        return [await one_version(client, agent, admin, n) for n in range(1, runs + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--command", default="sleep 0.1")
    parser.add_argument("--json", type=Path, help="also write the key numbers here (bench/report.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="osiris-bench-checks-") as tmp:
        env = {
            "OSIRIS_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "OSIRIS_CHECKS": json.dumps({"default": [args.command]}),
            "OSIRIS_CHECKS_MODE": json.dumps({"default": "block"}),
        }
        with running_server(Path(tmp) / "data", env=env) as (url, _proc, _):
            results = asyncio.run(bench(url, args.runs))
    overhead = sorted(r[0] * 1000 for r in results)
    totals = [r[1] * 1000 for r in results]
    own = [r[2] * 1000 for r in results]
    p95 = statistics.quantiles(overhead, n=20)[18] if len(overhead) > 1 else overhead[0]
    print(f"check command: {args.command!r}, {len(results)} versions")
    print(f"published -> result recorded: median {statistics.median(totals):.0f} ms")
    print(f"the command's own time:       median {statistics.median(own):.0f} ms")
    print(
        f"OSIRIS overhead: p50 {statistics.median(overhead):.0f} ms, p95 {p95:.0f} ms, "
        f"max {overhead[-1]:.0f} ms (goal p95 < 300 ms)"
    )
    if args.json:
        summary = {
            "name": f"pre-review check overhead ({args.command!r})",
            "baseline_label": "the command's own time, median",
            "baseline": round(statistics.median(own)),
            "osiris_label": "OSIRIS overhead, p95",
            "osiris": round(p95),
            "ratio": round(p95 / statistics.median(own), 2),
            "unit": "ms",
            "goal": "overhead p95 < 300 ms",
            "notes": f"{len(results)} versions; overhead p50 {statistics.median(overhead):.0f} ms",
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
