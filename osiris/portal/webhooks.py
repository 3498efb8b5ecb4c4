"""Administration of outbound webhooks: subscriptions, the delivery log and its Redeliver button."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from osiris.app import db, outbound_webhooks
from osiris.portal.access import AdminDep, FormDep, Viewer, runtime_of, text_field
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(prefix="/admin/webhooks", route_class=PortalRoute, include_in_schema=False)


async def _subscriptions_context(request: Request, viewer: Viewer) -> dict:
    async with db.transaction(runtime_of(request).sessions) as session:
        subs = await outbound_webhooks.list_subscriptions(session, viewer.actor)
    return {"subscriptions": subs}


@router.get("")
async def webhooks_page(request: Request, viewer: AdminDep) -> Response:
    return render(request, "admin/webhooks.html", await _subscriptions_context(request, viewer))


@router.post("")
async def create_subscription(request: Request, viewer: AdminDep, form: FormDep) -> Response:
    kinds = text_field(form, "event_types").replace(",", " ").split()
    async with db.transaction(runtime_of(request).sessions) as session:
        new = await outbound_webhooks.create_subscription(
            session,
            viewer.actor,
            url=text_field(form, "url"),
            event_types=kinds,
            secret=text_field(form, "secret").strip() or None,
            description=text_field(form, "description"),
        )
    context = await _subscriptions_context(request, viewer)
    # Shown in this response only (pages are no-store); it signs every delivery from now on.
    context["created"] = {"url": new.subscription.url, "secret": new.secret}
    return render(request, "admin/webhooks.html", context, status=201)


@router.post("/{subscription_id}/delete")
async def delete_subscription(
    request: Request, subscription_id: int, viewer: AdminDep, form: FormDep
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        await outbound_webhooks.delete_subscription(session, viewer.actor, subscription_id)
    viewer.session.flash("ok", f"Webhook subscription {subscription_id} deleted.")
    return redirect("/admin/webhooks")


@router.get("/deliveries")
async def deliveries_page(
    request: Request, viewer: AdminDep, before: int | None = None, subscription: int | None = None
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        rows = await outbound_webhooks.list_deliveries(
            session, viewer.actor, subscription_id=subscription, before_id=before
        )
    older = rows[-1].id if len(rows) == 100 else None
    context = {"rows": rows, "older": older, "subscription": subscription}
    return render(request, "admin/webhook_deliveries.html", context)


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(request: Request, delivery_id: int, viewer: AdminDep, form: FormDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        row = await outbound_webhooks.redeliver(session, viewer.actor, delivery_id)
    viewer.session.flash(
        "ok", f"Event {row.event_id} queued for redelivery to subscription {row.subscription_id}."
    )
    return redirect("/admin/webhooks/deliveries")
