"""The WebSockets against a real uvicorn server: live events, replay on reconnect, slow clients, and
two server processes sharing one database."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import httpx
import pytest
from sqlalchemy import func, select, text
from websockets.exceptions import InvalidStatus

from osiris.app import db, lifecycle
from osiris.app.actors import system_actor
from osiris.app.events import record_event
from osiris.app.models import TaskEvent
from osiris.app.realtime import Hub
from osiris.portal import events
from tests.support.portal_helpers import (
    metric,
    next_message,
    nothing_more,
    open_socket,
    session_cookie,
    until_ready,
)

pytestmark = pytest.mark.asyncio
EVENT_FIELDS = {
    "type",
    "id",
    "task_id",
    "kind",
    "actor_name",
    "from_status",
    "to_status",
    "data",
    "created_at",
}


async def agent_api(live_url: str, factory, org=None):
    agent = await factory.user("agent", org=org)
    token = await factory.token(agent)
    return httpx.AsyncClient(base_url=live_url, headers={"Authorization": f"Bearer {token}"}), token


async def test_board_events_arrive_live(live, factory, person):
    reviewer = await person("reviewer")
    ws = await open_socket(live.url, "/ws/board", cookie=await session_cookie(live.url, reviewer.username))
    assert await until_ready(ws) == []
    api, _ = await agent_api(live.url, factory)
    async with api:
        task = (await api.post("/api/v1/tasks", json={"title": "Live one"})).json()
        created = await next_message(ws)
        assert set(created) == EVENT_FIELDS
        assert (
            created["type"] == "event" and created["kind"] == "created" and created["task_id"] == task["id"]
        )
        await api.post(f"/api/v1/tasks/{task['id']}/claim")
        claimed = await next_message(ws)
        assert claimed["kind"] == "claim" and claimed["to_status"] == "IN_PROGRESS"
        assert claimed["id"] > created["id"]
    await ws.close()


async def test_task_socket_with_a_bearer_token_sees_only_its_task(live, factory):
    api, token = await agent_api(live.url, factory)
    async with api:
        mine = (await api.post("/api/v1/tasks", json={"title": "Mine"})).json()
        other = (await api.post("/api/v1/tasks", json={"title": "Other"})).json()
        ws = await open_socket(live.url, f"/ws/tasks/{mine['id']}", token=token)
        await until_ready(ws)
        await api.post(f"/api/v1/tasks/{other['id']}/claim")
        await api.post(f"/api/v1/tasks/{mine['id']}/claim")
        msg = await next_message(ws)
        assert msg["task_id"] == mine["id"] and msg["kind"] == "claim"
        assert await nothing_more(ws)
    await ws.close()


async def test_sockets_refuse_strangers_other_organizations_and_other_sites(live, factory, person):
    api, _ = await agent_api(live.url, factory)
    async with api:
        task = (await api.post("/api/v1/tasks", json={"title": "Private"})).json()
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(live.url, "/ws/board")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        await open_socket(live.url, "/ws/board", token="osr_not-a-token")
    outsider = await person("reviewer", org=await factory.org("elsewhere"))
    cookie = await session_cookie(live.url, outsider.username)
    with pytest.raises(InvalidStatus):
        await open_socket(live.url, f"/ws/tasks/{task['id']}", cookie=cookie)
    insider = await person("reviewer")
    cookie = await session_cookie(live.url, insider.username)
    with pytest.raises(InvalidStatus):  # a page on another site cannot borrow the cookie
        await open_socket(live.url, "/ws/board", cookie=cookie, origin="https://evil.example")
    ws = await open_socket(live.url, "/ws/board", cookie=cookie, origin=live.url)
    await until_ready(ws)
    await ws.close()


async def test_reconnect_with_the_last_id_replays_exactly_the_missed_events(live, factory, person):
    reviewer = await person("reviewer")
    cookie = await session_cookie(live.url, reviewer.username)
    api, _ = await agent_api(live.url, factory)
    async with api:
        ws = await open_socket(live.url, "/ws/board", cookie=cookie)
        await until_ready(ws)
        task = (await api.post("/api/v1/tasks", json={"title": "Resume me"})).json()
        last_seen = (await next_message(ws))["id"]
        await ws.close()

        # Missed while away: a claim, a message and a submission.
        await api.post(f"/api/v1/tasks/{task['id']}/claim")
        await api.post(f"/api/v1/tasks/{task['id']}/messages", json={"body": "working on it"})
        r = await api.post(f"/api/v1/tasks/{task['id']}/artifacts", json={"content": {"a.txt": "a\n"}})
        assert r.status_code == 201, r.text

        ws = await open_socket(live.url, "/ws/board", cookie=cookie, after=last_seen)
        replayed = await until_ready(ws)
        assert [e["kind"] for e in replayed] == ["claim", "message", "submit"]
        ids = [e["id"] for e in replayed]
        assert ids == sorted(ids) and ids[0] > last_seen
        await api.post(f"/api/v1/tasks/{task['id']}/messages", json={"body": "live again"})
        live_event = await next_message(ws)
        assert live_event["kind"] == "message" and live_event["id"] > ids[-1]
        assert await nothing_more(ws)
    await ws.close()


async def test_replay_while_events_keep_coming_has_no_gap_and_no_duplicate(live, factory, person):
    """Connect in the middle of a stream of commits: replay and live must join seamlessly."""
    reviewer = await person("reviewer")
    cookie = await session_cookie(live.url, reviewer.username)
    agent = await factory.user("agent")
    actor = factory.actor(agent)
    async with db.transaction(factory.runtime.sessions) as s:
        task = await lifecycle.create_task(s, actor, title="Busy", repo="r", base_branch="main")
        await lifecycle.claim_task(s, actor, task.id, lease_seconds=600)
    async with factory.runtime.sessions() as s:
        start = await s.scalar(select(TaskEvent.id).order_by(TaskEvent.id.desc()).limit(1))

    stop = asyncio.Event()

    async def chatter() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            async with db.transaction(factory.runtime.sessions) as s:
                await lifecycle.post_message(s, actor, task.id, body=f"note {n}", source="api")
            n += 1
            await asyncio.sleep(0.002)

    writer = asyncio.create_task(chatter())
    await asyncio.sleep(0.15)  # some events before we connect, more while we replay
    ws = await open_socket(live.url, f"/ws/tasks/{task.id}", cookie=cookie, after=start)
    received = [e["id"] for e in await until_ready(ws)]
    await asyncio.sleep(0.3)
    stop.set()
    await writer
    async with factory.runtime.sessions() as s:
        expected = list(
            (
                await s.execute(select(TaskEvent.id).where(TaskEvent.id > start).order_by(TaskEvent.id))
            ).scalars()
        )
    # The resume overlap also resends a few events the client had (ids <= start): it skips those.
    while len([i for i in received if i > start]) < len(expected):
        received.append((await next_message(ws))["id"])
    assert len(received) == len(set(received))  # nothing sent twice on this connection
    assert [i for i in received if i > start] == expected  # every missed event, in order
    assert await nothing_more(ws)
    await ws.close()


async def test_an_event_committed_after_a_higher_id_is_replayed_on_resume(factory):
    """Ids are taken at INSERT, delivery follows COMMIT: a client that saw the higher id first
    must still get the lower one when it resumes from the higher."""
    agent = factory.actor(await factory.user("agent"))
    async with db.transaction(factory.runtime.sessions) as s:
        task = await lifecycle.create_task(s, agent, title="Skew", repo="r", base_branch="main")
    async with factory.runtime.sessions() as slow:
        async with slow.begin():
            low = await record_event(slow, task, agent, "slow-writer")  # not committed yet
            async with db.transaction(factory.runtime.sessions) as fast:
                high = await record_event(fast, task, agent, "fast-writer")
            assert low < high
            # the client has seen `high` and disconnects here; `low` commits afterwards
        async with factory.runtime.sessions() as s:
            rows = await events.replay(s, agent, after=high, task_id=task.id, limit=100)
    assert low in [r.id for r in rows]
    # The catch-up pages follow the same rule, and leave out what the connection already sent.
    async with factory.runtime.sessions() as s:
        page = await events.page_ids(s, agent.org_id, after=high, task_id=task.id, limit=100, sent=[high])
        assert low in page and high not in page  # (the task's `created` is in the overlap too)
        sent = [*page, high]
        assert await events.page_ids(s, agent.org_id, after=high, task_id=task.id, limit=100, sent=sent) == []
        assert await events.page_ids(s, agent.org_id, after=high, task_id=task.id, limit=100, floor=low) == []


async def test_a_client_that_reads_nothing_through_a_flood_gets_every_event_once(live, factory, person):
    """Far more events than the hub's queue holds (and than the old reload limit of 1000) arrive
    while the client reads nothing: it stays connected, is caught up from the table and receives
    every id exactly once, including the ones committed while it was catching up."""
    reviewer = await person("reviewer")
    cookie = await session_cookie(live.url, reviewer.username)
    agent = factory.actor(await factory.user("agent"))
    async with db.transaction(factory.runtime.sessions) as s:
        task = await lifecycle.create_task(s, agent, title="Flood", repo="r", base_branch="main")
        await lifecycle.claim_task(s, agent, task.id, lease_seconds=600)
    async with factory.runtime.sessions() as s:
        start = await s.scalar(select(func.max(TaskEvent.id)))
    catchups_before = await metric(live.url, 'osiris_portal_live_catchups_total{reason="behind"}')
    ws = await open_socket(live.url, "/ws/board", cookie=cookie, after=start)
    assert all(e["id"] < start for e in await until_ready(ws))  # the resume overlap only

    # From here the client reads nothing. Bursts of 500 events in one commit overflow the hub's
    # queue (256) at once; single commits in between keep coming during the catch-up.
    bursts, per_burst = 3, 500
    for b in range(bursts):
        async with db.transaction(factory.runtime.sessions) as s:
            for n in range(per_burst):
                await record_event(s, task, system_actor(task.org_id), "note", data={"n": n})
        for n in range(5):
            async with db.transaction(factory.runtime.sessions) as s:
                await lifecycle.post_message(s, agent, task.id, body=f"between {b}.{n}", source="api")
    await asyncio.sleep(1.0)
    async with factory.runtime.sessions() as s:
        expected = list(
            (
                await s.execute(select(TaskEvent.id).where(TaskEvent.id > start).order_by(TaskEvent.id))
            ).scalars()
        )
    assert len(expected) > 1000

    received: list[int] = []
    controls: list[str] = []
    while len(set(received)) < len(expected) or controls[-1:] != ["live"]:
        msg = await next_message(ws)
        if msg["type"] == "event":
            received.append(msg["id"])
        else:
            controls.append(msg["type"])
    assert len(received) == len(set(received))  # nothing twice
    assert sorted(received) == expected  # everything, nothing else
    assert controls[0] == "catchup" and controls[-1] == "live"
    assert await metric(live.url, 'osiris_portal_live_catchups_total{reason="behind"}') > catchups_before
    assert await nothing_more(ws)  # still connected, and nothing left over
    await ws.close()


async def test_the_hub_marks_subscribers_behind_when_its_listener_reconnects(factory):
    """Notifications sent while the listener is away are lost: every subscriber, including one that
    subscribed during the outage, is told to catch up from the table once it listens again."""
    name = f"osiris-hub-test-{os.getpid()}-{time.monotonic_ns()}"
    hub = Hub(factory.runtime.dsn + ("&" if "?" in factory.runtime.dsn else "?") + f"application_name={name}")
    await hub.start()
    try:
        assert hub.connected.is_set()
        before = hub.subscribe(org_id=1)
        async with factory.runtime.sessions() as s:
            killed = await s.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n"
                ),
                {"n": name},
            )
        assert killed == 1
        deadline = time.monotonic() + 10
        while hub.connected.is_set():
            assert time.monotonic() < deadline, "the hub never noticed"
            await asyncio.sleep(0.01)
        assert before.overflowed
        during = hub.subscribe(org_id=1)  # nobody listens now
        assert not during.overflowed
        while not hub.connected.is_set():
            assert time.monotonic() < deadline, "the hub never reconnected"
            await asyncio.sleep(0.01)
        assert during.overflowed  # it may have missed what committed before LISTEN was back
        assert during.queue.get_nowait()["kind"] == "resync"  # and a waiting reader is woken
    finally:
        await hub.stop()


def _raw_slow_socket(port: int, cookie: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window fills quickly
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        (
            "GET /ws/board HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Cookie: osiris_session={cookie}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_slow_client_is_dropped_without_slowing_another(live, factory, person):
    reviewer = await person("reviewer")
    cookie = await session_cookie(live.url, reviewer.username)
    connected_before = await metric(live.url, "osiris_portal_live_clients")
    dropped_before = await metric(live.url, 'osiris_portal_live_dropped_total{reason="send_timeout"}')
    slow = await asyncio.to_thread(_raw_slow_socket, live.port, cookie)
    fast = await open_socket(live.url, "/ws/board", cookie=cookie)
    await until_ready(fast)
    agent = await factory.user("agent")
    async with db.transaction(factory.runtime.sessions) as s:
        task = await lifecycle.create_task(
            s, factory.actor(agent), title="Loud", repo="r", base_branch="main"
        )
    assert (await next_message(fast))["kind"] == "created"

    bulky = "x" * 4000  # a few MB in all: far more than the slow socket's buffers hold
    batches, per_batch = 20, 50
    received = 0
    last_commit = 0.0

    async def read_fast() -> float:
        nonlocal received
        while received < batches * per_batch:
            await next_message(fast, within=10)
            received += 1
        return time.monotonic()

    reader = asyncio.create_task(read_fast())
    for _ in range(batches):
        async with db.transaction(factory.runtime.sessions) as s:
            for _ in range(per_batch):
                await record_event(s, task, system_actor(task.org_id), "note", data={"pad": bulky})
        last_commit = time.monotonic()
        await asyncio.sleep(0.02)
    finished = await reader
    assert received == batches * per_batch
    # The fast client was never made to wait for the slow one's send timeout.
    assert finished - last_commit < live.settings.portal.ws_send_timeout_seconds / 2

    # Dropped while it still reads nothing: the server gave up on it without any help from it.
    deadline = time.monotonic() + live.settings.portal.ws_send_timeout_seconds + 10
    while await metric(live.url, "osiris_portal_live_clients") > connected_before + 1:
        assert time.monotonic() < deadline, "the slow client was never dropped"
        await asyncio.sleep(0.2)
    assert (
        await metric(live.url, 'osiris_portal_live_dropped_total{reason="send_timeout"}')
        == dropped_before + 1
    )

    def read_to_end() -> int:
        slow.settimeout(10)
        total = 0
        while chunk := slow.recv(1 << 16):
            total += len(chunk)
        return total

    # What was already in flight arrives, then the server closes the connection.
    assert await asyncio.to_thread(read_to_end) < batches * per_batch * len(bulky)
    slow.close()
    await fast.close()


# --- two server processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def second_process(settings, database_url, tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OSIRIS_SECRET_KEY": settings.auth.secret_key.get_secret_value(),
        "OSIRIS_RUN_WORKER": "false",
        "OSIRIS_DATA_DIR": str(tmp_path / "replica"),
        "OSIRIS_PUBLIC_URL": url,
        "OSIRIS_LOG_LEVEL": "WARNING",
    }
    env.pop("OSIRIS_ADMIN_PASSWORD", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from osiris.cli import main; raise SystemExit(main())",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=url) as c:
            for _ in range(300):
                if proc.returncode is not None:
                    raise RuntimeError((await proc.stderr.read()).decode()[-2000:])
                try:
                    if (await c.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the second server did not start")
        yield url
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_events_cross_server_processes_and_replay_on_the_other(live, second_process, factory, person):
    reviewer = await person("reviewer")
    cookie = await session_cookie(live.url, reviewer.username)  # signed in on one, valid on both
    ws = await open_socket(second_process, "/ws/board", cookie=cookie)
    await until_ready(ws)
    api, _ = await agent_api(live.url, factory)
    async with api:
        task = (await api.post("/api/v1/tasks", json={"title": "Across replicas"})).json()
        seen = await next_message(ws)
        assert seen["kind"] == "created" and seen["task_id"] == task["id"]
        await ws.close()
        await api.post(f"/api/v1/tasks/{task['id']}/claim")
        await api.post(f"/api/v1/tasks/{task['id']}/release")
    ws = await open_socket(second_process, "/ws/board", cookie=cookie, after=seen["id"])
    assert [e["kind"] for e in await until_ready(ws)] == ["claim", "release"]
    assert await nothing_more(ws)
    await ws.close()
