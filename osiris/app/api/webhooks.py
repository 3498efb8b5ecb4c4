"""REST: the organization's outbound webhook subscriptions and their delivery log (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from osiris.app import outbound_webhooks
from osiris.app.auth import AdminDep, SessionDep
from osiris.app.schemas import (
    WebhookDeliveryRead,
    WebhookSubscriptionCreate,
    WebhookSubscriptionCreated,
    WebhookSubscriptionRead,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


@router.get("/subscriptions", response_model=list[WebhookSubscriptionRead])
async def list_subscriptions(actor: AdminDep, session: SessionDep) -> list[WebhookSubscriptionRead]:
    subs = await outbound_webhooks.list_subscriptions(session, actor)
    return [WebhookSubscriptionRead.model_validate(s) for s in subs]


@router.post("/subscriptions", status_code=201, response_model=WebhookSubscriptionCreated)
async def create_subscription(
    body: WebhookSubscriptionCreate, actor: AdminDep, session: SessionDep
) -> WebhookSubscriptionCreated:
    new = await outbound_webhooks.create_subscription(
        session,
        actor,
        url=body.url,
        event_types=body.event_types,
        secret=body.secret,
        description=body.description,
    )
    read = WebhookSubscriptionRead.model_validate(new.subscription)
    return WebhookSubscriptionCreated(**read.model_dump(), secret=new.secret)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: int, actor: AdminDep, session: SessionDep) -> Response:
    await outbound_webhooks.delete_subscription(session, actor, subscription_id)
    return Response(status_code=204)


@router.get("/deliveries", response_model=list[WebhookDeliveryRead])
async def list_deliveries(
    actor: AdminDep,
    session: SessionDep,
    subscription_id: int | None = None,
    before: int | None = None,
    limit: int = Query(default=100, ge=1, le=500),
) -> list[WebhookDeliveryRead]:
    rows = await outbound_webhooks.list_deliveries(
        session, actor, subscription_id=subscription_id, before_id=before, limit=limit
    )
    return [WebhookDeliveryRead.model_validate(r) for r in rows]


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202, response_model=WebhookDeliveryRead)
async def redeliver(delivery_id: int, actor: AdminDep, session: SessionDep) -> WebhookDeliveryRead:
    """Queue the logged delivery's event for its subscription again (the same OSIRIS-Event-Id)."""
    return WebhookDeliveryRead.model_validate(await outbound_webhooks.redeliver(session, actor, delivery_id))
