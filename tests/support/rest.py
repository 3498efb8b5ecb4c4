"""A task's steps over OSIRIS's REST API, as agents and reviewers take them, through any client (the
ASGI one, a live server's, the GitHub harness's); each asserts the step worked."""

from __future__ import annotations

from typing import Any

import httpx


async def claimed_task(
    client: httpx.AsyncClient, agent_h: dict, *, creator_h: dict | None = None, **fields: Any
) -> int:
    """A task filed with these fields (title, repo, ...) by `creator_h` (else by the agent itself), then
    claimed by the agent; its id."""
    r = await client.post("/api/v1/tasks", json=fields, headers=creator_h or agent_h)
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    r = await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent_h)
    assert r.status_code == 200, r.text
    return task_id


async def submitted(
    client: httpx.AsyncClient, agent_h: dict, task_id: int, content: Any, **fields: Any
) -> dict:
    """A new version of the task: `content` (a patch, or files by path) plus kind, summary, ...; the
    answer's JSON."""
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": content, **fields}, headers=agent_h
    )
    assert r.status_code == 201, r.text
    return r.json()


async def task_view(client: httpx.AsyncClient, headers: dict, task_id: int) -> dict:
    """The task as GET /api/v1/tasks/{id} shows it (status, versions, messages)."""
    r = await client.get(f"/api/v1/tasks/{task_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()
