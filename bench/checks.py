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

import asyncio
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from _server import admin_headers, arguments, bearer, new_member, percentile_ms, running_server, write_summary


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
        admin = await admin_headers(client)
        agent = bearer((await new_member(client, admin, "bench-agent"))[0])
        await one_version(client, agent, admin, 0)  # warm-up: first copy, first job
        return [await one_version(client, agent, admin, n) for n in range(1, runs + 1)]


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--command", default="sleep 0.1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="osiris-bench-checks-") as tmp:
        env = {
            "OSIRIS_CHECKS": json.dumps({"default": [args.command]}),
            "OSIRIS_CHECKS_MODE": json.dumps({"default": "block"}),
        }
        with running_server(Path(tmp) / "data", env=env) as (url, _proc, _):
            results = asyncio.run(bench(url, args.runs))
    overhead, totals, own = ([r[i] for r in results] for i in range(3))
    p50, p95, own_p50 = percentile_ms(overhead, 0.5), percentile_ms(overhead, 0.95), percentile_ms(own, 0.5)
    print(f"check command: {args.command!r}, {len(results)} versions")
    print(f"published -> result recorded: median {percentile_ms(totals, 0.5):.0f} ms")
    print(f"the command's own time:       median {own_p50:.0f} ms")
    print(
        f"OSIRIS overhead: p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"max {percentile_ms(overhead, 1):.0f} ms (goal p95 < 300 ms)"
    )
    write_summary(
        args.json,
        name=f"pre-review check overhead ({args.command!r})",
        baseline_label="the command's own time, median",
        baseline=round(own_p50),
        osiris_label="OSIRIS overhead, p95",
        osiris=round(p95),
        ratio=round(p95 / own_p50, 2),
        unit="ms",
        goal="overhead p95 < 300 ms",
        notes=f"{len(results)} versions; overhead p50 {p50:.0f} ms",
    )


if __name__ == "__main__":
    main()
