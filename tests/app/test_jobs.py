"""Jobs commit with the state change or not at all, run on a real worker, and honour Retry-After."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from osiris.app import db, jobs, lifecycle
from osiris.server import asyncpg_dsn

CALLS: list[tuple[str, dict, float]] = []


@jobs.job_handler("test_echo")
async def _echo(payload, ctx):
    CALLS.append(("echo", payload, time.monotonic()))


@jobs.job_handler("test_flaky")
async def _flaky(payload, ctx):
    CALLS.append(("flaky", payload, time.monotonic()))
    if sum(1 for c in CALLS if c[0] == "flaky") == 1:
        raise jobs.Retry(after=1.0, reason="429 Retry-After: 1")


async def _queued(database_url: str) -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    rows = await conn.fetch("SELECT entrypoint FROM pgqueuer ORDER BY id")
    await conn.close()
    return [r["entrypoint"] for r in rows]


async def test_a_rolled_back_transaction_enqueues_nothing(runtime, database_url, factory):
    agent = factory.actor(await factory.user("agent"))
    with pytest.raises(RuntimeError):
        async with db.transaction(runtime.sessions) as s:
            await jobs.enqueue(s, "test_echo", {"n": 1})
            raise RuntimeError("crash before commit")
    assert await _queued(database_url) == []
    async with db.transaction(runtime.sessions) as s:
        task = await lifecycle.create_task(s, agent, title="t", repo="default", base_branch="main")
        await lifecycle.claim_task(s, agent, task.id, lease_seconds=60)
        from osiris.app.artifacts import validate_artifact

        await lifecycle.submit_artifact(
            s, agent, task.id, artifact=validate_artifact("# x\n", "text", max_bytes=99)
        )
    assert await _queued(database_url) == [jobs.PUBLISH_ARTIFACT]


async def test_worker_runs_jobs_and_retries_after_the_requested_delay(runtime, settings):
    CALLS.clear()
    async with db.transaction(runtime.sessions) as s:
        await jobs.enqueue(s, "test_echo", {"n": 7})
        await jobs.enqueue(s, "test_flaky", {"n": 8})
    worker = jobs.Worker(runtime.dsn, jobs.JobContext(runtime.sessions, settings, runtime.services))
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            if sum(1 for c in CALLS if c[0] == "flaky") >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    assert ("echo", {"n": 7}) in [(c[0], c[1]) for c in CALLS]
    flaky = [c[2] for c in CALLS if c[0] == "flaky"]
    assert len(flaky) == 2
    assert flaky[1] - flaky[0] >= 0.9  # the retry waited as asked
