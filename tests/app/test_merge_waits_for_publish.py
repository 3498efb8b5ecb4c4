"""An approval's merge waits for a publish of the same task that a live worker is still running.

Otherwise the merge (which deletes the branch) and a publish that began before the approval could
interleave, and the publish would push the branch and open a change request again afterwards.
The "other worker" here is a real pgqueuer row in the picked state, as a worker leaves it mid-job.
"""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select, text

from osiris.app import db, effects, jobs, lifecycle
from osiris.app.artifacts import validate_artifact
from osiris.app.models import TaskEvent


async def _approved_task(runtime, factory) -> tuple[int, int]:
    agent = factory.actor(await factory.user("agent"))
    reviewer = factory.actor(await factory.user("reviewer"))
    async with db.transaction(runtime.sessions) as s:
        task = await lifecycle.create_task(
            s, agent, title="t", repo=f"t-{secrets.token_hex(4)}", base_branch="main"
        )
        await lifecycle.claim_task(s, agent, task.id, lease_seconds=60)
        art = validate_artifact({"merge-wait.txt": "hi\n"}, "files", max_bytes=1000)
        submitted = await lifecycle.submit_artifact(s, agent, task.id, artifact=art)
    artifact_id = submitted.artifact.id
    # Published (a version is approvable only then) by a run of the handler; its queued job stays
    # queued, as a retry of the same publish would be while it runs.
    ctx = jobs.JobContext(runtime.sessions, runtime.settings, runtime.services)
    await effects.publish_artifact({"artifact_id": artifact_id, "task_id": task.id}, ctx)
    async with db.transaction(runtime.sessions) as s:
        await lifecycle.approve_task(s, reviewer, task.id)
        # the publish job, as a live worker holds it while it runs
        await s.execute(
            text("UPDATE pgqueuer SET status = 'picked' WHERE dedupe_key = :k"),
            {"k": f"publish-{artifact_id}"},
        )
    return task.id, artifact_id


async def _merged(runtime, task_id: int) -> bool:
    async with runtime.sessions() as s:
        kinds = (await s.execute(select(TaskEvent.kind).where(TaskEvent.task_id == task_id))).scalars().all()
    return "merged" in kinds


async def test_a_running_publish_holds_the_merge_back_and_a_dead_workers_does_not(runtime, factory):
    ctx = jobs.JobContext(runtime.sessions, runtime.settings, runtime.services)
    task_id, artifact_id = await _approved_task(runtime, factory)

    with pytest.raises(jobs.Retry, match="still running"):
        await effects.merge_task({"task_id": task_id}, ctx)
    assert not await _merged(runtime, task_id)

    # The worker holding it died: its heartbeat goes stale, and the merge no longer waits for it.
    stale = runtime.settings.job.heartbeat_timeout_seconds + 5
    async with db.transaction(runtime.sessions) as s:
        await s.execute(
            text("UPDATE pgqueuer SET heartbeat = now() - make_interval(secs => :age) WHERE dedupe_key = :k"),
            {"age": stale, "k": f"publish-{artifact_id}"},
        )
    await effects.merge_task({"task_id": task_id}, ctx)
    assert await _merged(runtime, task_id)
