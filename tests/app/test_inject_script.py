"""scripts/inject_task.py creates a task through the channels' own intake path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from osiris.app.models import Task, TaskEvent

ROOT = Path(__file__).resolve().parents[2]


def _run(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = os.environ | {"DATABASE_URL": database_url, "OSIRIS_SECRET_KEY": "test-secret-for-the-script"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "inject_task.py"), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_flags_create_a_task_with_priority_from_keywords(database_url, runtime, factory):
    await factory.org()
    out = _run(
        database_url, "--title", "Fix login", "--description", "urgent: 500 on /login", "--requester", "ops"
    )
    assert out.returncode == 0, out.stderr
    task_id = int(out.stdout.strip())
    async with runtime.sessions() as s:
        task = await s.get(Task, task_id)
        kinds = (await s.execute(select(TaskEvent.kind).where(TaskEvent.task_id == task_id))).scalars().all()
    assert (task.title, task.status, task.channel, task.requester) == (
        "Fix login",
        "PENDING",
        "script",
        "ops",
    )
    assert task.priority == 3  # "urgent"
    assert kinds == ["created"]


async def test_prompts_when_no_flags_are_given(database_url, runtime, factory):
    await factory.org()
    out = _run(database_url, stdin="Add a README\nExplain how to run it\n")
    assert out.returncode == 0, out.stderr
    assert "Title:" in out.stderr
    async with runtime.sessions() as s:
        task = await s.get(Task, int(out.stdout.strip()))
    assert task.title == "Add a README" and "Explain how to run it" in task.description
