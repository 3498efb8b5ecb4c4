"""What admins manage, for their organization only: webhook subscriptions (create, edit,
enable/disable, rotate the secret, delete), the delivery log and redelivery; and the matching rule
the statement that writes an event embeds (`MATCHING_SUBSCRIPTIONS_SQL`)."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app.actors import Actor
from osiris.app.errors import Conflict, InvalidInput, NotFound
from osiris.app.models import WebhookDelivery, WebhookSubscription
from osiris.app.outbound_webhooks.delivery import enqueue_redelivery
from osiris.app.outbound_webhooks.destinations import DestinationPolicy, vet_destination

log = logging.getLogger(__name__)

ALL_EVENTS = "*"
EVENT_TYPE = re.compile(r"^[a-z][a-z_]{0,39}$")  # TaskEvent kinds: claim, submit, approve, merged …
SECRET_PREFIX = "whsec_"

# The subscriptions an event goes to, evaluated in the statement that inserts it (`ev` is that row).
# An empty array in the common case; the org_id index keeps it one probe.
MATCHING_SUBSCRIPTIONS_SQL = (
    "ARRAY(SELECT ws.id FROM webhook_subscriptions ws WHERE ws.org_id = ev.org_id"
    " AND ws.event_types && ARRAY[ev.kind, '*']::varchar[] AND ws.disabled_at IS NULL ORDER BY ws.id)"
)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_event_types(event_types: Sequence[str]) -> list[str]:
    kinds = sorted({kind.strip() for kind in event_types if kind.strip()})
    if not kinds:
        raise InvalidInput('choose at least one event type, or "*" for all')
    bad = [k for k in kinds if k != ALL_EVENTS and not EVENT_TYPE.match(k)]
    if bad or len(kinds) > 50:
        raise InvalidInput(f"event types are TaskEvent kinds (e.g. approve, merged) or *; not {bad}")
    return [ALL_EVENTS] if ALL_EVENTS in kinds else kinds


@dataclass(frozen=True)
class NewSubscription:
    subscription: WebhookSubscription
    secret: str  # returned this once


async def list_subscriptions(session: AsyncSession, actor: Actor) -> Sequence[WebhookSubscription]:
    stmt = select(WebhookSubscription).where(WebhookSubscription.org_id == actor.org_id)
    return (await session.execute(stmt.order_by(WebhookSubscription.id))).scalars().all()


async def get_subscription(session: AsyncSession, actor: Actor, subscription_id: int) -> WebhookSubscription:
    sub = await session.scalar(
        select(WebhookSubscription).where(
            WebhookSubscription.id == subscription_id, WebhookSubscription.org_id == actor.org_id
        )
    )
    if sub is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return sub


async def create_subscription(
    session: AsyncSession,
    actor: Actor,
    *,
    policy: DestinationPolicy,
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
        url=await vet_destination(url.strip(), policy),
        secret=secret,
        event_types=check_event_types(event_types),
        description=description.strip()[:200],
        created_by_id=actor.user_id,
    )
    session.add(sub)
    await session.flush()
    return NewSubscription(sub, secret)


async def update_subscription(
    session: AsyncSession,
    actor: Actor,
    subscription_id: int,
    *,
    policy: DestinationPolicy,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookSubscription:
    """Change what is given. Enabling (again) also forgets the failures that disabled it."""
    sub = await get_subscription(session, actor, subscription_id)
    if url is not None and url.strip() != sub.url:  # checked like a new one (each delivery is, too)
        sub.url = await vet_destination(url.strip(), policy)
    if event_types is not None:
        sub.event_types = check_event_types(event_types)
    if description is not None:
        sub.description = description.strip()[:200]
    if enabled is True:
        sub.disabled_at, sub.disabled_reason, sub.consecutive_failures = None, None, 0
    elif enabled is False and sub.disabled_at is None:
        sub.disabled_at = datetime.now(UTC)
        sub.disabled_reason = f"disabled by {actor.name}"[:200]
    await session.flush()
    return sub


async def rotate_secret(
    session: AsyncSession, actor: Actor, subscription_id: int, *, grace_seconds: int
) -> NewSubscription:
    """A new secret, returned this once; the current one also signs for `grace_seconds` more, so
    receivers can switch without dropping a delivery (0: it stops now, e.g. because it leaked)."""
    sub = await get_subscription(session, actor, subscription_id)
    secret = new_secret()
    if grace_seconds > 0:
        sub.previous_secret = sub.secret
        sub.previous_secret_expires_at = datetime.now(UTC) + timedelta(seconds=grace_seconds)
    else:
        sub.previous_secret, sub.previous_secret_expires_at = None, None
    sub.secret = secret
    await session.flush()
    log.info("webhook secret rotated", extra={"subscription_id": sub.id, "grace_seconds": grace_seconds})
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
    disabled = await session.scalar(
        select(WebhookSubscription.disabled_at).where(WebhookSubscription.id == row.subscription_id)
    )
    if disabled is not None:
        raise Conflict(f"webhook subscription {row.subscription_id} is disabled: enable it first")
    await enqueue_redelivery(session, event_id=row.event_id, subscription_id=row.subscription_id)
    return row
