"""Claim throughput: N agents claiming through the REST API vs a raw asyncpg SKIP LOCKED loop.

Both run against the same embedded PostgreSQL in one run, so the ratio is what matters:
    .venv/bin/python bench/claim.py [--agents 50] [--tasks 3000] [--workers 2]
--workers runs `osiris serve --workers N` (N server processes on the one database).
Goal: API ≥ 30 % of raw SQL, claim p95 < 25 ms at 50 agents (2-core machine). Loopback only.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import httpx
from _server import (
    admin_headers,
    agent_tokens,
    arguments,
    cpu_seconds,
    embedded_dsn,
    percentile_ms,
    running_server,
    seed_tasks,
    write_summary,
)

RAW_CLAIM = """
UPDATE tasks SET status = 'IN_PROGRESS', assignee_id = $1, lease_expires_at = now() + interval '10 minutes'
WHERE id = (SELECT id FROM tasks WHERE status = 'PENDING' ORDER BY priority DESC, id
            LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id
"""


async def make_agents(url: str, n: int) -> list[str]:
    """n agent users and tokens through the admin API (one CLI call each would take minutes)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await agent_tokens(client, await admin_headers(client), n)


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


async def statement_run(dsn: str, agents: int) -> tuple[int, float]:
    """OSIRIS's own claim (lifecycle's autocommit claim: routing rules, the event, the announcement
    after commit) on the engine the server uses, one agent per connection, no HTTP: the ceiling the
    API can reach."""
    from sqlalchemy.engine import make_url

    from osiris.app import db, lifecycle
    from osiris.app.actors import Actor
    from osiris.app.config import Settings
    from osiris.app.models import Role
    from osiris.app.routing import Aging

    url = make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    settings = Settings(
        db={"url": url, "pool_size": agents + 2, "max_overflow": 0}, auth={"secret_key": "bench-" * 8}
    )
    engine = db.make_engine(url, settings)
    sessions = db.make_sessionmaker(engine)
    pool = await asyncpg.connect(dsn)
    rows = await pool.fetch("SELECT id, org_id, username FROM users WHERE role = 'agent' ORDER BY id")
    await pool.close()
    aging = Aging.of(settings)

    async def agent(user: asyncpg.Record) -> int:
        actor = Actor(org_id=user["org_id"], user_id=user["id"], name=user["username"], role=Role.AGENT)
        n = 0
        async with sessions() as session:
            while await lifecycle.claim_next_autocommit(
                engine, session, actor, lease_seconds=600, aging=aging
            ):
                n += 1
        return n

    start = time.perf_counter()
    counts = await asyncio.gather(*(agent(u) for u in rows[:agents]))
    elapsed = time.perf_counter() - start
    await engine.dispose()
    return sum(counts), elapsed


def main() -> None:
    ap = arguments(__doc__)
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=1, help="osiris serve --workers N")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="osiris-bench-"))
    with running_server(data, env={"OSIRIS_WORKERS": str(args.workers)}) as (url, proc, _):
        tokens = asyncio.run(make_agents(url, args.agents))
        dsn = embedded_dsn(data)
        asyncio.run(seed_tasks(dsn, args.tasks, "bench", replace=True))
        cpu_before = cpu_seconds(proc.pid)  # with --workers N: the supervisor only, not useful
        api_n, api_s, api_lat = asyncio.run(api_run(url, tokens))
        server_cpu_ms = (cpu_seconds(proc.pid) - cpu_before) / max(api_n, 1) * 1000
        asyncio.run(seed_tasks(dsn, args.tasks, "bench", replace=True))
        raw_n, raw_s, raw_lat = asyncio.run(raw_run(dsn, args.agents))
        asyncio.run(seed_tasks(dsn, args.tasks, "bench", replace=True))
        stmt_n, stmt_s = asyncio.run(statement_run(dsn, args.agents))
    api_rate, raw_rate, stmt_rate = api_n / api_s, raw_n / raw_s, stmt_n / stmt_s
    api_p95 = percentile_ms(api_lat, 0.95)
    print(f"agents={args.agents} tasks={args.tasks} server processes={args.workers}")
    print(
        f"REST API : {api_n} claims in {api_s:.2f}s = {api_rate:8.0f}/s  p50 {percentile_ms(api_lat, 0.5):.1f} ms  p95 {api_p95:.1f} ms"
    )
    print(
        f"raw SQL  : {raw_n} claims in {raw_s:.2f}s = {raw_rate:8.0f}/s  p50 {percentile_ms(raw_lat, 0.5):.1f} ms  p95 {percentile_ms(raw_lat, 0.95):.1f} ms"
    )
    print(
        f"statement: {stmt_n} claims in {stmt_s:.2f}s = {stmt_rate:8.0f}/s  (OSIRIS's claim SQL alone, no HTTP)"
    )
    print(f"ratio API/raw = {api_rate / raw_rate:.2f} (goal >= 0.30); API p95 goal < 25 ms")
    print(
        f"ratio statement/raw = {stmt_rate / raw_rate:.2f}: the most the API can reach here;"
        f" API/statement = {api_rate / stmt_rate:.2f}"
    )
    if args.workers == 1:
        print(f"server CPU per REST claim: {server_cpu_ms:.2f} ms")
    write_summary(
        args.json,
        name=f"claims/s, {args.agents} agents, REST API ({args.workers} process) vs raw SQL",
        baseline_label="raw asyncpg SKIP LOCKED",
        baseline=round(raw_rate),
        osiris_label="REST claim-next",
        osiris=round(api_rate),
        ratio=round(api_rate / raw_rate, 2),
        unit="claims/s",
        goal="ratio >= 0.30, API p95 < 25 ms",
        notes=f"API p95 {api_p95:.1f} ms; {args.tasks} tasks; OSIRIS's claim statement alone (no HTTP) "
        f"{round(stmt_rate):,} claims/s = {stmt_rate / raw_rate:.2f} of raw, the API {api_rate / stmt_rate:.2f} of it"
        + (f"; server CPU {server_cpu_ms:.2f} ms per claim" if args.workers == 1 else ""),
    )


if __name__ == "__main__":
    main()
