"""The task event log: one row per thing that happened to a task, announced to live clients.

`record_event` appends to `task_events` and calls `pg_notify` in one statement, so an event is seen
(by the realtime hub, the portal, MCP resource subscribers and outbound webhooks) only when the
caller's transaction commits. The state machine (`lifecycle`) writes one for every move; jobs and
edges write the others (publish results, checks, CI results, notifications).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app.actors import Actor
from osiris.app.models import Task
from osiris.app.outbound_webhooks import delivery, subscriptions

EVENTS_CHANNEL = "osiris_events"

# Statements on the hot paths are built once: composing them per call costs more than running them.
# The claim statements in `lifecycle` use the same INSERT and announcement in their `ev` CTE.
INSERT_EVENT_SQL = """
    INSERT INTO task_events (org_id, task_id, kind, actor_id, actor_name, from_status, to_status, data)
    {values}
    RETURNING id, task_id, org_id, kind, to_status
"""
ANNOUNCE_SQL = """
    pg_notify('osiris_events', json_build_object(
        'id', ev.id, 'task_id', ev.task_id, 'org_id', ev.org_id, 'kind', ev.kind, 'status', {status}
    )::text)
"""
# Composed at import time from constants only (no input reaches the SQL text): hence the noqa.
_RECORD_EVENT = text(
    "WITH ev AS ("  # noqa: S608
    + INSERT_EVENT_SQL.format(
        values="VALUES (:org_id, :task_id, :kind, :actor_id, :actor_name, :from_status, :to_status, "
        "CAST(:data AS jsonb))"
    )
    + ") SELECT ev.id, "
    + ANNOUNCE_SQL.format(status="CAST(:status AS text)")
    + ", "
    + subscriptions.MATCHING_SUBSCRIPTIONS_SQL
    + " FROM ev"
)


async def record_event(
    session: AsyncSession,
    task: Task,
    actor: Actor,
    kind: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Append to the task's log and announce it; returns the event id.

    One statement inserts the row and calls pg_notify, which PostgreSQL delivers to every
    listening replica only when the transaction commits (and never if it rolls back).
    """
    params = {
        "org_id": task.org_id,
        "task_id": task.id,
        "kind": kind,
        "actor_id": actor.user_id,
        "actor_name": actor.name,
        "from_status": from_status,
        "to_status": to_status,
        "data": json.dumps(data or {}),
        "status": task.status,
    }
    event_id, _, webhooks = (await session.execute(_RECORD_EVENT, params)).one()
    if webhooks:  # the org subscribed to this kind: deliver it if (and only if) we commit
        await delivery.enqueue_deliveries(session, event_id=event_id, subscription_ids=webhooks)
    return event_id
