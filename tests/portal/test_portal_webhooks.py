"""The portal's webhook administration: create (secret shown once), delete, delivery log, Redeliver
(CSRF-checked), and nothing of another organization's."""

from __future__ import annotations

import socket

import pytest
from portal_helpers import csrf_of
from sqlalchemy import func, select

from osiris.app import db, jobs, lifecycle
from osiris.app.models import WebhookDelivery

pytestmark = pytest.mark.asyncio


def closed_port_url() -> str:
    with socket.socket() as s:  # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/hook"


async def _attempts(runtime) -> int:
    async with runtime.sessions() as s:
        return await s.scalar(select(func.count()).select_from(WebhookDelivery))


async def test_admin_manages_webhooks_and_redelivers_from_the_log(signed_in, factory, runtime, settings):
    admin_client, admin = await signed_in("admin")
    page = await admin_client.get("/admin/webhooks")
    assert page.status_code == 200 and "No webhooks yet" in page.text
    token = csrf_of(page.text)
    url = closed_port_url()
    r = await admin_client.post(
        "/admin/webhooks", data={"csrf_token": token, "url": url, "event_types": "created, claim"}
    )
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    secret = r.text.split('id="new-secret" class="mono" readonly value="')[1].split('"')[0]
    assert secret.startswith("whsec_")
    listing = await admin_client.get("/admin/webhooks")
    assert url in listing.text and secret not in listing.text

    agent = factory.actor(await factory.user("agent", org=await factory.org()))
    async with db.transaction(runtime.sessions) as s:
        await lifecycle.create_task(s, agent, title="Hooked", repo="default", base_branch="main")
    once = settings.model_copy(update={"webhooks_max_attempts": 1, "webhooks_timeout_seconds": 2})
    ctx = jobs.JobContext(runtime.sessions, once, runtime.services)
    await jobs.drain(runtime.dsn, ctx)
    log = await admin_client.get("/admin/webhooks/deliveries")
    assert log.status_code == 200 and "ConnectError" in log.text and secret not in log.text
    delivery_id = log.text.split('action="/admin/webhooks/deliveries/')[1].split("/redeliver")[0]

    r = await admin_client.post(f"/admin/webhooks/deliveries/{delivery_id}/redeliver", data={})
    assert r.status_code == 403  # no CSRF token, no redelivery
    r = await admin_client.post(
        f"/admin/webhooks/deliveries/{delivery_id}/redeliver", data={"csrf_token": token}
    )
    assert r.status_code == 303
    await jobs.drain(runtime.dsn, ctx)
    assert await _attempts(runtime) == 2
    assert "(redelivery)" in (await admin_client.get("/admin/webhooks/deliveries")).text

    sub_id = listing.text.split('action="/admin/webhooks/')[1].split("/delete")[0]
    r = await admin_client.post(f"/admin/webhooks/{sub_id}/delete", data={"csrf_token": token})
    assert r.status_code == 303
    assert "No webhooks yet" in (await admin_client.get("/admin/webhooks")).text


async def test_bad_urls_are_refused_in_the_form(signed_in):
    admin_client, _ = await signed_in("admin")
    token = csrf_of((await admin_client.get("/admin/webhooks")).text)
    r = await admin_client.post(
        "/admin/webhooks", data={"csrf_token": token, "url": "ftp://example.com/x", "event_types": "*"}
    )
    assert r.status_code == 422


async def test_reviewers_and_other_organizations_see_nothing(signed_in, factory, browser_client):
    admin_client, _ = await signed_in("admin")
    token = csrf_of((await admin_client.get("/admin/webhooks")).text)
    await admin_client.post(
        "/admin/webhooks", data={"csrf_token": token, "url": "https://example.com/h", "event_types": "*"}
    )
    listing = (await admin_client.get("/admin/webhooks")).text
    sub_id = listing.split('action="/admin/webhooks/')[1].split("/delete")[0]
    await browser_client.post("/logout", data={"csrf_token": token})
    browser_client.cookies.clear()

    outsider_client, _ = await signed_in("admin", org=await factory.org("elsewhere"))
    page = await outsider_client.get("/admin/webhooks")
    assert "example.com/h" not in page.text
    r = await outsider_client.post(
        f"/admin/webhooks/{sub_id}/delete", data={"csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 404
    browser_client.cookies.clear()

    reviewer_client, _ = await signed_in("reviewer")
    assert (await reviewer_client.get("/admin/webhooks")).status_code == 403
    assert (await reviewer_client.get("/admin/webhooks/deliveries")).status_code == 403
