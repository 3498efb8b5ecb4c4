"""Live-update fan-out: commit-to-receipt latency of one task's events to 1,000 WebSocket clients.

Starts two `osiris serve` processes on two loopback ports sharing one scratch database, connects
--clients WebSocket clients to `/ws/tasks/{id}` (half to each server, bearer token), then makes
--changes state changes to that task (an agent claims and releases it through REST, alternating
between the servers), one at a time. For every client and event it takes the time from the event's
`created_at` to its receipt. `created_at` is the writing transaction's start (PostgreSQL's `now()`),
a little before its commit, so these numbers are upper bounds on commit-to-receipt. Prints p50/p99,
the floor measured in the same run (a raw asyncpg NOTIFY → LISTEN round trip on the same database)
and the ratios. A benchmark: it prints, it never asserts.

    OSIRIS_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/ws_fanout.py

The scratch database is created on that server (else OSIRIS_TEST_DATABASE_URL's) and dropped at the
end; without either, an embedded PostgreSQL runs in a temporary folder. Loopback only; the run stops
measuring at --deadline seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import tempfile
import time
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
from _server import (
    admin_headers,
    arguments,
    bearer,
    cpu_seconds,
    new_member,
    percentile_ms,
    running_server,
    scratch_database,
    write_summary,
)
from websockets.asyncio.client import ClientConnection, connect

SUMMARY: dict = {}  # the key numbers, for --json
UNWATCHED = 20  # changes measured before any client connects (CPU time counts in 10 ms ticks)


def raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        # The servers inherit the raised limit: they hold the other end of every socket.
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


# --- the floor: NOTIFY → LISTEN on the same database ---------------------------------------------


async def notify_floor(dsn: str, rounds: int) -> list[float]:
    listener, sender = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    samples: list[float] = []
    heard: asyncio.Queue[float] = asyncio.Queue()
    listener_cb = lambda *args: heard.put_nowait(time.time() - float(args[3]))  # noqa: E731
    try:
        await listener.add_listener("osiris_bench_floor", listener_cb)
        for _ in range(rounds):
            await sender.execute("SELECT pg_notify('osiris_bench_floor', $1)", repr(time.time()))
            samples.append(await asyncio.wait_for(heard.get(), 5))
    finally:
        await listener.close()
        await sender.close()
    return samples


# --- the clients ---------------------------------------------------------------------------------


class Clients:
    """Every socket's raw messages with the time each arrived; parsing waits until the end."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.received: list[tuple[float, str]] = []
        self.counts: dict[int, int] = {}
        self.all_got: dict[int, asyncio.Event] = {}
        self.sockets: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []

    def expect(self, event_id: int) -> asyncio.Event:
        return self.all_got.setdefault(event_id, asyncio.Event())

    async def open(self, url: str, token: str, n: int, sem: asyncio.Semaphore) -> None:
        async def one() -> None:
            async with sem:
                ws = await connect(
                    url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30
                )
                while json.loads(await ws.recv())["type"] != "ready":
                    pass
            self.sockets.append(ws)
            self.readers.append(asyncio.create_task(self._read(ws)))

        await asyncio.gather(*(one() for _ in range(n)))

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                self.received.append((time.time(), raw))
                if not raw.startswith('{"type":"event","id":'):
                    continue
                # The id sits at a fixed place in the server's compact JSON; full parsing waits.
                event_id = int(raw.split('"id":', 1)[1].split(",", 1)[0])
                self.counts[event_id] = count = self.counts.get(event_id, 0) + 1
                if count == self.total:
                    self.expect(event_id).set()

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


# --- the run -------------------------------------------------------------------------------------


async def measure(
    urls: list[str], pids: list[int], dsn: str, args: argparse.Namespace, deadline: float
) -> None:
    apis = [httpx.AsyncClient(base_url=u, timeout=30) for u in urls]
    clients = Clients(args.clients)
    try:
        admin = await admin_headers(apis[0])
        agent = bearer((await new_member(apis[0], admin, "bench-agent"))[0])
        task = (await apis[0].post("/api/v1/tasks", json={"title": "Watched"}, headers=admin)).json()

        async def change(i: int) -> int:
            """The i-th state change, through one of the servers; the id of its event."""
            api = apis[i % len(apis)]  # alternate: each server's events must cross to the other
            action = "claim" if i % 2 == 0 else "release"
            r = await api.post(f"/api/v1/tasks/{task['id']}/{action}", headers=agent)
            r.raise_for_status()
            return (await api.get(f"/api/v1/tasks/{task['id']}/events", headers=admin)).json()[-1]["id"]

        # What a change costs the servers with nobody watching (the REST calls above; the hub loads
        # no row for nobody): the rest of their CPU per change below is the fan-out. Two unmeasured
        # first; an even number leaves the task released.
        for i in range(2 + UNWATCHED):
            if i == 2:
                unwatched_start = [cpu_seconds(pid) for pid in pids]
            await change(i)
            await asyncio.sleep(args.gap)
        unwatched = [(cpu_seconds(pid) - a) / UNWATCHED for pid, a in zip(pids, unwatched_start, strict=True)]

        token = admin["Authorization"].removeprefix("Bearer ")
        start = time.monotonic()
        sem = asyncio.Semaphore(50)
        per_server = [args.clients // len(urls) + (i < args.clients % len(urls)) for i in range(len(urls))]
        await asyncio.gather(
            *(
                clients.open(u.replace("http://", "ws://") + f"/ws/tasks/{task['id']}", token, n, sem)
                for u, n in zip(urls, per_server, strict=True)
            )
        )
        print(
            f"{len(clients.sockets)} clients connected ({'/'.join(map(str, per_server))}) "
            f"in {time.monotonic() - start:.1f} s",
            flush=True,
        )

        floor_before = await notify_floor(dsn, args.floor_rounds)
        idle_start = [cpu_seconds(pid) for pid in pids]
        await asyncio.sleep(2)
        idle = [(cpu_seconds(pid) - a) / 2 for pid, a in zip(pids, idle_start, strict=True)]
        made = 0
        cpu_start = [time.process_time(), *map(cpu_seconds, pids)]
        for i in range(args.changes):
            if time.monotonic() > deadline:
                print(f"(stopped at the {args.deadline:.0f} s deadline after {made} changes)")
                break
            event_id = await change(i)
            made += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(clients.expect(event_id).wait(), 5)
            await asyncio.sleep(args.gap)
        cpu = [b - a for a, b in zip(cpu_start, [time.process_time(), *map(cpu_seconds, pids)], strict=True)]
        floor_after = await notify_floor(dsn, args.floor_rounds)
    finally:
        await clients.close()
        for api in apis:
            await api.aclose()

    latencies: list[float] = []
    created: dict[int, float] = {}
    per_event: dict[int, list[float]] = {}
    for t, raw in clients.received:
        msg = json.loads(raw)
        if msg.get("type") != "event" or msg["kind"] not in ("claim", "release"):
            continue
        at = created.setdefault(msg["id"], datetime.fromisoformat(msg["created_at"]).timestamp())
        latencies.append(t - at)
        per_event.setdefault(msg["id"], []).append(t - at)
    first = [min(v) for v in per_event.values()]
    spread = [max(v) - min(v) for v in per_event.values()]
    missing = made * args.clients - len(latencies)
    floor = floor_before + floor_after
    p50, p99 = percentile_ms(latencies, 0.5), percentile_ms(latencies, 0.99)
    f50, f99 = percentile_ms(floor, 0.5), percentile_ms(floor, 0.99)

    print(f"\nOSIRIS live fan-out, {len(urls)} servers, one database; times in ms")
    print(f"{'':<44}{'n':>8}{'p50':>9}{'p99':>9}{'max':>9}")
    print(
        f"{'commit → receipt (created_at → client)':<44}{len(latencies):>8}{p50:>9.1f}{p99:>9.1f}"
        f"{max(latencies) * 1000:>9.1f}"
    )
    print(
        f"{'  the first client of each event':<44}{len(first):>8}{percentile_ms(first, 0.5):>9.1f}"
        f"{percentile_ms(first, 0.99):>9.1f}{max(first) * 1000:>9.1f}"
    )
    print(
        f"{'  first to last client of each event':<44}{len(spread):>8}{percentile_ms(spread, 0.5):>9.1f}"
        f"{percentile_ms(spread, 0.99):>9.1f}{max(spread) * 1000:>9.1f}"
    )
    print(
        f"{'floor: asyncpg NOTIFY → LISTEN':<44}{len(floor):>8}{f50:>9.2f}{f99:>9.2f}{max(floor) * 1000:>9.2f}"
    )
    print(f"ratio to the floor: p50 {p50 / f50:.1f}x, p99 {p99 / f99:.1f}x")
    SUMMARY.update(p50=p50, p99=p99, f50=f50, f99=f99, missing=missing, made=made, servers=len(urls))
    per_change = [f"{c / max(made, 1) * 1000:.0f}" for c in cpu]
    print(
        f"CPU ms per change: clients {per_change[0]}, servers {' + '.join(per_change[1:])} ({os.cpu_count()} cores)"
    )
    print(f"CPU ms per second with no changes: servers {' + '.join(f'{c * 1000:.0f}' for c in idle)}")
    # What one delivery costs a server, and what that means on a bigger host: each server on a core
    # of its own, the clients (here this process, elsewhere browsers) on the cores left over.
    per_delivery = [c / max(made, 1) / n for c, n in zip(cpu[1:], per_server, strict=True) if n]
    fan_out = [
        (c / max(made, 1) - u) / n for c, u, n in zip(cpu[1:], unwatched, per_server, strict=True) if n
    ]
    client_per_change = cpu[0] / max(made, 1)
    server_per_change = max(c / max(made, 1) for c in cpu[1:])
    print(
        "CPU per delivery: servers "
        + " + ".join(f"{d * 1e6:.0f}" for d in per_delivery)
        + f" µs; clients {client_per_change / args.clients * 1e6:.0f} µs (this bench's own websockets client)"
    )
    print(
        f"  of which a change with nobody watching costs the servers {' + '.join(f'{u * 1000:.1f}' for u in unwatched)}"
        f" ms; the fan-out beyond that: {' + '.join(f'{d * 1e6:.0f}' for d in fan_out)} µs per delivery"
    )
    cores = os.cpu_count() or 1
    first50 = percentile_ms(first, 0.5)
    if p99 >= 50 and cores < 4:
        spare = 4 - len(urls)
        last = max(server_per_change, client_per_change / spare if spare > 0 else client_per_change)
        print(
            f"projection to a 4-core host ({len(urls)} servers, a core each; the clients on the other "
            f"{spare}): last delivery ≈ first-client p50 {first50:.0f} ms + {last * 1000:.0f} ms of fan-out "
            f"≈ {first50 + last * 1000:.0f} ms (p99 goal 50 ms); with the clients on other machines "
            f"(browsers): ≈ {first50 + server_per_change * 1000:.0f} ms"
        )
        SUMMARY["projection"] = round(first50 + last * 1000)
    SUMMARY["per_delivery_us"] = round(max(per_delivery) * 1e6) if per_delivery else None
    SUMMARY["fan_out_us"] = round(max(fan_out) * 1e6) if fan_out else None
    print(
        f"{made} changes x {args.clients} clients; {missing} deliveries missing; "
        f"p99 target 50 ms: {'met' if p99 < 50 else 'NOT met'}"
    )


def main() -> None:
    p = arguments(__doc__, deadline=150.0)
    p.add_argument("--clients", type=int, default=1000, help="WebSocket clients, split across the servers")
    p.add_argument("--servers", type=int, default=2, help="`osiris serve` processes sharing the database")
    p.add_argument("--changes", type=int, default=100, help="state changes to the watched task")
    p.add_argument("--gap", type=float, default=0.05, help="pause between changes, seconds")
    p.add_argument("--floor-rounds", type=int, default=100, help="NOTIFY round trips before and after")
    args = p.parse_args()
    deadline = time.monotonic() + args.deadline
    raise_open_file_limit(2 * args.clients + 1024)

    with tempfile.TemporaryDirectory(prefix="osiris-wsbench-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        dsn = stack.enter_context(scratch_database(tmp))
        env = {
            "DATABASE_URL": dsn,
            "OSIRIS_SECRET_KEY": secrets.token_urlsafe(32),
            "OSIRIS_RUN_WORKER": "false",  # measure the live path, not the jobs the changes queue
            # every client signs in with the admin's token: lift the per-credential cap above them
            "OSIRIS_LIVE_MAX_PER_CREDENTIAL": str(args.clients),
        }
        urls, pids = [], []
        for i in range(args.servers):
            try:
                url, proc, _ = stack.enter_context(running_server(tmp / f"server-{i}", env=env))
            except Exception:
                log = tmp / f"server-{i}" / "server.log"
                print(f"server {i} did not start:\n" + log.read_text()[-3000:] if log.exists() else "")
                raise
            urls.append(url)
            pids.append(proc.pid)
        asyncio.run(measure(urls, pids, dsn, args, deadline))
    s = SUMMARY
    write_summary(
        args.json,
        name=f"live fan-out to {args.clients} WebSockets on {s['servers']} servers, p50",
        baseline_label="raw NOTIFY → LISTEN",
        baseline=round(s["f50"], 2),
        osiris_label="commit → client receipt",
        osiris=round(s["p50"], 1),
        ratio=round(s["p50"] / s["f50"], 1),
        unit="ms",
        goal="p99 < 50 ms",
        notes=f"p99 {s['p99']:.1f} ms (floor {s['f99']:.2f}); {s['made']} changes; "
        f"{s['missing']} deliveries missing; server CPU {s.get('per_delivery_us')} µs per delivery "
        f"({s.get('fan_out_us')} µs beyond a change's own cost)"
        + (f"; projected p99 on 4 cores ≈ {s['projection']} ms" if "projection" in s else ""),
    )


if __name__ == "__main__":
    main()
