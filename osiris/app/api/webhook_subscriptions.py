"""REST: the organization's outbound webhook subscriptions and their delivery log (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from osiris.app.auth import AdminDep, RuntimeDep, SessionDep
from osiris.app.outbound_webhooks import subscriptions
from osiris.app.outbound_webhooks.destinations import DestinationPolicy
from osiris.app.schemas import (
    WebhookDeliveryRead,
    WebhookSecretRotate,
    WebhookSubscriptionCreate,
    WebhookSubscriptionCreated,
    WebhookSubscriptionRead,
    WebhookSubscriptionUpdate,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.get("/subscriptions", response_model=list[WebhookSubscriptionRead])
async def list_subscriptions(actor: AdminDep, session: SessionDep) -> list[WebhookSubscriptionRead]:
    subs = await subscriptions.list_subscriptions(session, actor)
    return [WebhookSubscriptionRead.model_validate(s) for s in subs]


@router.post("/subscriptions", status_code=201, response_model=WebhookSubscriptionCreated)
async def create_subscription(
    body: WebhookSubscriptionCreate, actor: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> WebhookSubscriptionCreated:
    """A destination that resolves to a non-public address is refused (422 destination_not_allowed)
    unless OSIRIS_WEBHOOKS_ALLOWED_HOSTS allows it."""
    new = await subscriptions.create_subscription(
        session,
        actor,
        policy=DestinationPolicy.from_settings(runtime.settings),
        url=body.url,
        event_types=body.event_types,
        secret=body.secret,
        description=body.description,
    )
    read = WebhookSubscriptionRead.model_validate(new.subscription)
    return WebhookSubscriptionCreated(**read.model_dump(), secret=new.secret)


@router.patch("/subscriptions/{subscription_id}", response_model=WebhookSubscriptionRead)
async def update_subscription(
    subscription_id: int,
    body: WebhookSubscriptionUpdate,
    actor: AdminDep,
    session: SessionDep,
    runtime: RuntimeDep,
) -> WebhookSubscriptionRead:
    """Change the URL (checked like a new one), event types, description, or enabled (true also
    resets the failure count that disables a subscription)."""
    sub = await subscriptions.update_subscription(
        session,
        actor,
        subscription_id,
        policy=DestinationPolicy.from_settings(runtime.settings),
        **body.model_dump(exclude_unset=True, exclude_none=True),
    )
    return WebhookSubscriptionRead.model_validate(sub)


@router.post("/subscriptions/{subscription_id}/rotate-secret", response_model=WebhookSubscriptionCreated)
async def rotate_secret(
    subscription_id: int,
    actor: AdminDep,
    session: SessionDep,
    runtime: RuntimeDep,
    body: WebhookSecretRotate | None = None,
) -> WebhookSubscriptionCreated:
    """A new secret, shown once. The previous one keeps signing (a second `v1=`) for the grace period."""
    grace = body.grace_seconds if body and body.grace_seconds is not None else None
    new = await subscriptions.rotate_secret(
        session,
        actor,
        subscription_id,
        grace_seconds=runtime.settings.webhooks.secret_grace_seconds if grace is None else grace,
    )
    read = WebhookSubscriptionRead.model_validate(new.subscription)
    return WebhookSubscriptionCreated(**read.model_dump(), secret=new.secret)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: int, actor: AdminDep, session: SessionDep) -> Response:
    await subscriptions.delete_subscription(session, actor, subscription_id)
    return Response(status_code=204)


@router.get("/deliveries", response_model=list[WebhookDeliveryRead])
async def list_deliveries(
    actor: AdminDep,
    session: SessionDep,
    subscription_id: int | None = None,
    before: int | None = None,
    limit: int = Query(default=100, ge=1, le=500),
) -> list[WebhookDeliveryRead]:
    rows = await subscriptions.list_deliveries(
        session, actor, subscription_id=subscription_id, before_id=before, limit=limit
    )
    return [WebhookDeliveryRead.model_validate(r) for r in rows]


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202, response_model=WebhookDeliveryRead)
async def redeliver(delivery_id: int, actor: AdminDep, session: SessionDep) -> WebhookDeliveryRead:
    """Queue the logged delivery's event for its subscription again (the same OSIRIS-Event-Id)."""
    return WebhookDeliveryRead.model_validate(await subscriptions.redeliver(session, actor, delivery_id))
