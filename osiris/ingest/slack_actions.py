"""Slack interactivity: the Approve button and the "request changes" field of a review reminder.

Slack signs interactivity requests exactly as it signs events (v0, the same signing secret, the
timestamp at most five minutes away), so the raw body is checked first, before the `payload` form
field is parsed; a forged or stale request is 401 and nothing is read or stored. A replay within the
five minutes carries the same `trigger_id` (Slack makes one per interaction): it is recorded once in
`deliveries` and has no second effect. The acting user is `<team>:<user>` from the signed payload,
mapped to an OSIRIS user only through a verified address (`review_replies.act`); the version and commit
come from the control, which Slack sends back as we posted it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.dialects.postgresql import insert as pg_insert

from osiris.app import db
from osiris.app.errors import RateLimited
from osiris.app.models import Delivery
from osiris.app.problems import problem
from osiris.app.runtime import Runtime
from osiris.ingest import review_replies, slack
from osiris.ingest.notify import Target, enqueue_reply
from osiris.ingest.reviewer_messages import APPROVE_ACTION, CHANGES_ACTION

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def _pinned(action: dict[str, Any]) -> tuple[int, int, str, str] | None:
    """(task, version, head, comment) from the control that was used, or None."""
    try:
        if action.get("action_id") == APPROVE_ACTION:
            value = json.loads(str(action.get("value") or ""))
            return int(value["task"]), int(value["version"]), str(value.get("head") or ""), ""
        if action.get("action_id") == CHANGES_ACTION:
            _, task, version, head = str(action.get("block_id") or "").split(":", 3)
            return int(task), int(version), head, str(action.get("value") or "").strip()
    except (ValueError, KeyError, TypeError):
        return None
    return None


@router.post("/slack/interactions", response_model=None)
async def slack_interactions(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    if settings.slack.signing_secret is None:
        return problem(403, "channel_not_configured", "Channel not configured", "Slack is not set up here")
    body = await request.body()
    if not slack.signature_ok(settings.slack.signing_secret.get_secret_value(), body, request.headers):
        return problem(
            401, "bad_signature", "Bad signature", "the Slack signature is missing, wrong, or stale"
        )
    try:
        payload = json.loads(dict(parse_qsl(body.decode("utf-8", "replace"))).get("payload", ""))
    except ValueError:
        return problem(400, "malformed_request", "Malformed request", "expected a form with a JSON payload")
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return JSONResponse({"ok": True})
    actions = payload.get("actions") or []
    pinned = _pinned(actions[0]) if actions and isinstance(actions[0], dict) else None
    user = payload.get("user") or {}
    team = str((payload.get("team") or {}).get("id") or user.get("team_id") or "")
    if pinned is None or not team or not user.get("id"):
        return JSONResponse({"ok": True})
    if settings.slack.allowed_teams and team not in settings.slack.allowed_teams:
        return JSONResponse({"ok": True})
    sender = f"{team}:{user['id']}"
    if runtime.services.channel_limiter is not None:
        try:
            runtime.services.channel_limiter.hit("slack", sender)
        except RateLimited:
            return JSONResponse({"ok": True})
    task_id, version, head, comment = pinned
    trigger = str(payload.get("trigger_id") or f"{sender}:{actions[0].get('action_ts')}")
    verb = "approve" if actions[0].get("action_id") == APPROVE_ACTION else "changes"
    async with db.transaction(runtime.sessions) as session:
        first = await session.scalar(
            pg_insert(Delivery)
            .values(provider="slack-action", delivery_id=trigger[:200])
            .on_conflict_do_nothing(constraint="uq_deliveries_provider_delivery")
            .returning(Delivery.id)
        )
        if first is None:  # a replay of an interaction already handled
            return JSONResponse({"ok": True, "duplicate": True})
        answer = await review_replies.act(
            session,
            channel="slack",
            sender=sender,
            reply=review_replies.ReviewReply(verb, task_id, comment),
            lease_seconds=settings.tasks.lease_seconds,
            provider_id=f"slack-action:{trigger}",
            pinned=(version, head),
        )
        where = str((payload.get("channel") or {}).get("id") or user["id"])
        thread = (payload.get("message") or {}).get("ts")
        target = Target("slack", where, thread, account=team)
        await enqueue_reply(session, target, answer.reply, key=f"reply-slack-action-{trigger[:150]}")
    return JSONResponse({"ok": True, "outcome": answer.kind})
