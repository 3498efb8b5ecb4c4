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

# ruff: noqa: E402 - the SDK may be imported only once bench/ is off sys.path
from __future__ import annotations

import _server

_server.use_repository_root()  # run as a script, bench/ is first on sys.path: this file would hide the SDK

import argparse
import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _server import (
    admin_headers,
    agent_tokens,
    arguments,
    percentile_ms,
    running_server,
    scratch_database,
    write_summary,
)
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

ROWS: list[dict] = []  # every printed row, for --json


@dataclass
class Timings:
    samples: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        return percentile_ms(self.samples, q)

    @property
    def p50(self) -> float:
        return self.pct(0.5)


# --- setting up agents and tasks ----------------------------------------------------------------


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


async def run(url: str, args: argparse.Namespace, deadline: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        admin = await admin_headers(http)
        tokens = await agent_tokens(http, admin, max(args.sessions))
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
                mcp_agents = [await stack.enter_async_context(McpAgent(url, t)) for t in tokens[:sessions]]
                await measure_round(
                    http, admin, sessions, rest_agents, mcp_agents, wire_agents, args, deadline
                )
        if time.monotonic() > deadline:
            print(f"(stopped at the {args.deadline:.0f} s deadline: fewer samples than asked)")


def main() -> None:
    p = arguments(__doc__, deadline=240.0)
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 50], help="concurrent agents per round")
    p.add_argument("--reads", type=int, default=500, help="read_pending_tasks calls per round")
    p.add_argument("--claims", type=int, default=200, help="claims per round")
    p.add_argument("--backlog", type=int, default=100, help="pending tasks in the queue while reading")
    args = p.parse_args()
    deadline = time.monotonic() + args.deadline
    with tempfile.TemporaryDirectory(prefix="osiris-bench-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        env = {
            "DATABASE_URL": stack.enter_context(scratch_database(tmp)),
            "OSIRIS_SECRET_KEY": secrets.token_urlsafe(32),
            "OSIRIS_RUN_WORKER": "false",  # measure the request path, not publishing jobs
            "OSIRIS_LOGIN_RATE_PER_MINUTE": "1000",
        }
        url, _proc, _ = stack.enter_context(running_server(tmp / "data", env=env))
        asyncio.run(run(url, args, deadline))
    if args.json:
        most = max(r["sessions"] for r in ROWS)
        main_row = next(r for r in ROWS if r["op"] == "claim_task" and r["sessions"] == most)
        write_summary(
            args.json,
            name=f"MCP vs REST latency, claim_task p50 at {most} agents",
            baseline_label="REST",
            baseline=round(main_row["rest_p50"], 1),
            osiris_label="MCP (official client)",
            osiris=round(main_row["mcp_p50"], 1),
            ratio=round(main_row["mcp_p50"] / main_row["rest_p50"], 2),
            unit="ms",
            goal="MCP <= 2x REST",
            notes="; ".join(
                f"{r['op']} @{r['sessions']}: p50 {r['mcp_p50'] / r['rest_p50']:.2f}x, p95 {r['p95_ratio']:.2f}x"
                for r in ROWS
            ),
        )


if __name__ == "__main__":
    main()
