"""Outbound webhooks: an organization's task events POSTed, signed, to the URLs its admins subscribe.

`lifecycle.record_event` (and the claim statement) find the matching subscriptions inside the very
statement that writes the event (`MATCHING_SUBSCRIPTIONS_SQL`), so the common case, no subscription,
costs no extra round trip; a match enqueues one `deliver_webhook` job per subscription in the same
transaction. The job POSTs `{id, type, created_at, task, data}` signed like Stripe and Slack
(`OSIRIS-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`), to exactly the configured URL:
redirects are failures, never followed. Every attempt is a row in `webhook_deliveries`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris import __version__
from osiris.app import jobs
from osiris.app.actors import Actor
from osiris.app.errors import InvalidInput, NotFound
from osiris.app.models import Task, TaskEvent, WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "OSIRIS-Signature"
EVENT_ID_HEADER = "OSIRIS-Event-Id"
ALL_EVENTS = "*"
EVENT_TYPE = re.compile(r"^[a-z][a-z_]{0,39}$")  # TaskEvent kinds: claim, submit, approve, merged …
SECRET_PREFIX = "whsec_"
FIRST_RUN = "0"  # the delivery the event itself caused; a redelivery gets a run of its own

# The subscriptions an event goes to, evaluated in the statement that inserts it (`ev` is that row).
# An empty array in the common case; the org_id index keeps it one probe.
MATCHING_SUBSCRIPTIONS_SQL = (
    "ARRAY(SELECT ws.id FROM webhook_subscriptions ws WHERE ws.org_id = ev.org_id"
    " AND ws.event_types && ARRAY[ev.kind, '*']::varchar[] ORDER BY ws.id)"
)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The OSIRIS-Signature value: a receiver recomputes v1 and rejects old timestamps."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def check_destination(url: str) -> str:
    """The URL as deliveries will use it, or InvalidInput: http(s), a host, no credentials, and
    parsed alike by the standard library and httpx, so what was checked is where the POST goes."""
    try:
        parts = urlsplit(url)
        parsed = httpx.URL(url)
        port = parts.port
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidInput("the webhook URL is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL is http:// or https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("put no credentials in a webhook URL; the signature authenticates OSIRIS")
    if parts.fragment:
        raise InvalidInput("a webhook URL has no #fragment")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    same = (
        parsed.scheme == parts.scheme
        and parsed.host == parts.hostname.lower()
        and (parsed.port or default_port) == (port or default_port)
    )
    if not same:
        raise InvalidInput("the webhook URL's scheme or host is ambiguous")
    return url


def check_event_types(event_types: Sequence[str]) -> list[str]:
    kinds = sorted({kind.strip() for kind in event_types if kind.strip()})
    if not kinds:
        raise InvalidInput('choose at least one event type, or "*" for all')
    bad = [k for k in kinds if k != ALL_EVENTS and not EVENT_TYPE.match(k)]
    if bad or len(kinds) > 50:
        raise InvalidInput(f"event types are TaskEvent kinds (e.g. approve, merged) or *; not {bad}")
    return [ALL_EVENTS] if ALL_EVENTS in kinds else kinds


# --- managing subscriptions (admins, their organization only) -----------------------------------


@dataclass(frozen=True)
class NewSubscription:
    subscription: WebhookSubscription
    secret: str  # returned this once


async def list_subscriptions(session: AsyncSession, actor: Actor) -> Sequence[WebhookSubscription]:
    stmt = select(WebhookSubscription).where(WebhookSubscription.org_id == actor.org_id)
    return (await session.execute(stmt.order_by(WebhookSubscription.id))).scalars().all()


async def create_subscription(
    session: AsyncSession,
    actor: Actor,
    *,
    url: str,
    event_types: Sequence[str],
    secret: str | None = None,
    description: str = "",
) -> NewSubscription:
    if secret is not None and not 16 <= len(secret) <= 200:
        raise InvalidInput("a webhook secret is 16-200 characters (or leave it out to get one)")
    secret = secret or new_secret()
    sub = WebhookSubscription(
        org_id=actor.org_id,
        url=check_destination(url.strip()),
        secret=secret,
        event_types=check_event_types(event_types),
        description=description.strip()[:200],
        created_by_id=actor.user_id,
    )
    session.add(sub)
    await session.flush()
    return NewSubscription(sub, secret)


async def delete_subscription(session: AsyncSession, actor: Actor, subscription_id: int) -> None:
    stmt = delete(WebhookSubscription).where(
        WebhookSubscription.id == subscription_id, WebhookSubscription.org_id == actor.org_id
    )
    if (await session.execute(stmt.returning(WebhookSubscription.id))).scalar_one_or_none() is None:
        raise NotFound(f"no webhook subscription {subscription_id}")


async def list_deliveries(
    session: AsyncSession,
    actor: Actor,
    *,
    subscription_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.org_id == actor.org_id)
    if subscription_id is not None:
        stmt = stmt.where(WebhookDelivery.subscription_id == subscription_id)
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    return (await session.execute(stmt.order_by(WebhookDelivery.id.desc()).limit(limit))).scalars().all()


async def redeliver(session: AsyncSession, actor: Actor, delivery_id: int) -> WebhookDelivery:
    """Send a logged delivery's event to its subscription again, as a new run with its own retries."""
    row = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.org_id == actor.org_id
        )
    )
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    await jobs.enqueue(
        session,
        jobs.DELIVER_WEBHOOK,
        {"event_id": row.event_id, "subscription_id": row.subscription_id, "run": secrets.token_hex(8)},
    )
    return row


async def enqueue_deliveries(
    session: AsyncSession, *, event_id: int, subscription_ids: Sequence[int]
) -> None:
    """Called by lifecycle in the event's own transaction, for the subscriptions that matched."""
    for sub_id in subscription_ids:
        await jobs.enqueue(
            session,
            jobs.DELIVER_WEBHOOK,
            {"event_id": event_id, "subscription_id": sub_id, "run": FIRST_RUN},
            dedupe_key=f"webhook-{event_id}-{sub_id}",
        )


# --- delivering ---------------------------------------------------------------------------------


def event_body(event: TaskEvent, task: Task | None) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.kind,
        "created_at": event.created_at.isoformat(),
        "task": None
        if task is None
        else {
            "id": task.id,
            "title": task.title,
            "status": task.status,
            "priority": task.priority,
            "repo": task.repo,
            "base_branch": task.base_branch,
            "assignee_id": task.assignee_id,
            "channel": task.channel,
            "artifact_count": task.artifact_count,
            "updated_at": task.updated_at.isoformat(),
        },
        "transition": {"from": event.from_status, "to": event.to_status},
        "actor": event.actor_name,
        "data": event.data,
    }


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


@dataclass
class _Outcome:
    ok: bool = False
    status_code: int | None = None
    error: str | None = None
    excerpt: str = ""
    retryable: bool = False
    retry_after: float | None = None


async def _post(url: str, body: bytes, headers: dict[str, str], settings: Any) -> _Outcome:
    cap = settings.webhooks_response_excerpt_bytes
    # trust_env=False: no proxy from the environment; the POST goes to the configured URL itself.
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=settings.webhooks_timeout_seconds
    ) as client:
        try:
            async with client.stream("POST", url, content=body, headers=headers) as response:
                chunks = b""
                async for chunk in response.aiter_bytes():
                    chunks += chunk
                    if len(chunks) >= cap:
                        break
        except httpx.HTTPError as exc:
            return _Outcome(error=f"{type(exc).__name__}: {exc}"[:500], retryable=True)
    out = _Outcome(
        status_code=response.status_code,
        excerpt=chunks[:cap].decode("utf-8", "replace").replace("\x00", "\ufffd"),
    )
    code = response.status_code
    if 200 <= code < 300:
        out.ok = True
    elif 300 <= code < 400:
        where = urlsplit(response.headers.get("location", "")).netloc or "(no location)"
        out.error = f"redirect {code} to {where} not followed: configure the final URL"[:500]
    else:
        out.error = f"HTTP {code}"
        out.retryable = code in (408, 425, 429) or code >= 500
        out.retry_after = _retry_after(response)
    return out


@jobs.job_handler(jobs.DELIVER_WEBHOOK)
async def deliver_webhook(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    settings = ctx.settings
    run = str(payload.get("run", FIRST_RUN))
    async with ctx.sessions() as session:
        sub = await session.get(WebhookSubscription, payload["subscription_id"])
        event = await session.get(TaskEvent, payload["event_id"])
        if sub is None or event is None or sub.org_id != event.org_id:
            return  # deleted since: nothing to deliver to, or nothing to deliver
        task = await session.get(Task, event.task_id)
        attempt = 1 + await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.subscription_id == sub.id,
                WebhookDelivery.event_id == event.id,
                WebhookDelivery.run == run,
            )
        )
        url, secret = sub.url, sub.secret
        body = json.dumps(event_body(event, task), separators=(",", ":"), default=str).encode()
    started = time.monotonic()
    try:
        check_destination(url)
    except InvalidInput as exc:
        outcome = _Outcome(error=f"refused destination: {exc.detail}")
    else:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"OSIRIS-Webhooks/{__version__}",
            EVENT_ID_HEADER: str(event.id),
            "OSIRIS-Event-Type": event.kind,
            "OSIRIS-Delivery-Attempt": str(attempt),
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        }
        outcome = await _post(url, body, headers, settings)
    duration_ms = int((time.monotonic() - started) * 1000)
    again: float | None = None
    if outcome.retryable and attempt < settings.webhooks_max_attempts:
        backoff = settings.webhooks_retry_base_seconds * 2 ** (attempt - 1)
        again = min(
            outcome.retry_after if outcome.retry_after is not None else backoff,
            settings.webhooks_retry_max_seconds,
        )
    async with ctx.sessions() as session, session.begin():
        session.add(
            WebhookDelivery(
                org_id=event.org_id,
                subscription_id=sub.id,
                event_id=event.id,
                event_type=event.kind,
                run=run,
                attempt=attempt,
                url=url,
                status_code=outcome.status_code,
                ok=outcome.ok,
                error=outcome.error,
                duration_ms=duration_ms,
                response_excerpt=outcome.excerpt,
                retry_after_seconds=again,
            )
        )
    if again is not None:
        raise jobs.Retry(after=again, reason=f"webhook delivery attempt {attempt}: {outcome.error}")
    if not outcome.ok:
        log.warning(
            "webhook delivery failed",
            extra={
                "subscription_id": sub.id,
                "event_id": event.id,
                "attempt": attempt,
                "error": outcome.error,
            },
        )
