"""Running the queued jobs as a worker would, inside the test."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode

from osiris.app import jobs
from osiris.app.config import Settings
from osiris.app.runtime import Runtime


async def drain(runtime: Runtime, settings: Settings | None = None) -> None:
    """Every queued job, until none is left (`jobs.drain`), with the runtime's settings or these."""
    await jobs.drain(
        runtime.dsn, jobs.JobContext(runtime.sessions, settings or runtime.settings, runtime.services)
    )


async def drain_kinds(runtime: Runtime, *kinds: str, seconds: float = 60.0) -> None:
    """The queued jobs of these kinds (every kind when none is named), retries included, until none is
    left; the others stay queued (e.g. publish without running the checks).

    Like `drain`, but polling every half second: in drain mode pgqueuer otherwise waits its whole
    dequeue timeout (30 s) before it picks up a job that asked to be retried.
    """
    ctx = jobs.JobContext(runtime.sessions, runtime.settings, runtime.services)
    conn = await asyncpg.connect(runtime.dsn)
    try:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        worker = jobs.Worker(runtime.dsn, ctx)
        for name in kinds or tuple(jobs.HANDLERS):
            qm.entrypoint(name)(worker._wrap(name, jobs.HANDLERS[name]))
        run = qm.run(mode=QueueExecutionMode.drain, batch_size=5, dequeue_timeout=timedelta(seconds=0.5))
        await asyncio.wait_for(run, seconds)
    finally:
        await conn.close()
