"""Tasks in the states the portal's pages show (made through the services, or over REST and
published by the local git host), and reading the pages back."""

from __future__ import annotations

import re
import secrets

from osiris.app import db, lifecycle
from osiris.app.artifacts import validate_artifact
from osiris.app.models import Task
from tests.support.jobs import drain
from tests.support.rest import claimed_task, submitted


async def make_task(
    factory, org=None, *, title="Fix the login page", submit: list | None = None, repo: str = "web"
) -> tuple[Task, object]:
    """A task created by an agent, optionally claimed and submitted once per entry of `submit`."""
    agent = await factory.user("agent", org=org)
    actor = factory.actor(agent)
    async with db.transaction(factory.runtime.sessions) as s:
        task = await lifecycle.create_task(
            s, actor, title=title, description="The button is blue.", repo=repo, base_branch="main"
        )
    for i, content in enumerate(submit or []):
        async with db.transaction(factory.runtime.sessions) as s:
            if i == 0:
                await lifecycle.claim_task(s, actor, task.id, lease_seconds=600)
            await lifecycle.submit_artifact(
                s,
                actor,
                task.id,
                artifact=validate_artifact(content, "auto", max_bytes=10**6),
                summary=f"v{i + 1}",
            )
        if i < len(submit) - 1:
            async with db.transaction(factory.runtime.sessions) as s:
                reviewer = await factory.user("reviewer", org=org)
                await lifecycle.request_changes(
                    s, factory.actor(reviewer), task.id, feedback="again", lease_seconds=600
                )
    return task, agent


async def status_of(factory, task_id: int) -> str:
    async with factory.runtime.sessions() as s:
        return (await s.get(Task, task_id)).status


async def published(client, runtime, agent: dict, content, *, kind: str = "patch") -> tuple[int, str]:
    repo = f"chg-{secrets.token_hex(4)}"
    task_id = await claimed_task(client, agent, title="Change it", repo=repo)
    body = content.format(repo=repo) if isinstance(content, str) else content
    await submitted(client, agent, task_id, body, kind=kind)
    await drain(runtime)
    return task_id, repo


def section(html: str) -> str:
    match = re.search(r'<section id="changes".*?</section>', html, re.DOTALL)
    assert match, "no Files changed section"
    return match.group(0)
