"""`osiris worker --drain` runs queued side effects in a process of its own, with the same ports."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from sqlalchemy import select

from osiris.app import db, lifecycle
from osiris.app.artifacts import validate_artifact
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
