"""Claim throughput: N agents claiming through the REST API vs a raw asyncpg SKIP LOCKED loop.

Both run against the same embedded PostgreSQL in one run, so the ratio is what matters:
    .venv/bin/python bench/claim.py [--agents 50] [--tasks 3000] [--workers 2]
--workers runs `osiris serve --workers N` (N server processes on the one database).
Goal: API ≥ 30 % of raw SQL, claim p95 < 25 ms at 50 agents (2-core machine). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import running_server  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"
RAW_CLAIM = """
UPDATE tasks SET status = 'IN_PROGRESS', assignee_id = $1, lease_expires_at = now() + interval '10 minutes'
WHERE id = (SELECT id FROM tasks WHERE status = 'PENDING' ORDER BY priority DESC, id
            LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id
"""


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


async def seed(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    org = await conn.fetchval("SELECT id FROM organizations ORDER BY id LIMIT 1")
    await conn.execute("DELETE FROM tasks")
    await conn.executemany(
        "INSERT INTO tasks (org_id, title, repo, base_branch, priority) VALUES ($1, $2, 'default', 'main', $3)",
        [(org, f"bench {i}", i % 4) for i in range(n)],
    )
    await conn.close()


async def make_agents(url: str, n: int) -> list[str]:
    """n agent users and tokens through the admin API (one CLI call each would take minutes)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        r = await client.post("/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
        admin = {"Authorization": f"Bearer {r.raise_for_status().json()['access_token']}"}
        tokens = []
        for i in range(n):
            name = f"bench-agent-{i}"
            await client.post("/api/v1/users", json={"username": name, "role": "agent"}, headers=admin)
            r = await client.post("/api/v1/tokens", json={"name": "bench", "username": name}, headers=admin)
            tokens.append(r.raise_for_status().json()["token"])
        return tokens


async def api_run(url: str, tokens: list[str]) -> tuple[int, float, list[float]]:
    """Agents claiming through the REST API; aiohttp keeps the client's own cost small."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=len(tokens))
    async with aiohttp.ClientSession(url, connector=connector) as client:

        async def agent(token: str) -> int:
            n, headers = 0, {"Authorization": f"Bearer {token}"}
            while True:
                t = time.perf_counter()
                async with client.post("/api/v1/tasks/claim-next", headers=headers) as r:
                    await r.read()
                    latencies.append(time.perf_counter() - t)
                    if r.status == 204:
                        return n
                    r.raise_for_status()
                n += 1

        start = time.perf_counter()
        counts = await asyncio.gather(*(agent(t) for t in tokens))
        return sum(counts), time.perf_counter() - start, latencies


async def raw_run(dsn: str, agents: int) -> tuple[int, float, list[float]]:
    pool = await asyncpg.create_pool(dsn, min_size=agents, max_size=agents)
    latencies: list[float] = []
    user = await pool.fetchval("SELECT id FROM users ORDER BY id LIMIT 1")

    async def agent() -> int:
        n = 0
        while True:
            t = time.perf_counter()
            async with pool.acquire() as conn:
                got = await conn.fetchval(RAW_CLAIM, user)
            latencies.append(time.perf_counter() - t)
            if got is None:
                return n
            n += 1

    start = time.perf_counter()
    counts = await asyncio.gather(*(agent() for _ in range(agents)))
    elapsed = time.perf_counter() - start
    await pool.close()
    return sum(counts), elapsed, latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=1, help="osiris serve --workers N")
    ap.add_argument("--json", type=Path, help="also write the key numbers here (bench/report.py)")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="osiris-bench-"))
    env = {"OSIRIS_ADMIN_PASSWORD": ADMIN_PASSWORD, "OSIRIS_WORKERS": str(args.workers)}
    with running_server(data, env=env) as (url, _proc, _):
        tokens = asyncio.run(make_agents(url, args.agents))
        dsn = f"postgresql://postgres@/postgres?host={(data / 'pg').resolve()}"
        asyncio.run(seed(dsn, args.tasks))
        api_n, api_s, api_lat = asyncio.run(api_run(url, tokens))
        asyncio.run(seed(dsn, args.tasks))
        raw_n, raw_s, raw_lat = asyncio.run(raw_run(dsn, args.agents))
    api_rate, raw_rate = api_n / api_s, raw_n / raw_s
    print(f"agents={args.agents} tasks={args.tasks} server processes={args.workers}")
    print(
        f"REST API : {api_n} claims in {api_s:.2f}s = {api_rate:8.0f}/s  p50 {pct(api_lat, 50):.1f} ms  p95 {pct(api_lat, 95):.1f} ms"
    )
    print(
        f"raw SQL  : {raw_n} claims in {raw_s:.2f}s = {raw_rate:8.0f}/s  p50 {pct(raw_lat, 50):.1f} ms  p95 {pct(raw_lat, 95):.1f} ms"
    )
    print(f"ratio API/raw = {api_rate / raw_rate:.2f} (goal >= 0.30); API p95 goal < 25 ms")
    if args.json:
        summary = {
            "name": f"claims/s, {args.agents} agents, REST API ({args.workers} process) vs raw SQL",
            "baseline_label": "raw asyncpg SKIP LOCKED",
            "baseline": round(raw_rate),
            "osiris_label": "REST claim-next",
            "osiris": round(api_rate),
            "ratio": round(api_rate / raw_rate, 2),
            "unit": "claims/s",
            "goal": "ratio >= 0.30, API p95 < 25 ms",
            "notes": f"API p95 {pct(api_lat, 95):.1f} ms; {args.tasks} tasks",
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
