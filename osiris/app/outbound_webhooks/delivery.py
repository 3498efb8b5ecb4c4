"""The `deliver_webhook` job: one attempt at POSTing an event to a subscription, signed, to a checked
address (`destinations`), logged as a `webhook_deliveries` row; retried with the receiver's
`Retry-After` or exponential backoff, and counted towards auto-disable when a run ends."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from osiris import __version__
from osiris.app import jobs
from osiris.app.errors import InvalidInput
from osiris.app.models import Task, TaskEvent, WebhookDelivery, WebhookSubscription
from osiris.app.outbound_webhooks.destinations import (
    DestinationPolicy,
    DestinationUnresolved,
    check_destination,
)
from osiris.app.retry_after import retry_after_seconds

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "OSIRIS-Signature"
EVENT_ID_HEADER = "OSIRIS-Event-Id"
FIRST_RUN = "0"  # the delivery the event itself caused; a redelivery gets a run of its own


def sign(secret: str, timestamp: int, body: bytes, *older: str) -> str:
    """The OSIRIS-Signature value: a receiver recomputes v1 and rejects old timestamps. During a
    secret rotation the previous secret's signature follows the new one's (`t=…,v1=new,v1=old`)."""
    macs = [
        hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        for key in (secret, *older)
    ]
    return f"t={timestamp}," + ",".join(f"v1={mac}" for mac in macs)


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


async def enqueue_redelivery(session: AsyncSession, *, event_id: int, subscription_id: int) -> None:
    """A logged delivery's event to its subscription again: a new run, with its own retries."""
    await jobs.enqueue(
        session,
        jobs.DELIVER_WEBHOOK,
        {"event_id": event_id, "subscription_id": subscription_id, "run": secrets.token_hex(8)},
    )


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


@dataclass
class _Outcome:
    ok: bool = False
    status_code: int | None = None
    error: str | None = None
    excerpt: str = ""
    retryable: bool = False
    retry_after: float | None = None


async def _post(
    url: str, addresses: Sequence[str], body: bytes, headers: dict[str, str], settings: Any
) -> _Outcome:
    """POST to `url` at one of the checked `addresses` (the next one if a connection is refused).
    The Host header, TLS SNI and certificate verification stay those of the URL's host name."""
    cap = settings.webhooks.response_excerpt_bytes
    parsed = httpx.URL(url)
    host = parsed.raw_host.decode("ascii")
    headers = {**headers, "Host": parsed.netloc.decode("ascii")}
    # trust_env=False: no proxy from the environment; the POST goes to the configured URL itself.
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=settings.webhooks.timeout_seconds
    ) as client:
        for i, address in enumerate(addresses):
            target = parsed if address == host else parsed.copy_with(host=address.split("%")[0])
            try:
                async with client.stream(
                    "POST", target, content=body, headers=headers, extensions={"sni_hostname": host}
                ) as response:
                    chunks = b""
                    async for chunk in response.aiter_bytes():
                        chunks += chunk
                        if len(chunks) >= cap:
                            break
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if i + 1 < len(addresses):
                    continue  # nothing was sent: try the host's next checked address
                return _Outcome(error=f"{type(exc).__name__}: {exc}"[:500], retryable=True)
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
        out.retry_after = retry_after_seconds(response.headers)  # else the backoff (deliver_webhook)
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def _count_run(
    session: AsyncSession, sub_id: int, *, ok: bool, error: str | None, limit: int
) -> int | None:
    """Count a finished run: a success resets the failure count, a failure adds one and, at
    `limit`, disables the subscription. The failure count if this call disabled it, else None."""
    ws = WebhookSubscription
    if ok:
        await session.execute(
            update(ws).where(ws.id == sub_id, ws.consecutive_failures != 0).values(consecutive_failures=0)
        )
        return None
    now = datetime.now(UTC)
    failures = ws.consecutive_failures + 1
    trips = and_(ws.disabled_at.is_(None), failures >= limit)
    reason = f"{limit} failed deliveries in a row; the last: {error}"[:200]
    stmt = (
        update(ws)
        .where(ws.id == sub_id)
        .values(
            consecutive_failures=failures,
            disabled_at=case((trips, now), else_=ws.disabled_at),
            disabled_reason=case((trips, reason), else_=ws.disabled_reason),
        )
        .returning(ws.consecutive_failures, ws.disabled_at)
    )
    row = (await session.execute(stmt)).one_or_none()
    return row[0] if row is not None and row[1] == now else None


@jobs.job_handler(jobs.DELIVER_WEBHOOK)
async def deliver_webhook(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    settings = ctx.settings
    run = str(payload.get("run", FIRST_RUN))
    async with ctx.sessions() as session:
        sub = await session.get(WebhookSubscription, payload["subscription_id"])
        event = await session.get(TaskEvent, payload["event_id"])
        if sub is None or event is None or sub.org_id != event.org_id:
            return  # deleted since: nothing to deliver to, or nothing to deliver
        if sub.disabled_at is not None:
            return  # disabled since (by an admin, or by failures): its pending deliveries stop
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
        url, signing = sub.url, [sub.secret]
        if sub.previous_secret and (sub.previous_secret_expires_at or _EPOCH) > datetime.now(UTC):
            signing.append(sub.previous_secret)  # a rotation's grace period: both sign
        body = json.dumps(event_body(event, task), separators=(",", ":"), default=str).encode()
    started = time.monotonic()
    try:
        addresses = await DestinationPolicy.from_settings(settings).addresses(check_destination(url))
    except InvalidInput as exc:  # not retried: the URL or the allowlist needs changing
        outcome = _Outcome(error=f"refused destination: {exc.detail}"[:500])
    except DestinationUnresolved as exc:
        outcome = _Outcome(error=f"DNS: {exc}"[:500], retryable=True)
    else:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"OSIRIS-Webhooks/{__version__}",
            EVENT_ID_HEADER: str(event.id),
            "OSIRIS-Event-Type": event.kind,
            "OSIRIS-Delivery-Attempt": str(attempt),
            SIGNATURE_HEADER: sign(signing[0], int(time.time()), body, *signing[1:]),
        }
        outcome = await _post(url, addresses, body, headers, settings)
    duration_ms = int((time.monotonic() - started) * 1000)
    again: float | None = None
    disabled: int | None = None
    if outcome.retryable and attempt < settings.webhooks.max_attempts:
        backoff = settings.webhooks.retry_base_seconds * 2 ** (attempt - 1)
        again = min(
            outcome.retry_after if outcome.retry_after is not None else backoff,
            settings.webhooks.retry_max_seconds,
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
        if again is None:  # the run is over: it counts once towards auto-disable, or resets it
            disabled = await _count_run(
                session,
                sub.id,
                ok=outcome.ok,
                error=outcome.error,
                limit=settings.webhooks.disable_after_failures,
            )
    if disabled is not None:
        log.warning(
            "webhook subscription disabled after failed deliveries",
            extra={"subscription_id": sub.id, "org_id": event.org_id, "failures": disabled},
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
