"""`osiris worker --drain` runs queued side effects in a process of its own, with the same ports."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from osiris.app import db, jobs, lifecycle
from osiris.app.artifacts import validate_artifact
from osiris.app.config import Settings
from osiris.app.models import Artifact, TaskEvent


async def test_worker_process_publishes_a_submission(database_url, runtime, factory, tmp_path):
    agent = factory.actor(await factory.user("agent"))
    async with db.transaction(runtime.sessions) as s:
        task = await lifecycle.create_task(s, agent, title="t", repo="default", base_branch="main")
        await lifecycle.claim_task(s, agent, task.id, lease_seconds=60)
        art = validate_artifact({"hello.txt": "hi\n"}, "files", max_bytes=1000)
        await lifecycle.submit_artifact(s, agent, task.id, artifact=art)

    env = os.environ | {
        "DATABASE_URL": database_url,
        "OSIRIS_SECRET_KEY": "worker-test-secret",
        "OSIRIS_DATA_DIR": str(tmp_path / "worker-data"),
    }
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "osiris.cli", "worker", "--drain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]

    async with runtime.sessions() as s:
        artifact = (await s.execute(select(Artifact).where(Artifact.task_id == task.id))).scalar_one()
        kinds = (await s.execute(select(TaskEvent.kind).where(TaskEvent.task_id == task.id))).scalars().all()
    assert artifact.commit_sha and len(artifact.commit_sha) == 40
    assert artifact.branch == f"osiris/task-{task.id}"
    assert "published" in kinds
    # the commit is real, in the worker's local git host
    repo = tmp_path / "worker-data" / "repos" / "default.git"
    show = await asyncio.to_thread(
        subprocess.run,
        ["git", "--git-dir", str(repo), "show", f"{artifact.commit_sha}:hello.txt"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert show.stdout == "hi\n"


async def _queued(runtime) -> dict[str, int]:
    async with runtime.sessions() as s:
        return await jobs.queue_depth(s)


def _worker(database_url: str, data_dir, *flags: str) -> subprocess.CompletedProcess:
    env = os.environ | {
        "DATABASE_URL": database_url,
        "OSIRIS_SECRET_KEY": "worker-test-secret",
        "OSIRIS_DATA_DIR": str(data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "osiris.cli", "worker", "--drain", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_a_worker_takes_only_the_job_kinds_it_is_given(database_url, runtime, factory, tmp_path):
    """The checks worker of a deployment (--jobs run_checks) never runs a publish, whose secrets it
    does not hold; the main worker (--skip-jobs run_checks) never runs agent code."""
    agent = factory.actor(await factory.user("agent"))
    async with db.transaction(runtime.sessions) as s:
        task = await lifecycle.create_task(s, agent, title="t", repo="default", base_branch="main")
        await lifecycle.claim_task(s, agent, task.id, lease_seconds=60)
        art = validate_artifact({"hello.txt": "hi\n"}, "files", max_bytes=1000)
        await lifecycle.submit_artifact(s, agent, task.id, artifact=art)
    assert (await _queued(runtime)).get(jobs.PUBLISH_ARTIFACT) == 1

    done = await asyncio.to_thread(_worker, database_url, tmp_path / "d", "--jobs", "run_checks")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (await _queued(runtime)).get(jobs.PUBLISH_ARTIFACT) == 1  # untouched

    done = await asyncio.to_thread(
        _worker, database_url, tmp_path / "d", "--skip-jobs", "run_checks,merge_task"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert jobs.PUBLISH_ARTIFACT not in await _queued(runtime)
    async with runtime.sessions() as s:
        artifact = (await s.execute(select(Artifact).where(Artifact.task_id == task.id))).scalar_one()
    assert artifact.commit_sha


async def test_a_misspelt_job_kind_stops_the_worker_at_start(database_url, runtime, tmp_path):
    done = await asyncio.to_thread(_worker, database_url, tmp_path / "d", "--jobs", "run_check")
    assert done.returncode != 0
    assert "unknown job kind(s) run_check" in done.stderr
    assert "run_checks" in done.stderr  # the known ones are named


def test_worker_job_settings_read_commas_or_json(monkeypatch):
    monkeypatch.setenv("OSIRIS_WORKER_JOBS", "run_checks, deliver_webhook")
    monkeypatch.setenv("OSIRIS_WORKER_SKIP_JOBS", '["merge_task"]')
    s = Settings(db={"url": "postgresql://x@127.0.0.1/x"}, auth={"secret_key": "k"})
    assert s.worker.jobs == ["run_checks", "deliver_webhook"]
    assert s.worker.skip_jobs == ["merge_task"]
    import osiris.server  # noqa: F401 - registers every job kind, as a process does at start

    assert set(jobs.handlers_for(s)) == {"run_checks", "deliver_webhook"}
    with pytest.raises(jobs.UnknownJobKind):
        jobs.handlers_for(s.model_copy(update={"worker": {"jobs": ["publish"]}}))
