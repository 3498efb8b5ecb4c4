"""WebSockets `/ws/board` and `/ws/tasks/{id}`: replay what a client missed, then stream live events.

Every event reaches every connected client once, however far behind it falls:

- On connect with `?after=<id>` the client is caught up from the TaskEvent table in pages by id,
  then subscribed to the hub, then sent one more page (what committed meanwhile), then `ready`,
  then live events from its queue, skipping ids a page already sent.
- When its bounded queue overflows (it reads slower than events come, or the event loop was busy)
  or the hub's listener reconnects, the connection switches to catch-up: `{"type": "catchup"}`,
  the same paging from the last id it was sent, then `{"type": "live"}`. Memory stays bounded (one
  queue, one page, the ids of the last seconds); other clients are never held up.
- Ids are taken at INSERT, commits come in any order: each page also takes the events below the
  cursor created within `events.RESUME_OVERLAP` of it, minus the ids already sent (`_Sent`).
- A client whose socket takes nothing for the send timeout is disconnected; it resumes with
  `?after=` and loses nothing either.
- A socket lives only as long as the credential that opened it (osiris/app/streams.py): revoking
  the API token or signing out closes it on every replica (1008, with the reason), and each socket
  checks its credential again every `live_recheck_seconds` (a deactivated user, an expired JWT). One
  token or sign-in holds at most `live_max_per_credential` sockets per process; the next is closed
  with 1008 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from starlette.websockets import WebSocketDisconnect

from osiris.app import db, streams, task_queries
from osiris.app.actors import Actor
from osiris.app.auth import actor_for, actor_from_token
from osiris.app.errors import OsirisError
from osiris.app.models import TaskEvent
from osiris.app.realtime import Hub, Subscription
from osiris.app.runtime import Runtime
from osiris.portal import events
from osiris.portal.access import portal_session, runtime_of, user_of_session

log = logging.getLogger(__name__)
router = APIRouter()

CLOSE_POLICY = 1008  # not signed in, or not allowed to see this task (sent before accepting: HTTP 403)
BATCH = 200  # live events taken from the queue at once (one query for the rows)
SENT_WINDOW_MAX = 50_000  # ids remembered per connection at most, whatever the event rate
CATCHUP_QUERIES = 4  # page queries running at once per process: catching up never drains the pool

CLIENTS = Gauge("osiris_portal_live_clients", "Connected live-update WebSocket clients")
DROPPED = Counter("osiris_portal_live_dropped_total", "Live clients cut off for falling behind", ["reason"])
CLOSED = Counter(
    "osiris_portal_live_closed_total", "Live clients closed by policy", ["reason"]
)  # revoked | recheck | too_many
CATCHUPS = Counter(
    "osiris_portal_live_catchups_total", "Live clients switched to catch-up from the event table", ["reason"]
)


class _Dropped(Exception):
    """The client's socket did not take a message in time."""


@dataclass
class _ProcessState:
    """The portal's own per-process objects, kept beside the runtime (the core knows nothing of them)."""

    cache: events.EventCache
    gate: asyncio.Semaphore
    sending: set[_Stream] = dataclasses.field(default_factory=set)  # the streams the watchdog watches
    watchdog: asyncio.Task[None] | None = None

    def watch(self, stream: _Stream) -> None:
        self.sending.add(stream)
        if self.watchdog is None or self.watchdog.done():
            every = min(1.0, stream.timeout / 4)
            self.watchdog = asyncio.get_running_loop().create_task(self._watch(every))

    async def _watch(self, every: float) -> None:
        """One timer for every socket of the process instead of one per message sent: drops a client
        whose socket has taken nothing for the send timeout (checked every quarter of it, at most
        every second). Ends with the last stream; the next one starts it again."""
        loop = asyncio.get_running_loop()
        while self.sending:
            await asyncio.sleep(every)
            now = loop.time()
            for stream in list(self.sending):
                if stream.sending_since is not None and now - stream.sending_since > stream.timeout:
                    stream.drop()


_STATE: weakref.WeakKeyDictionary[Runtime, _ProcessState] = weakref.WeakKeyDictionary()


def _state(runtime: Runtime) -> _ProcessState:
    state = _STATE.get(runtime)
    if state is None:
        cache = events.EventCache(runtime.sessions)
        state = _STATE[runtime] = _ProcessState(cache, asyncio.Semaphore(CATCHUP_QUERIES))
        if runtime.services.hub is not None:
            # Each batch of notified events is loaded and encoded once, before any client of this
            # process is woken: every client then sends the same ready text and waits on nothing.
            runtime.services.hub.prepare_with(functools.partial(_prepare, cache))
    return state


async def _prepare(cache: events.EventCache, batch: list[dict[str, Any]]) -> None:
    await cache.get_many(i for note in batch if isinstance(i := note.get("id"), int))


def event_cache(runtime: Runtime) -> events.EventCache:
    return _state(runtime).cache


def forget_events(runtime: Runtime) -> None:
    """Drop the cached events (tests truncate tables and restart ids; a real database never does)."""
    _STATE.pop(runtime, None)


def _catchup_gate(runtime: Runtime) -> asyncio.Semaphore:
    return _state(runtime).gate


def _origin_ok(ws: WebSocket) -> bool:
    """A cookie rides along on any page's WebSocket; only our own pages may use it."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser: it cannot have borrowed someone's cookie
    allowed = {
        ws.headers.get("host", "").lower(),
        urlsplit(ws.app.state.settings.server.public_url).netloc.lower(),
    }
    return urlsplit(origin).netloc.lower() in allowed


@dataclass(frozen=True)
class Credential:
    actor: Actor
    keys: tuple[str, ...]  # the token's or sign-in's stream key, then the user's


async def authenticate(ws: WebSocket) -> Credential | None:
    runtime = runtime_of(ws)
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
        try:
            async with db.transaction(runtime.sessions) as session:
                actor = await actor_from_token(
                    session,
                    token,
                    signing_key=runtime.settings.signing_key(),
                    cache=runtime.services.token_cache,  # evicted on revocation, like REST's
                )
        except OsirisError:
            return None
        assert actor.user_id is not None  # noqa: S101 - a token names a user
        return Credential(actor, (streams.token_key(token), streams.user_key(actor.user_id)))
    if not _origin_ok(ws):
        return None
    signed_in = portal_session(ws)
    user = await user_of_session(ws, signed_in)
    if user is None:
        return None
    return Credential(actor_for(user), (streams.session_key(signed_in.csrf), streams.user_key(user.id)))


@router.websocket("/ws/board")
async def board_socket(websocket: WebSocket, after: int | None = None) -> None:
    await serve(websocket, task_id=None, after=after)


@router.websocket("/ws/tasks/{task_id}")
async def task_socket(websocket: WebSocket, task_id: int, after: int | None = None) -> None:
    await serve(websocket, task_id=task_id, after=after)


async def serve(ws: WebSocket, *, task_id: int | None, after: int | None) -> None:
    runtime = runtime_of(ws)
    credential = await authenticate(ws)
    if credential is None:
        await ws.close(code=CLOSE_POLICY)
        return
    actor = credential.actor
    if task_id is not None:
        try:
            async with runtime.sessions() as session:
                await task_queries.get_task(session, actor, task_id)  # another org's task: not found
        except OsirisError:
            await ws.close(code=CLOSE_POLICY)
            return
    open_streams: streams.OpenStreams = runtime.services.open_streams
    revoked = asyncio.Event()
    why: list[str] = []

    def close(reason: str) -> None:
        why.append(reason)
        revoked.set()

    try:
        handle = open_streams.open(credential.keys, close)
    except streams.TooMany as exc:
        # Accepted only to say why: a close before accepting reaches the client as a bare HTTP 403.
        await ws.accept()
        await ws.close(code=CLOSE_POLICY, reason=str(exc))
        CLOSED.labels("too_many").inc()
        return
    await ws.accept()
    CLIENTS.inc()
    stream = asyncio.create_task(_Stream(ws, runtime, actor, task_id=task_id).run(after))
    listen = asyncio.create_task(_until_client_leaves(ws))
    gone = asyncio.create_task(revoked.wait())
    check = asyncio.create_task(_recheck(ws, runtime.settings.live.recheck_seconds, close))
    tasks = (stream, listen, gone, check)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        CLIENTS.dec()
        open_streams.release(handle)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if why:
            CLOSED.labels("recheck" if why[0] == RECHECK_FAILED else "revoked").inc()
            with contextlib.suppress(Exception):  # the client may be gone already
                await ws.close(code=CLOSE_POLICY, reason=why[0])
        if stream.done() and not stream.cancelled() and isinstance(stream.exception(), _Dropped):
            DROPPED.labels("send_timeout").inc()
            log.info("dropped a live client that stopped reading", extra={"org_id": actor.org_id})


RECHECK_FAILED = "credential no longer valid"


async def _recheck(ws: WebSocket, interval: float, close: Any) -> None:
    """Now and then, the credential again: what no NOTIFY announces (a user deactivated in the
    database, an expired JWT, a changed password) or a NOTIFY missed while the hub reconnected."""
    while True:
        await asyncio.sleep(interval)
        try:
            still = await authenticate(ws)
        except Exception:  # the database is away: keep the socket; the next check decides
            log.warning("could not recheck a live client's credential", exc_info=True)
            continue
        if still is None:
            close(RECHECK_FAILED)
            return


async def _until_client_leaves(ws: WebSocket) -> None:
    """Clients say nothing after connecting; reading notices when they go."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


class _Sent:
    """The ids this connection has sent lately, so a page or a notification never sends one twice.

    Kept while created within 3 x RESUME_OVERLAP of the newest sent (by the event's created_at).
    Why that suffices: an event committing late, below the cursor, was created at most one overlap
    before the cursor's event, which was created at most one overlap before the newest (transactions
    last less than an overlap). `floor` is the highest id forgotten: no late event can be that old,
    so pages need not look below it.
    """

    def __init__(self) -> None:
        self._ids: dict[int, float] = {}  # id -> created_at, in the order sent
        self.newest = float("-inf")
        self.floor: int | None = None

    def __contains__(self, event_id: int) -> bool:
        return event_id in self._ids

    def ids(self) -> list[int]:
        return list(self._ids)

    def add(self, event_id: int, created_at: float) -> None:
        self._ids[event_id] = created_at
        if created_at > self.newest:
            self.newest = created_at
        horizon = self.newest - _KEEP_SECONDS
        while self._ids:
            oldest_id, oldest_at = next(iter(self._ids.items()))
            # Beyond the cap (hundreds of events a second for one organization) memory wins over
            # the overlap rule: the floor then rises faster than the rule would allow.
            if oldest_at >= horizon and len(self._ids) <= SENT_WINDOW_MAX:
                break
            del self._ids[oldest_id]
            self.floor = oldest_id if self.floor is None else max(self.floor, oldest_id)


_KEEP_SECONDS = 3 * events.RESUME_OVERLAP.total_seconds()


class _Stream:
    def __init__(self, ws: WebSocket, runtime: Runtime, actor: Actor, *, task_id: int | None) -> None:
        self.ws, self.runtime, self.actor, self.task_id = ws, runtime, actor, task_id
        self.hub: Hub = runtime.services.hub
        self.cache = event_cache(runtime)
        self.timeout = runtime.settings.portal.ws_send_timeout_seconds
        self.page_size = max(1, runtime.settings.portal.ws_replay_limit)
        self.sent = _Sent()
        self.last: int | None = None  # the highest id sent (or the client's `after`)
        self.sub: Subscription | None = None
        self.sending_since: float | None = None  # loop time the send in progress began
        self.dropped = False
        self._task: asyncio.Task[None] | None = None
        self._clock = asyncio.get_running_loop().time

    async def send(self, text: str) -> None:
        # The process's watchdog (_ProcessState._watch) drops us if this takes the send timeout:
        # a timer per message cost more than the rest of a live delivery.
        self.sending_since = self._clock()
        # ASGI's own message, not send_text(): one coroutine fewer per delivery.
        await self.ws.send({"type": "websocket.send", "text": text})
        self.sending_since = None

    def drop(self) -> None:
        """The socket took nothing for the send timeout: end the stream (run raises _Dropped)."""
        self.dropped = True
        if self._task is not None:
            self._task.cancel()

    async def run(self, after: int | None) -> None:
        self._task = asyncio.current_task()
        state = _state(self.runtime)
        state.watch(self)
        try:
            if after is None:  # live from now on: no replay
                self.sub = self.hub.subscribe(self.actor.org_id, self.task_id)
                self.last = await self._newest_id()
            else:
                self.last = after
                async with self.runtime.sessions() as session:
                    had = await session.scalar(select(TaskEvent.created_at).where(TaskEvent.id == after))
                if had is not None:  # the client has `after` itself: later pages must not resend it
                    self.sent.add(after, had.timestamp())
                await self._catch_up()
            await self.send(_control("ready", last_id=self.last if after is not None else after))
            await self._live()
        except asyncio.CancelledError:
            if self.dropped:
                raise _Dropped from None
            raise
        finally:
            state.sending.discard(self)
            if self.sub is not None:
                self.hub.unsubscribe(self.sub)

    async def _newest_id(self) -> int:
        scope = [TaskEvent.org_id == self.actor.org_id]
        if self.task_id is not None:
            scope.append(TaskEvent.task_id == self.task_id)
        async with self.runtime.sessions() as session:
            return await session.scalar(select(func.coalesce(func.max(TaskEvent.id), 0)).where(*scope)) or 0

    async def _page(self) -> int:
        """Send one page from the table; return how many rows it had."""
        assert self.last is not None  # noqa: S101 - set before any page
        async with _catchup_gate(self.runtime), self.runtime.sessions() as session:
            ids = await events.page_ids(
                session,
                self.actor.org_id,
                after=self.last,
                task_id=self.task_id,
                limit=self.page_size,
                sent=self.sent.ids(),
                floor=self.sent.floor,
            )
        loaded = await self.cache.get_many(ids)
        for event_id in ids:
            row = loaded.get(event_id)
            if row is not None and row.org_id == self.actor.org_id:
                await self._send_event(event_id, row)
        return len(ids)

    async def _send_event(self, event_id: int, row: events.Loaded) -> None:
        await self.send(row.text)
        self.sent.add(event_id, row.created_at)
        self.last = event_id if self.last is None else max(self.last, event_id)

    async def _catch_up(self) -> None:
        """Page through the table until a page comes back short, subscribe, then one more page for
        what committed in between: from then on the queue has the rest."""
        if self.sub is not None:
            self.hub.unsubscribe(self.sub)
            self.sub = None
        while await self._page() >= self.page_size:
            pass
        self.sub = self.hub.subscribe(self.actor.org_id, self.task_id)
        while await self._page() >= self.page_size:
            pass

    async def _live(self) -> None:
        while True:
            assert self.sub is not None  # noqa: S101 - subscribed by run() and _catch_up()
            sub = self.sub
            # No timer needed: whatever marks the subscription behind leaves something in its
            # queue (the events that did not fit, or the hub's resync note), which wakes us.
            first = await sub.queue.get()
            if sub.overflowed:  # the hub dropped us, or its listener reconnected: the table has it all
                CATCHUPS.labels("behind" if self.hub.connected.is_set() else "listener").inc()
                await self.send(_control("catchup", after=self.last))
                await self._catch_up()
                await self.send(_control("live", last_id=self.last))
                continue
            notes = [first]
            while len(notes) < BATCH and not sub.queue.empty():
                notes.append(sub.queue.get_nowait())
            ids = [
                event_id
                for note in notes
                if isinstance(event_id := note.get("id"), int) and event_id not in self.sent
            ]
            if not ids:
                continue
            # The hub had the batch loaded before waking us (see _state): no wait, as a rule.
            loaded = self.cache.loaded(ids)
            if loaded is None:
                loaded = await self.cache.get_many(ids)
            for event_id in ids:
                row = loaded.get(event_id)
                if row is not None and row.org_id == self.actor.org_id and event_id not in self.sent:
                    await self._send_event(event_id, row)


def _control(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))
