"""Shared steps of the review-reminder tests: a task in review, reviewers with verified addresses,
a reminder scan at a chosen moment."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from osiris.app import db, reminders
from osiris.app.models import Organization, Task, User, UserChannel


async def in_review(client, agent: dict, *, title: str = "tidy the readme", files: dict | None = None) -> int:
    """A task filed, claimed and submitted over REST; call `drain` to publish it."""
    r = await client.post("/api/v1/tasks", json={"title": title}, headers=agent)
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
    await submit(client, agent, task_id, files or {"README.md": "# widgets\n\nnow tidy\n"})
    return task_id


async def submit(client, agent: dict, task_id: int, files: dict) -> None:
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": files, "kind": "files"}, headers=agent
    )
    assert r.status_code == 201, r.text


async def verified(runtime, user: User, channel: str, address: str) -> str:
    """Register `address` for `user` and mark it verified (the verify flow has its own tests)."""
    async with db.transaction(runtime.sessions) as session:
        row = UserChannel(org_id=user.org_id, user_id=user.id, channel=channel, address=address)
        row.verified_at = datetime.now(UTC)
        session.add(row)
    return address


def slack_address() -> str:
    return f"T0001:U{secrets.token_hex(4).upper()}"


def phone() -> str:
    return "+1555" + "".join(secrets.choice("0123456789") for _ in range(7))


async def scan(runtime, *, hours: float, now: datetime | None = None) -> list[int]:
    moment = (now or datetime.now(UTC)) + timedelta(hours=hours)
    async with db.transaction(runtime.sessions) as session:
        return await reminders.scan_due(session, runtime.settings, now=moment)


async def task(runtime, task_id: int) -> Task:
    async with runtime.sessions() as session:
        return await session.get(Task, task_id)


async def set_org(runtime, org_id: int, **values) -> None:
    async with db.transaction(runtime.sessions) as session:
        await session.execute(update(Organization).where(Organization.id == org_id).values(**values))


async def event_kinds(runtime, task_id: int) -> list[str]:
    from osiris.app.models import TaskEvent

    async with runtime.sessions() as session:
        rows = await session.execute(
            select(TaskEvent.kind).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)
        )
        return list(rows.scalars())


async def fresh_task_ids(runtime) -> None:
    """Task ids start somewhere new: every test's tables restart at 1, but the local git host's
    repository is the session's, and `osiris/task-1` there is still an earlier test's branch."""
    async with db.transaction(runtime.sessions) as session:
        await session.execute(
            select(func.setval(func.pg_get_serial_sequence("tasks", "id"), secrets.randbelow(10**9) + 10**6))
        )
