"""MCP vs REST latency for what agents do most: read the queue and claim a task.

Starts `osiris serve` on a loopback port against a private database, creates agents and tasks through
the REST API, then measures p50/p95 of `read_pending_tasks` and `claim_task` through the official MCP
client (streamable HTTP, one session per agent) against the same operations through REST (one HTTP
client per agent), with 1 and with 50 agents at once. Prints the numbers and the MCP/REST ratios of
this one run; nothing is asserted (the goal is MCP <= 2x REST).

    OSIRIS_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/mcp.py

Without a database URL (OSIRIS_BENCH_DATABASE_URL, else OSIRIS_TEST_DATABASE_URL) it runs the embedded
PostgreSQL in a temporary folder. The whole run is bounded by --deadline seconds.
"""

# ruff: noqa: E402 - sys.path must be fixed before the SDK is imported (see below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where this very file would hide the `mcp` SDK.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import httpx
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY
from sqlalchemy.engine import make_url

ADMIN_PASSWORD = "bench-admin-password"
ROWS: list[dict] = []  # every printed row, for --json


@dataclass
class Timings:
    samples: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) * 1000


# --- the server ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def private_database(tmp: Path) -> AsyncIterator[str]:
    server = os.environ.get("OSIRIS_BENCH_DATABASE_URL") or os.environ.get("OSIRIS_TEST_DATABASE_URL")
    if not server:
        from osiris.app.db import EmbeddedPostgres

        embedded = EmbeddedPostgres(tmp)
        try:
            yield embedded.start()
        finally:
            embedded.stop()
        return
    base = make_url(server)
    name = f"osiris_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@contextlib.asynccontextmanager
async def osiris_server(database_url: str, tmp: Path) -> AsyncIterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OSIRIS_SECRET_KEY": secrets.token_urlsafe(32),
        "OSIRIS_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "OSIRIS_DATA_DIR": str(tmp / "data"),
        "OSIRIS_PUBLIC_URL": url,
        "OSIRIS_RUN_WORKER": "false",  # measure the request path, not publishing jobs
        "OSIRIS_LOG_LEVEL": "WARNING",
        "OSIRIS_LOGIN_RATE_PER_MINUTE": "1000",
    }
    log = (tmp / "server.log").open("w")
    cmd = [sys.executable, "-m", "osiris.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited; see {tmp / 'server.log'}")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the server did not become ready in 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --- setting up agents and tasks ----------------------------------------------------------------


async def make_agents(http: httpx.AsyncClient, admin: dict[str, str], n: int) -> list[str]:
    tokens = []
    for i in range(n):
        name = f"bench-agent-{i}"
        r = await http.post("/api/v1/users", json={"username": name, "role": "agent"}, headers=admin)
        r.raise_for_status()
        r = await http.post("/api/v1/tokens", json={"name": "bench", "username": name}, headers=admin)
        r.raise_for_status()
        tokens.append(r.json()["token"])
    return tokens


async def make_tasks(http: httpx.AsyncClient, admin: dict[str, str], n: int, label: str) -> list[int]:
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> int:
        async with sem:
            body = {"title": f"{label} {i}", "description": "benchmark task", "priority": "normal"}
            r = await http.post("/api/v1/tasks", json=body, headers=admin)
            r.raise_for_status()
            return r.json()["id"]

    return list(await asyncio.gather(*(one(i) for i in range(n))))


# --- the two kinds of agent -----------------------------------------------------------------------


class RestAgent:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    async def read_pending(self) -> None:
        (await self.http.get("/api/v1/tasks/pending", params={"limit": 20})).raise_for_status()

    async def claim(self, task_id: int) -> None:
        (await self.http.post(f"/api/v1/tasks/{task_id}/claim")).raise_for_status()

    async def claim_and_read(self, task_id: int) -> None:
        """What claim_task returns in one call takes two over REST: the claim and the task's detail."""
        await self.claim(task_id)
        (await self.http.get(f"/api/v1/tasks/{task_id}")).raise_for_status()

    async def close(self) -> None:
        await self.http.aclose()


class McpAgent:
    def __init__(self, url: str, token: str) -> None:
        self.http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        self.client = Client(streamable_http_client(f"{url}/mcp", http_client=self.http))

    async def __aenter__(self) -> McpAgent:
        await self.http.__aenter__()
        await self.client.__aenter__()
        await self.client.list_tools()  # what a real client does first; caches the output schemas
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)
        await self.http.__aexit__(None, None, None)

    async def _call(self, name: str, args: dict) -> None:
        result = await self.client.call_tool(name, args)
        if result.is_error:
            raise RuntimeError(f"{name} failed: {result.content}")

    async def read_pending(self) -> None:
        await self._call("read_pending_tasks", {"limit": 20})

    async def claim(self, task_id: int) -> None:
        await self._call("claim_task", {"task_id": task_id})


class WireAgent:
    """MCP without the SDK client: the same JSON-RPC POSTs, no result validation on our side.

    Separates what the protocol costs the server from what the Python client spends validating each
    result against the tool's output schema."""

    VERSION = "2026-07-28"

    def __init__(self, url: str, token: str) -> None:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": self.VERSION,
            "Mcp-Method": "tools/call",
        }
        self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=60)
        self.ids = 0

    async def _call(self, name: str, args: dict) -> None:
        self.ids += 1
        meta = {PROTOCOL_VERSION_META_KEY: self.VERSION, CLIENT_CAPABILITIES_META_KEY: {}}
        body = {
            "jsonrpc": "2.0",
            "id": self.ids,
            "method": "tools/call",
            "params": {"name": name, "arguments": args, "_meta": meta},
        }
        r = await self.http.post("/mcp", json=body, headers={"Mcp-Name": name})
        r.raise_for_status()
        if r.json()["result"].get("isError"):
            raise RuntimeError(f"{name} failed: {r.text[:300]}")

    async def read_pending(self) -> None:
        await self._call("read_pending_tasks", {"limit": 20})

    async def claim(self, task_id: int) -> None:
        await self._call("claim_task", {"task_id": task_id})

    async def close(self) -> None:
        await self.http.aclose()


# --- measuring ----------------------------------------------------------------------------------


async def measure(
    agents: list, op: Callable[[object, int | None], Awaitable[None]], per_agent: int, deadline: float
) -> Timings:
    timings = Timings()

    async def run(agent: object, ids: list[int | None]) -> None:
        for task_id in ids:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            await op(agent, task_id)
            timings.samples.append(time.perf_counter() - start)

    await asyncio.gather(*(run(a, [None] * per_agent) for a in agents))
    return timings


async def measure_claims(
    agents: list, op: Callable[[object, int], Awaitable[None]], tasks: list[int], deadline: float
) -> Timings:
    timings = Timings()
    queue = list(reversed(tasks))

    async def run(agent: object) -> None:
        while queue and time.monotonic() < deadline:
            task_id = queue.pop()
            start = time.perf_counter()
            await op(agent, task_id)
            timings.samples.append(time.perf_counter() - start)

    await asyncio.gather(*(run(a) for a in agents))
    return timings


async def measure_round(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: int,
    rest_agents: list[RestAgent],
    mcp_agents: list[McpAgent],
    wire_agents: list[WireAgent],
    args: argparse.Namespace,
    deadline: float,
) -> None:
    per_agent = max(1, args.reads // sessions)
    # warm both paths (connections, pools, caches) before measuring
    await measure(rest_agents, lambda a, _: a.read_pending(), 2, deadline)
    await measure(mcp_agents, lambda a, _: a.read_pending(), 2, deadline)
    await measure(wire_agents, lambda a, _: a.read_pending(), 2, deadline)
    rest = await measure(rest_agents, lambda a, _: a.read_pending(), per_agent, deadline)
    mcp = await measure(mcp_agents, lambda a, _: a.read_pending(), per_agent, deadline)
    wire = await measure(wire_agents, lambda a, _: a.read_pending(), per_agent, deadline)
    print(row("read_pending_tasks", sessions, rest, mcp), flush=True)
    print(row("  MCP wire, no SDK", sessions, rest, wire), flush=True)

    claims = max(sessions, args.claims)
    rest_ids = await make_tasks(http, admin, claims, "rest-claim")
    mcp_ids = await make_tasks(http, admin, claims, "mcp-claim")
    both_ids = await make_tasks(http, admin, claims, "rest-claim-get")
    wire_ids = await make_tasks(http, admin, claims, "wire-claim")
    rest = await measure_claims(rest_agents, lambda a, t: a.claim(t), rest_ids, deadline)
    mcp = await measure_claims(mcp_agents, lambda a, t: a.claim(t), mcp_ids, deadline)
    wire = await measure_claims(wire_agents, lambda a, t: a.claim(t), wire_ids, deadline)
    print(row("claim_task", sessions, rest, mcp), flush=True)
    print(row("  MCP wire, no SDK", sessions, rest, wire), flush=True)
    both = await measure_claims(rest_agents, lambda a, t: a.claim_and_read(t), both_ids, deadline)
    print(row("  vs REST claim+get", sessions, both, mcp), flush=True)


def row(name: str, sessions: int, rest: Timings, mcp: Timings) -> str:
    r50, r95, m50, m95 = rest.p50, rest.pct(0.95), mcp.p50, mcp.pct(0.95)
    ROWS.append(
        {"op": name.strip(), "sessions": sessions, "rest_p50": r50, "mcp_p50": m50, "p95_ratio": m95 / r95}
    )
    return (
        f"{name:<22}{sessions:>8}{len(mcp.samples):>6}{r50:>10.1f}{r95:>10.1f}{m50:>10.1f}{m95:>10.1f}"
        f"{m50 / r50:>9.2f}x{m95 / r95:>9.2f}x"
    )


async def run(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.deadline
    with tempfile.TemporaryDirectory(prefix="osiris-bench-") as tmpdir:
        tmp = Path(tmpdir)
        async with private_database(tmp) as database_url, osiris_server(database_url, tmp) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                r = await http.post(
                    "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
                )
                r.raise_for_status()
                admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
                most = max(args.sessions)
                tokens = await make_agents(http, admin, most)
                await make_tasks(http, admin, args.backlog, "backlog")

                print(f"OSIRIS MCP vs REST, loopback {url}; times in ms; ratio = MCP / REST")
                print(
                    f"{'operation':<22}{'sessions':>8}{'n':>6}{'REST p50':>10}{'REST p95':>10}"
                    f"{'MCP p50':>10}{'MCP p95':>10}{'p50':>10}{'p95':>10}"
                )
                for sessions in args.sessions:
                    rest_agents = [RestAgent(url, t) for t in tokens[:sessions]]
                    wire_agents = [WireAgent(url, t) for t in tokens[:sessions]]
                    # An exit stack closes the MCP sessions in reverse order, as their task groups need.
                    async with contextlib.AsyncExitStack() as stack:
                        for agent in [*rest_agents, *wire_agents]:
                            stack.push_async_callback(agent.close)
                        mcp_agents = [
                            await stack.enter_async_context(McpAgent(url, t)) for t in tokens[:sessions]
                        ]
                        await measure_round(
                            http, admin, sessions, rest_agents, mcp_agents, wire_agents, args, deadline
                        )
                if time.monotonic() > deadline:
                    print(f"(stopped at the {args.deadline:.0f} s deadline: fewer samples than asked)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 50], help="concurrent agents per round")
    p.add_argument("--reads", type=int, default=500, help="read_pending_tasks calls per round")
    p.add_argument("--claims", type=int, default=200, help="claims per round")
    p.add_argument("--backlog", type=int, default=100, help="pending tasks in the queue while reading")
    p.add_argument("--deadline", type=float, default=240.0, help="stop measuring after this many seconds")
    p.add_argument("--json", type=Path, help="also write the key numbers here (bench/report.py)")
    args = p.parse_args()
    asyncio.run(run(args))
    if args.json:
        most = max(r["sessions"] for r in ROWS)
        main_row = next(r for r in ROWS if r["op"] == "claim_task" and r["sessions"] == most)
        summary = {
            "name": f"MCP vs REST latency, claim_task p50 at {most} agents",
            "baseline_label": "REST",
            "baseline": round(main_row["rest_p50"], 1),
            "osiris_label": "MCP (official client)",
            "osiris": round(main_row["mcp_p50"], 1),
            "ratio": round(main_row["mcp_p50"] / main_row["rest_p50"], 2),
            "unit": "ms",
            "goal": "MCP <= 2x REST",
            "notes": "; ".join(
                f"{r['op']} @{r['sessions']}: p50 {r['mcp_p50'] / r['rest_p50']:.2f}x, p95 {r['p95_ratio']:.2f}x"
                for r in ROWS
            ),
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
