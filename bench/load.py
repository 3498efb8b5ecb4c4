"""Load: 100 agents (half MCP, half REST) and 20 portal WebSocket clients against real servers.

Phase 1 runs one `osiris serve` (the embedded default); phase 2 runs two `osiris serve` processes
sharing one database and one data dir (agents, reviewer and WebSocket clients split across both).
Each agent loops: its tasks sent back → resubmit; else read pending → claim → submit a `files`
artifact. A reviewer (REST, woken by `review_requested` events on its own board socket) approves
or requests changes (at most once per task). After --duration seconds the agents and the reviewer
stop, the job queue drains, and the run is checked against the database:

- every artifact the agents were told was created is stored once (no more, no fewer rows, versions
  1..n per task) and published once (one `published` event per artifact, commit_sha set);
- every TaskEvent of the organization after the window opened reached every `/ws/board` client
  (compared by id; a client that falls behind is caught up by the server from the event table on
  the same socket, and one that is cut off resumes with `?after=`, as the portal's page does);
- no 5xx: client side (REST status, MCP transport errors) and server side (/metrics).

Prints throughput, p50/p99 per operation (MCP and REST apart), delivery completeness, the peak RSS
(VmHWM) of each server process, the load average, and PASS/FAIL per check. A benchmark: it prints,
it never asserts (the exit status is 0 either way; --json has `ok` and `checks` per phase).
Loopback only.

    .venv/bin/python bench/load.py [--duration 60] [--agents 100] [--ws-clients 20] [--phases 1 2]

Phase 2 uses a scratch database on OSIRIS_BENCH_DATABASE_URL (else OSIRIS_TEST_DATABASE_URL) when set
(e.g. postgresql://postgres@127.0.0.1:5432/postgres), else the embedded PostgreSQL both processes share.
"""

# ruff: noqa: E402 - the SDK may be imported only once bench/ is off sys.path
from __future__ import annotations

import _server

_server.use_repository_root()  # run as a script, bench/ is first on sys.path: bench/mcp.py would hide the SDK

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from _server import (
    admin_headers,
    arguments,
    embedded_dsn,
    memory_mib,
    new_member,
    percentile_ms,
    running_server,
    scratch_database,
    seed_tasks,
    write_summary,
)
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

OPS = ("my_tasks", "read_pending", "claim", "submit", "approve", "request_changes")


@dataclass
class Stats:
    lat: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    counts: Counter = field(default_factory=Counter)  # (transport, outcome)
    created: set[tuple[int, int]] = field(default_factory=set)  # (task_id, version) told "created"
    errors: list[str] = field(default_factory=list)

    def time(self, transport: str, op: str, seconds: float) -> None:
        self.lat[(transport, op)].append(seconds)

    def error(self, what: str) -> None:
        self.counts["errors"] += 1
        if len(self.errors) < 20:
            self.errors.append(what[:300])


class Stop(Exception):
    pass


# --- agents ------------------------------------------------------------------------------------


class RestAgent:
    transport = "REST"

    def __init__(self, url: str, token: str, user_id: int, stats: Stats) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.user_id, self.stats = user_id, stats

    async def _req(self, op: str, method: str, path: str, **kw) -> httpx.Response:
        t = time.perf_counter()
        r = await self.http.request(method, path, **kw)
        self.stats.time(self.transport, op, time.perf_counter() - t)
        if r.status_code >= 500:
            self.stats.counts["REST 5xx"] += 1
            self.stats.error(f"REST {op} {r.status_code}: {r.text}")
        return r

    async def my_tasks(self) -> list[int]:
        params = {"status": "IN_PROGRESS", "assignee_id": self.user_id, "limit": 10}
        r = await self._req("my_tasks", "GET", "/api/v1/tasks", params=params)
        return [t["id"] for t in r.json()["items"]] if r.status_code == 200 else []

    async def read_pending(self) -> list[int]:
        r = await self._req("read_pending", "GET", "/api/v1/tasks/pending", params={"limit": 20})
        return [t["id"] for t in r.json()] if r.status_code == 200 else []

    async def claim(self, task_id: int) -> bool:
        r = await self._req("claim", "POST", f"/api/v1/tasks/{task_id}/claim")
        if r.status_code == 409:
            self.stats.counts["REST claim conflicts"] += 1
        elif r.status_code != 200:
            self.stats.error(f"REST claim {r.status_code}: {r.text}")
        return r.status_code == 200

    async def submit(self, task_id: int, content: dict[str, str], key: str) -> tuple[int, bool] | None:
        body = {"content": content, "kind": "files", "summary": "load", "idempotency_key": key}
        r = await self._req("submit", "POST", f"/api/v1/tasks/{task_id}/artifacts", json=body)
        if r.status_code not in (200, 201):
            self.stats.error(f"REST submit {r.status_code}: {r.text}")
            return None
        data = r.json()
        return data["artifact"]["version"], data["created"]

    async def close(self) -> None:
        await self.http.aclose()


class McpAgent:
    transport = "MCP"

    def __init__(self, url: str, token: str, stats: Stats) -> None:
        self.http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        self.client = Client(streamable_http_client(f"{url}/mcp", http_client=self.http))
        self.stats = stats

    async def __aenter__(self) -> McpAgent:
        await self.http.__aenter__()
        await self.client.__aenter__()
        await self.client.list_tools()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(None, None, None)
        await self.http.__aexit__(None, None, None)

    async def _call(self, op: str, name: str, args: dict) -> dict | None:
        t = time.perf_counter()
        try:
            result = await self.client.call_tool(name, args)
        except Exception as exc:  # a transport failure: a 5xx or a broken connection
            self.stats.counts["MCP transport errors"] += 1
            self.stats.error(f"MCP {name}: {type(exc).__name__}: {exc}")
            return None
        finally:
            self.stats.time(self.transport, op, time.perf_counter() - t)
        if result.is_error:
            code = (result.structured_content or {}).get("error", {}).get("code")
            if code in ("not_claimable", "illegal_transition"):
                self.stats.counts[f"MCP {op} conflicts"] += 1
            else:
                self.stats.error(f"MCP {name}: {result.content}")
            return None
        return result.structured_content

    async def my_tasks(self) -> list[int]:
        out = await self._call("my_tasks", "list_my_tasks", {})
        return [t["id"] for t in out["tasks"] if t["status"] == "IN_PROGRESS"] if out else []

    async def read_pending(self) -> list[int]:
        out = await self._call("read_pending", "read_pending_tasks", {"limit": 20})
        return [t["id"] for t in out["tasks"]] if out else []

    async def claim(self, task_id: int) -> bool:
        return await self._call("claim", "claim_task", {"task_id": task_id}) is not None

    async def submit(self, task_id: int, content: dict[str, str], key: str) -> tuple[int, bool] | None:
        args = {"task_id": task_id, "content": content, "kind": "files", "idempotency_key": key}
        out = await self._call("submit", "submit_artifact", args)
        return (out["version"], out["created"]) if out else None


async def agent_loop(agent, name: str, stats: Stats, stop: asyncio.Event, think: float) -> None:
    n = 0
    await asyncio.sleep(random.random() * think)  # spread the first requests
    while not stop.is_set():
        mine = await agent.my_tasks()  # work the reviewer sent back comes first
        if mine:
            task_id = mine[0]
        else:
            pending = await agent.read_pending()
            if not pending:
                await asyncio.sleep(think)
                continue
            task_id = random.choice(pending)
            if not await agent.claim(task_id):
                continue
        n += 1
        content = {f"load/task-{task_id}.txt": f"task {task_id}, submission {n} by {name}\n"}
        got = await agent.submit(task_id, content, f"{name}-{n}")
        if got is not None:
            stats.counts[f"{agent.transport} submits"] += 1
            if got[1]:
                stats.created.add((task_id, got[0]))
        await asyncio.sleep(think * (0.5 + random.random()))


# --- the reviewer ------------------------------------------------------------------------------


async def reviewer(
    urls: list[str], token: str, after: int, stats: Stats, stop: asyncio.Event, reject_share: float
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    https = [httpx.AsyncClient(base_url=u, headers=headers, timeout=60) for u in urls]
    queue: asyncio.Queue[int] = asyncio.Queue()
    rejected: set[int] = set()

    async def listen() -> None:
        last = after
        while not stop.is_set():
            ws_url = urls[0].replace("http://", "ws://") + f"/ws/board?after={last}"
            with contextlib.suppress(Exception):
                async with connect(ws_url, additional_headers=headers, max_size=None) as ws:
                    async for raw in ws:
                        msg = json.loads(raw)
                        if msg.get("type") == "event":
                            last = max(last, msg["id"])
                            if msg["kind"] == "review_requested":
                                queue.put_nowait(msg["task_id"])
            await asyncio.sleep(0.2)

    async def work(i: int) -> None:
        while not stop.is_set():
            try:
                task_id = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                continue
            http = https[(task_id + i) % len(https)]
            if task_id not in rejected and random.random() < reject_share:
                rejected.add(task_id)
                op, path, body = "request_changes", "reject", {"feedback": "Please change one more thing."}
            else:
                op, path, body = "approve", "approve", {"comment": "looks good"}
            t = time.perf_counter()
            r = await http.post(f"/api/v1/tasks/{task_id}/{path}", json=body)
            stats.time("REST", op, time.perf_counter() - t)
            if r.status_code == 200:
                stats.counts[f"{op}s"] += 1
            elif r.status_code == 409:
                stats.counts["review conflicts"] += 1
            else:
                if r.status_code >= 500:
                    stats.counts["REST 5xx"] += 1
                stats.error(f"reviewer {op} {r.status_code}: {r.text}")

    listener = asyncio.create_task(listen())
    try:
        await asyncio.gather(work(0), work(1))
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        for h in https:
            await h.aclose()


# --- portal WebSocket clients -------------------------------------------------------------------


@dataclass
class Watcher:
    url: str
    token: str
    after: int
    ids: Counter = field(default_factory=Counter)
    connects: int = 0
    closes: Counter = field(default_factory=Counter)
    catchups: int = 0  # times the server switched this client to catch-up from the event table
    out_of_order: int = 0

    async def run(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        last = self.after
        while not stop.is_set():
            try:
                # As the page does: always resume after the last id seen; the server never asks for a
                # reload (a client that falls behind is caught up from the table on the same socket).
                ws_url = self.url.replace("http://", "ws://") + f"/ws/board?after={last}"
                async with connect(
                    ws_url, additional_headers={"Authorization": f"Bearer {self.token}"}, max_size=None
                ) as ws:
                    self.connects += 1
                    on_this_connection: set[int] = set()
                    async for raw in ws:
                        msg = json.loads(raw)
                        if msg.get("type") == "ready":
                            ready.set()
                        elif msg.get("type") == "catchup":
                            self.catchups += 1
                        elif msg.get("type") == "event":
                            if msg["id"] in on_this_connection:
                                self.ids[msg["id"]] += 1  # sent twice on one connection: a real duplicate
                                continue
                            on_this_connection.add(msg["id"])
                            if msg["id"] in self.ids:
                                continue  # the resume overlap resends recent events; the page skips them too
                            if msg["id"] < last:
                                self.out_of_order += 1
                            self.ids[msg["id"]] += 1
                            last = max(last, msg["id"])
                    self.closes[ws.close_code] += 1
            except ConnectionClosed as exc:  # a send timeout, a server going away, no close frame
                self.closes[exc.rcvd.code if exc.rcvd else "no close frame"] += 1
            except Exception as exc:  # noqa: BLE001 - reconnect, as the portal does
                self.closes[type(exc).__name__] += 1
            if not stop.is_set():
                await asyncio.sleep(0.2)


# --- the run -----------------------------------------------------------------------------------


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def server_5xx(url: str) -> int:
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(url + "/metrics")).text
    total = 0
    for line in text.splitlines():
        if line.startswith("osiris_http_requests_total{") and 'status="5' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def setup(url: str, agents: int) -> tuple[list[tuple[str, int]], str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        admin = await admin_headers(http)
        tokens = [await new_member(http, admin, f"load-agent-{i}") for i in range(agents)]
        review_token, _ = await new_member(http, admin, "load-reviewer", "reviewer")
        watch_token, _ = await new_member(http, admin, "load-watcher", "reviewer")
    return tokens, review_token, watch_token


async def seed(dsn: str, n: int) -> tuple[int, int]:
    """`n` pending tasks; returns the organization and the last event id before the window opens."""
    org = await seed_tasks(dsn, n, "load")
    conn = await asyncpg.connect(dsn)
    try:
        return org, await conn.fetchval("SELECT coalesce(max(id), 0) FROM task_events")
    finally:
        await conn.close()


async def drain(dsn: str, limit: float) -> float:
    conn = await asyncpg.connect(dsn)
    start = time.monotonic()
    try:
        while time.monotonic() - start < limit:
            queued = await conn.fetchval("SELECT count(*) FROM pgqueuer")
            unpublished = await conn.fetchval("SELECT count(*) FROM artifacts WHERE commit_sha IS NULL")
            if queued == 0 and unpublished == 0:
                break
            await asyncio.sleep(0.5)
        return time.monotonic() - start
    finally:
        await conn.close()


async def verify(dsn: str, org: int, after: int, stats: Stats) -> dict:
    conn = await asyncpg.connect(dsn)
    try:
        arts = await conn.fetch("SELECT id, task_id, version, commit_sha FROM artifacts")
        pub = Counter(
            r["aid"]
            for r in await conn.fetch(
                "SELECT (data->>'artifact_id')::bigint AS aid FROM task_events WHERE kind = 'published'"
            )
        )
        superseded = await conn.fetchval(
            "SELECT count(*) FROM task_events WHERE kind = 'published' AND data ? 'superseded'"
        )
        gaps = await conn.fetchval(
            "SELECT count(*) FROM (SELECT task_id FROM artifacts GROUP BY task_id"
            " HAVING max(version) <> count(*)) t"
        )
        event_ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM task_events WHERE org_id = $1 AND id > $2 ORDER BY id", org, after
            )
        ]
        failed_jobs = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        kinds = dict(
            await conn.fetch(
                "SELECT kind, count(*) FROM task_events WHERE id > $1 GROUP BY kind ORDER BY 2 DESC", after
            )
        )
    finally:
        await conn.close()
    stored = {(r["task_id"], r["version"]) for r in arts}
    return {
        "artifacts": len(arts),
        "told_created": len(stats.created),
        "lost": len(stats.created - stored),
        "unexpected": len(stored - stats.created),
        "version_gaps": gaps,
        "unpublished": sum(1 for r in arts if r["commit_sha"] is None),
        "published_once": sum(1 for r in arts if pub.get(r["id"]) == 1),
        "published_twice": sum(1 for r in arts if pub.get(r["id"], 0) > 1),
        "published_never": sum(1 for r in arts if pub.get(r["id"], 0) == 0),
        "superseded": superseded,
        "jobs_left": failed_jobs,
        "event_ids": event_ids,
        "kinds": kinds,
    }


async def run_phase(label: str, urls: list[str], pids: list[int], dsn: str, args: argparse.Namespace) -> dict:
    print(
        f"\n=== {label}: {len(urls)} server(s) {', '.join(urls)}; load average {load_average()} ===",
        flush=True,
    )
    tokens, review_token, watch_token = await setup(urls[0], args.agents)
    org, after = await seed(dsn, args.tasks)
    stats = Stats()
    stop, agents_stop = asyncio.Event(), asyncio.Event()

    watchers = [Watcher(urls[i % len(urls)], watch_token, after) for i in range(args.ws_clients)]
    readies = [asyncio.Event() for _ in watchers]
    watch_tasks = [asyncio.create_task(w.run(stop, r)) for w, r in zip(watchers, readies, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)

    n_mcp = args.agents // 2
    async with contextlib.AsyncExitStack() as stack:
        agents: list = []
        for i, (token, uid) in enumerate(tokens):
            url = urls[i % len(urls)]
            if i < n_mcp:
                agents.append(await stack.enter_async_context(McpAgent(url, token, stats)))
            else:
                rest = RestAgent(url, token, uid, stats)
                stack.push_async_callback(rest.close)
                agents.append(rest)
        print(
            f"{n_mcp} MCP + {len(agents) - n_mcp} REST agents, {len(watchers)} board clients, "
            f"{args.tasks} seeded tasks; running {args.duration:.0f} s",
            flush=True,
        )
        rss_start = [memory_mib(p, "VmHWM") for p in pids]
        cpu0 = time.process_time()
        start = time.monotonic()
        review = asyncio.create_task(
            reviewer(urls, review_token, after, stats, agents_stop, args.reject_share)
        )
        loops = [
            asyncio.create_task(agent_loop(a, f"a{i}", stats, agents_stop, args.think))
            for i, a in enumerate(agents)
        ]
        await asyncio.sleep(args.duration)
        agents_stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        await review
        elapsed = time.monotonic() - start
        client_cpu = time.process_time() - cpu0
    print(f"load stopped; draining the job queue (at most {args.drain:.0f} s)", flush=True)
    drained = await drain(dsn, args.drain)
    v = await verify(dsn, org, after, stats)
    expected = set(v["event_ids"])
    # Give the sockets time to deliver the last events, then stop them.
    wait_end = time.monotonic() + 30
    while time.monotonic() < wait_end and any(expected - set(w.ids) for w in watchers):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    stop.set()
    for t in watch_tasks:
        t.cancel()
    await asyncio.gather(*watch_tasks, return_exceptions=True)
    rss = [memory_mib(p, "VmHWM") for p in pids]
    five = [await server_5xx(u) for u in urls]

    missing = [len(expected - set(w.ids)) for w in watchers]
    dups = sum(sum(c - 1 for c in w.ids.values() if c > 1) for w in watchers)
    extra = sum(len(set(w.ids) - expected) for w in watchers)
    c = stats.counts
    submits = c["MCP submits"] + c["REST submits"]
    ops_total = sum(len(v) for v in stats.lat.values())

    print(
        f"ran {elapsed:.1f} s; client CPU {client_cpu:.1f} s ({client_cpu / elapsed * 100:.0f}% of one core)"
    )
    print(
        f"throughput: {submits / elapsed:.1f} submissions/s ({c['MCP submits']} MCP + {c['REST submits']} REST),"
        f" {c['approves'] / elapsed:.1f} approvals/s ({c['approves']}), {c['request_changess']} changes requested,"
        f" {ops_total / elapsed:.0f} operations/s in all"
    )
    print(f"{'operation':<18}{'transport':>10}{'n':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for op in OPS:
        for transport in ("MCP", "REST"):
            xs = stats.lat.get((transport, op))
            if xs:
                print(
                    f"{op:<18}{transport:>10}{len(xs):>8}{percentile_ms(xs, 0.5):>10.1f}{percentile_ms(xs, 0.99):>10.1f}"
                )
    conflicts = {k: n for k, n in c.items() if "conflict" in k}
    print(f"conflicts (lost races, expected): {conflicts or 'none'}")
    print(
        f"artifacts: {v['artifacts']} stored, {v['told_created']} reported created to agents; "
        f"lost {v['lost']}, unexpected {v['unexpected']}, version gaps {v['version_gaps']}"
    )
    print(
        f"published: once {v['published_once']}, twice or more {v['published_twice']}, never "
        f"{v['published_never']}, commit_sha missing {v['unpublished']}, superseded {v['superseded']}; "
        f"queue drained in {drained:.1f} s, jobs left {v['jobs_left']}"
    )
    print(
        f"WebSocket: {len(expected)} events after id {after} x {len(watchers)} clients; missing "
        f"{sum(missing)} (worst client {max(missing, default=0)}), duplicates {dups}, unknown {extra}, "
        f"reconnects {sum(w.connects - 1 for w in watchers)} (closes {sum((w.closes for w in watchers), Counter())}), catch-ups from the table {sum(w.catchups for w in watchers)}, arrived after a higher id (commit order, not id order) {sum(w.out_of_order for w in watchers)}"
    )
    print(
        f"5xx: client {c['REST 5xx']} REST, {c['MCP transport errors']} MCP transport errors; "
        f"server /metrics {' + '.join(map(str, five))}; other errors {c['errors']}"
    )
    for e in stats.errors[:5]:
        print(f"  error: {e}")
    print(
        "peak RSS (VmHWM): "
        + ", ".join(
            f"server {i} {r:.0f} MiB (at start {s:.0f})"
            for i, (r, s) in enumerate(zip(rss, rss_start, strict=True))
        )
    )
    print(f"events by kind: {v['kinds']}")
    checks = {
        "every artifact told created is stored once (none lost, none extra, versions 1..n)": v["lost"] == 0
        and v["unexpected"] == 0
        and v["version_gaps"] == 0
        and v["told_created"] == v["artifacts"],
        "every stored artifact published exactly once": v["published_once"] == v["artifacts"]
        and v["unpublished"] == 0,
        "every event id reached every board client": sum(missing) == 0 and extra == 0,
        "no event sent twice on a connection": dups == 0,
        "no 5xx (client REST, MCP transport, server /metrics)": c["REST 5xx"]
        + c["MCP transport errors"]
        + sum(five)
        == 0,
    }
    for name, held in checks.items():
        print(f"  {'PASS' if held else 'FAIL'}  {name}")
    ok = all(checks.values())
    print(f"checks: {'all hold' if ok else 'SOME FAILED (see above)'}; load average now {load_average()}")
    return {
        "servers": len(urls),
        "seconds": round(elapsed, 1),
        "submissions_per_s": round(submits / elapsed, 2),
        "approvals": c["approves"],
        "p50_ms": {f"{t} {op}": round(percentile_ms(xs, 0.5), 1) for (t, op), xs in stats.lat.items()},
        "p99_ms": {f"{t} {op}": round(percentile_ms(xs, 0.99), 1) for (t, op), xs in stats.lat.items()},
        "artifacts": v["artifacts"],
        "published_once": v["published_once"],
        "ws_events": len(expected),
        "ws_missing": sum(missing),
        "ws_duplicates": dups,
        "server_5xx": sum(five),
        "client_5xx": c["REST 5xx"] + c["MCP transport errors"],
        "peak_rss_mib": [round(r) for r in rss],
        "ws_catchups": sum(w.catchups for w in watchers),
        "ws_reconnects": sum(w.connects - 1 for w in watchers),
        "checks": checks,
        "load_average": load_average(),
        "ok": ok,
    }


def phase(n_servers: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="osiris-load-") as tmp, contextlib.ExitStack() as stack:
        data = Path(tmp) / "data"
        env: dict[str, str] = {}
        dsn = embedded_dsn(data)
        label = "phase 1, embedded default"
        if n_servers > 1:
            scratch = stack.enter_context(scratch_database(None))
            label = f"phase 2, {n_servers} processes, one data dir, " + (
                "scratch database" if scratch else "shared embedded PostgreSQL"
            )
            if scratch:
                dsn = scratch
                env |= {"DATABASE_URL": scratch, "OSIRIS_SECRET_KEY": secrets.token_urlsafe(32)}
        urls, pids = [], []
        for _ in range(n_servers):
            url, proc, _ = stack.enter_context(running_server(data, env=env))
            urls.append(url)
            pids.append(proc.pid)
        result = asyncio.run(run_phase(label, urls, pids, dsn, args))
        log = (data / "server.log").read_text(errors="replace").splitlines()
        first = next((i for i, line in enumerate(log) if "Traceback" in line or "ERROR" in line), None)
        if first is not None:  # the servers' own account of a 5xx, before the folder goes
            end = next((i for i in range(first + 1, len(log)) if not log[i].startswith((" ", "\t"))), first)
            tail = log[first : first + 1] + ["..."] + log[max(first + 1, end - 6) : end + 1]
            print(
                f"server log, {sum('Traceback' in x for x in log)} traceback(s); the first:\n  "
                + "\n  ".join(tail)
            )
        return result


def main() -> None:
    p = arguments(__doc__)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load per phase")
    p.add_argument("--agents", type=int, default=100, help="agents, half MCP and half REST")
    p.add_argument("--ws-clients", type=int, default=20, help="portal /ws/board clients")
    p.add_argument("--tasks", type=int, default=3000, help="pending tasks seeded per phase")
    p.add_argument("--think", type=float, default=0.5, help="mean pause of an agent between tasks, s")
    p.add_argument("--reject-share", type=float, default=0.25, help="share of first reviews sent back")
    p.add_argument("--drain", type=float, default=180.0, help="at most this long for the job queue")
    p.add_argument("--phases", type=int, nargs="+", default=[1, 2], help="server counts to run")
    args = p.parse_args()
    results = {f"{n} server(s)": phase(n, args) for n in args.phases}
    first = next(iter(results.values()))
    last = list(results.values())[-1]
    write_summary(
        args.json,
        name=f"load: {args.agents} agents (MCP+REST) + {args.ws_clients} board WebSockets, {args.duration:.0f} s",
        baseline_label=f"submissions/s, {first['servers']} server",
        baseline=first["submissions_per_s"],
        osiris_label=f"submissions/s, {last['servers']} servers",
        osiris=last["submissions_per_s"],
        ratio=round(last["submissions_per_s"] / first["submissions_per_s"], 2)
        if first["submissions_per_s"]
        else None,
        unit="submissions/s",
        goal="nothing lost or duplicated, every event to every client, no 5xx",
        notes="; ".join(
            f"{k}: {'checks hold' if r['ok'] else 'CHECKS FAILED'}, {r['artifacts']} artifacts, "
            f"WS missing {r['ws_missing']}, 5xx {r['server_5xx'] + r['client_5xx']}, "
            f"peak RSS {'/'.join(map(str, r['peak_rss_mib']))} MiB"
            for k, r in results.items()
        ),
        phases=results,
    )


if __name__ == "__main__":
    main()
