"""Side effects as jobs on pgqueuer, a PostgreSQL-backed queue.

Why pgqueuer: it speaks asyncpg, which SQLAlchemy already uses underneath, so a job is enqueued on the
very connection — and inside the very transaction — that changes the task: the state change and its
side effect commit together or not at all. Procrastinate would need a second driver (psycopg) and a
second connection, which is exactly the gap we want to close.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import metrics
from osiris.app.runtime import Services

if TYPE_CHECKING:
    # pgqueuer is imported where it is used: by the worker (off the event loop, as a start's imports
    # would otherwise wait for it: issue 17) and by the first enqueue.
    from pgqueuer import Job, QueueManager

log = logging.getLogger(__name__)

PUBLISH_ARTIFACT = "publish_artifact"
MERGE_TASK = "merge_task"
CLOSE_TASK = "close_task"
DELIVER_MESSAGE = "deliver_message"
NOTIFY_REQUESTER = "notify_requester"
DELIVER_WEBHOOK = "deliver_webhook"  # osiris/app/outbound_webhooks/delivery.py


@dataclass
class JobContext:
    """What a job handler may use; filled in by the process that runs the worker."""

    sessions: Any  # async_sessionmaker[AsyncSession]
    settings: Any
    services: Services = field(default_factory=Services)


Handler = Callable[[dict[str, Any], JobContext], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}


def job_handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


class UnknownJobKind(ValueError):
    """OSIRIS_WORKER_JOBS or OSIRIS_WORKER_SKIP_JOBS names a job kind no handler has."""


def handlers_for(settings: Any) -> dict[str, Handler]:
    """The handlers a worker registers: every kind, or only `worker_jobs`, minus `worker_skip_jobs`.
    pgqueuer hands a worker only the kinds it registered, so a checks-only worker never sees (and
    never needs the secrets of) a publish or a reply. A misspelt name fails loudly rather than
    leaving a kind of job unworked."""
    only, skip = list(getattr(settings.worker, "jobs", [])), list(getattr(settings.worker, "skip_jobs", []))
    unknown = sorted(set(only + skip) - HANDLERS.keys())
    if unknown:
        raise UnknownJobKind(
            f"unknown job kind(s) {', '.join(unknown)}; known: {', '.join(sorted(HANDLERS))}"
        )
    return {name: h for name, h in HANDLERS.items() if (not only or name in only) and name not in skip}


async def _raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session, with the session's transaction begun on it."""
    conn = await session.connection()
    driver = (await conn.get_raw_connection()).driver_connection
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter sends BEGIN lazily with the first statement: make sure it
        # has, or our INSERT would autocommit outside the caller's transaction.
        await session.execute(text("SELECT 1"))
    return driver


async def enqueue(
    session: AsyncSession,
    entrypoint: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    delay: timedelta | None = None,
) -> int | None:
    """Enqueue in the caller's transaction; returns the job id (None if an equal job is queued)."""
    from pgqueuer import AsyncpgDriver, Queries

    queries = Queries(AsyncpgDriver(await _raw_connection(session)))
    ids = await queries.enqueue(
        entrypoint,
        json.dumps(payload).encode(),
        execute_after=delay,
        dedupe_key=dedupe_key,
        on_conflict="skip",
    )
    return ids[0]


async def running(
    session: AsyncSession, entrypoint: str, dedupe_keys: list[str], *, heartbeat_seconds: float
) -> bool:
    """Whether a live worker is running one of these jobs now. A job whose heartbeat is older than
    `heartbeat_seconds` belongs to a dead worker: it is not running, and is picked again later."""
    if not dedupe_keys:
        return False
    conn = await _raw_connection(session)
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pgqueuer WHERE entrypoint = $1 AND status = 'picked'"
            " AND dedupe_key = ANY($2::text[]) AND heartbeat > now() - make_interval(secs => $3))",
            entrypoint,
            dedupe_keys,
            heartbeat_seconds,
        )
    )


async def queue_depth(session: AsyncSession) -> dict[str, int]:
    conn = await _raw_connection(session)
    rows = await conn.fetch(
        "SELECT entrypoint, count(*) AS n FROM pgqueuer WHERE status = 'queued' GROUP BY entrypoint"
    )
    return {r["entrypoint"]: r["n"] for r in rows}


class Retry(Exception):  # noqa: N818 - reads as "raise Retry(after=...)"
    """Raised by a handler to try again later, e.g. honouring a provider's Retry-After."""

    def __init__(self, after: float, reason: str = "") -> None:
        super().__init__(reason or f"retry after {after}s")
        self.after = after


class Worker:
    """Runs the registered handlers on one dedicated connection; several workers may share a queue."""

    def __init__(self, dsn: str, ctx: JobContext, *, max_attempts: int = 8) -> None:
        self.dsn = dsn
        self.ctx = ctx
        self.max_attempts = max_attempts
        self._qm: QueueManager | None = None
        self._conn: asyncpg.Connection | None = None
        self._stopping = False

    def _wrap(self, name: str, handler: Handler) -> Callable[[Job], Awaitable[None]]:
        async def run(job: Job) -> None:
            payload = json.loads(job.payload or b"{}")
            try:
                await handler(payload, self.ctx)
            except Retry as exc:
                from pgqueuer.errors import RetryRequested

                metrics.JOB_OUTCOMES.labels(name, "retry").inc()
                raise RetryRequested(delay=timedelta(seconds=exc.after), reason=str(exc)) from exc
            except Exception:
                metrics.JOB_OUTCOMES.labels(name, "error").inc()
                log.exception("job failed", extra={"entrypoint": name, "attempt": job.attempts})
                raise
            metrics.JOB_OUTCOMES.labels(name, "ok").inc()

        return run

    async def run(self, *, reconnect_seconds: float = 1.0) -> None:
        """Work until stop(). The worker's connection dies with the database (a restart, a failover):
        connect again after a pause rather than leave the queue unworked until the process restarts."""
        while not self._stopping:
            try:
                await self._work()
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("job worker lost the database (%s); reconnecting", type(exc).__name__)
            if not self._stopping:
                await asyncio.sleep(reconnect_seconds)

    async def _work(self) -> None:
        await asyncio.to_thread(importlib.import_module, "pgqueuer")  # the loop serves meanwhile
        from pgqueuer import AsyncpgDriver, DatabaseRetryEntrypointExecutor, Queries, QueueManager

        self._conn = await asyncpg.connect(self.dsn)
        qm = QueueManager(Queries(AsyncpgDriver(self._conn)))
        for name, handler in handlers_for(self.ctx.settings).items():
            qm.entrypoint(
                name,
                executor_factory=lambda params: DatabaseRetryEntrypointExecutor(
                    params, max_attempts=self.max_attempts, max_delay=timedelta(minutes=10)
                ),
            )(self._wrap(name, handler))
        self._qm = qm
        heartbeat = getattr(self.ctx.settings.job, "heartbeat_timeout_seconds", 30.0)
        poll = getattr(self.ctx.settings.job, "poll_seconds", 5.0)
        try:
            await qm.run(
                dequeue_timeout=timedelta(seconds=poll),
                batch_size=5,
                heartbeat_timeout=timedelta(seconds=heartbeat),
            )
        finally:
            await self._conn.close()

    def stop(self) -> None:
        self._stopping = True
        if self._qm is not None:
            self._qm.shutdown.set()


async def drain(dsn: str, ctx: JobContext, *, limit_seconds: float = 30.0) -> None:
    """Run every queued job until the queue is empty (tests, `osiris worker --drain`)."""
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    conn = await asyncpg.connect(dsn)
    try:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        worker = Worker(dsn, ctx)
        for name, handler in handlers_for(ctx.settings).items():
            qm.entrypoint(name)(worker._wrap(name, handler))
        run = qm.run(mode=QueueExecutionMode.drain, batch_size=5, dequeue_timeout=timedelta(seconds=0.5))
        await asyncio.wait_for(run, limit_seconds)
    finally:
        await conn.close()
