"""Administration of outbound webhooks: subscriptions (add, edit, disable/enable, rotate the secret,
delete), the delivery log and its Redeliver button. Every change is a CSRF-checked POST."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from osiris.app import db
from osiris.app.outbound_webhooks import subscriptions
from osiris.app.outbound_webhooks.destinations import DestinationPolicy
from osiris.portal.access import AdminDep, FormDep, Viewer, runtime_of, text_field
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(prefix="/admin/webhooks", route_class=PortalRoute, include_in_schema=False)


async def _subscriptions_context(request: Request, viewer: Viewer) -> dict:
    async with db.transaction(runtime_of(request).sessions) as session:
        subs = await subscriptions.list_subscriptions(session, viewer.actor)
    return {"subscriptions": subs}


def _policy(request: Request) -> DestinationPolicy:
    return DestinationPolicy.from_settings(runtime_of(request).settings)


@router.get("")
async def webhooks_page(request: Request, viewer: AdminDep) -> Response:
    return render(request, "admin/webhooks.html", await _subscriptions_context(request, viewer))


@router.post("")
async def create_subscription(request: Request, viewer: AdminDep, form: FormDep) -> Response:
    kinds = text_field(form, "event_types").replace(",", " ").split()
    async with db.transaction(runtime_of(request).sessions) as session:
        new = await subscriptions.create_subscription(
            session,
            viewer.actor,
            policy=_policy(request),
            url=text_field(form, "url"),
            event_types=kinds,
            secret=text_field(form, "secret").strip() or None,
            description=text_field(form, "description"),
        )
    context = await _subscriptions_context(request, viewer)
    # Shown in this response only (pages are no-store); it signs every delivery from now on.
    context["created"] = {"url": new.subscription.url, "secret": new.secret}
    return render(request, "admin/webhooks.html", context, status=201)


@router.get("/{subscription_id}/edit")
async def edit_page(request: Request, subscription_id: int, viewer: AdminDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        sub = await subscriptions.get_subscription(session, viewer.actor, subscription_id)
    return render(request, "admin/webhook_edit.html", {"s": sub})


@router.post("/{subscription_id}/edit")
async def edit_subscription(
    request: Request, subscription_id: int, viewer: AdminDep, form: FormDep
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        await subscriptions.update_subscription(
            session,
            viewer.actor,
            subscription_id,
            policy=_policy(request),
            url=text_field(form, "url"),
            event_types=text_field(form, "event_types").replace(",", " ").split(),
            description=text_field(form, "description"),
        )
    viewer.session.flash("ok", f"Webhook subscription {subscription_id} saved.")
    return redirect("/admin/webhooks")


@router.post("/{subscription_id}/disable")
async def disable_subscription(
    request: Request, subscription_id: int, viewer: AdminDep, form: FormDep
) -> Response:
    return await _set_enabled(request, subscription_id, viewer, enabled=False)


@router.post("/{subscription_id}/enable")
async def enable_subscription(
    request: Request, subscription_id: int, viewer: AdminDep, form: FormDep
) -> Response:
    return await _set_enabled(request, subscription_id, viewer, enabled=True)


async def _set_enabled(request: Request, subscription_id: int, viewer: Viewer, *, enabled: bool) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        await subscriptions.update_subscription(
            session, viewer.actor, subscription_id, policy=_policy(request), enabled=enabled
        )
    state = "enabled: deliveries resume with new events" if enabled else "disabled"
    viewer.session.flash("ok", f"Webhook subscription {subscription_id} {state}.")
    return redirect("/admin/webhooks")


@router.post("/{subscription_id}/rotate-secret")
async def rotate_secret(request: Request, subscription_id: int, viewer: AdminDep, form: FormDep) -> Response:
    grace = runtime_of(request).settings.webhooks.secret_grace_seconds
    async with db.transaction(runtime_of(request).sessions) as session:
        new = await subscriptions.rotate_secret(session, viewer.actor, subscription_id, grace_seconds=grace)
    context = await _subscriptions_context(request, viewer)
    # Shown in this response only (pages are no-store), like a new subscription's secret.
    context["created"] = {
        "url": new.subscription.url,
        "secret": new.secret,
        "previous_until": new.subscription.previous_secret_expires_at,
    }
    return render(request, "admin/webhooks.html", context)


@router.post("/{subscription_id}/delete")
async def delete_subscription(
    request: Request, subscription_id: int, viewer: AdminDep, form: FormDep
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        await subscriptions.delete_subscription(session, viewer.actor, subscription_id)
    viewer.session.flash("ok", f"Webhook subscription {subscription_id} deleted.")
    return redirect("/admin/webhooks")


@router.get("/deliveries")
async def deliveries_page(
    request: Request, viewer: AdminDep, before: int | None = None, subscription: int | None = None
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        rows = await subscriptions.list_deliveries(
            session, viewer.actor, subscription_id=subscription, before_id=before
        )
    older = rows[-1].id if len(rows) == 100 else None
    context = {"rows": rows, "older": older, "subscription": subscription}
    return render(request, "admin/webhook_deliveries.html", context)


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(request: Request, delivery_id: int, viewer: AdminDep, form: FormDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        row = await subscriptions.redeliver(session, viewer.actor, delivery_id)
    viewer.session.flash(
        "ok", f"Event {row.event_id} queued for redelivery to subscription {row.subscription_id}."
    )
    return redirect("/admin/webhooks/deliveries")
