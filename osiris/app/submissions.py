"""Handing in work: validate, let the code host refuse what it could never publish, then store.

REST and MCP both submit through here, so a patch that does not apply is refused the same way on
every edge, before anything is written.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import lifecycle, task_queries
from osiris.app.actors import Actor
from osiris.app.artifacts import validate_artifact
from osiris.app.runtime import Runtime


async def submit(
    session: AsyncSession,
    runtime: Runtime,
    actor: Actor,
    task_id: int,
    *,
    content: Any,
    kind: str | None = "auto",
    summary: str | None = None,
    idempotency_key: str | None = None,
) -> lifecycle.Submission:
    limits = runtime.settings
    valid = validate_artifact(
        content, kind, max_bytes=limits.tasks.max_artifact_bytes, max_files=limits.tasks.max_artifact_files
    )
    host = runtime.services.code_host
    if host is not None:
        task = await task_queries.get_task(session, actor, task_id)
        # Raises PatchDoesNotApply with git's message, or InvalidArtifact when the tree it would
        # build holds something git's fsck or git_safety refuses; nothing has been written yet.
        await host.check(task, valid)
    return await lifecycle.submit_artifact(
        session, actor, task_id, artifact=valid, summary=summary, idempotency_key=idempotency_key
    )
