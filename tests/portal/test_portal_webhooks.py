"""The portal's webhook administration: create (secret shown once), edit, disable/enable, rotate the
secret, delete, delivery log, Redeliver (all CSRF-checked), and nothing of another organization's.
The receivers here are on loopback, allowed explicitly as an operator would (the guard refuses it
by default)."""

from __future__ import annotations

import re
import socket

import pytest
from sqlalchemy import func, select

from osiris.app import db, lifecycle
from osiris.app.models import WebhookDelivery, WebhookSubscription
from tests.support.jobs import drain
from tests.support.portal_helpers import csrf_of

pytestmark = pytest.mark.asyncio
DELETE_ACTION = re.compile(r'action="/admin/webhooks/(\d+)/delete"')


@pytest.fixture(autouse=True)
def allow_loopback(settings, monkeypatch) -> None:
    monkeypatch.setattr(settings.webhooks, "allowed_hosts", ["127.0.0.1/32"])


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
    once = settings.model_copy(update={"webhooks": {"max_attempts": 1, "timeout_seconds": 2}})
    await drain(runtime, once)
    log = await admin_client.get("/admin/webhooks/deliveries")
    assert log.status_code == 200 and "ConnectError" in log.text and secret not in log.text
    delivery_id = log.text.split('action="/admin/webhooks/deliveries/')[1].split("/redeliver")[0]

    r = await admin_client.post(f"/admin/webhooks/deliveries/{delivery_id}/redeliver", data={})
    assert r.status_code == 403  # no CSRF token, no redelivery
    r = await admin_client.post(
        f"/admin/webhooks/deliveries/{delivery_id}/redeliver", data={"csrf_token": token}
    )
    assert r.status_code == 303
    await drain(runtime, once)
    assert await _attempts(runtime) == 2
    assert "(redelivery)" in (await admin_client.get("/admin/webhooks/deliveries")).text

    sub_id = DELETE_ACTION.search(listing.text).group(1)
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
    sub_id = DELETE_ACTION.search(listing).group(1)
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


async def _one_subscription(admin_client, url: str = "https://hooks.example.test/h") -> tuple[str, str]:
    """Add a webhook in the form; its id and a CSRF token."""
    token = csrf_of((await admin_client.get("/admin/webhooks")).text)
    r = await admin_client.post("/admin/webhooks", data={"csrf_token": token, "url": url, "event_types": "*"})
    assert r.status_code == 201, r.text
    listing = (await admin_client.get("/admin/webhooks")).text
    return listing.split('action="/admin/webhooks/')[1].split("/")[0], token


async def _stored(runtime, sub_id: str) -> WebhookSubscription:
    async with runtime.sessions() as s:
        return await s.get(WebhookSubscription, int(sub_id))


async def test_rotate_secret_shows_the_new_one_once_and_keeps_the_old_for_a_while(signed_in, runtime):
    admin_client, _ = await signed_in("admin")
    sub_id, token = await _one_subscription(admin_client)
    old = (await _stored(runtime, sub_id)).secret

    r = await admin_client.post(f"/admin/webhooks/{sub_id}/rotate-secret", data={})
    assert r.status_code == 403  # no CSRF token, no rotation
    assert (await _stored(runtime, sub_id)).secret == old

    r = await admin_client.post(f"/admin/webhooks/{sub_id}/rotate-secret", data={"csrf_token": token})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    new = r.text.split('id="new-secret" class="mono" readonly value="')[1].split('"')[0]
    assert new.startswith("whsec_") and new != old and old not in r.text
    assert "The previous secret also signs every delivery" in r.text
    stored = await _stored(runtime, sub_id)
    assert (stored.secret, stored.previous_secret) == (new, old)
    listing = (await admin_client.get("/admin/webhooks")).text
    assert new not in listing and old not in listing


async def test_edit_disable_and_enable_from_the_list(signed_in, runtime):
    admin_client, _ = await signed_in("admin")
    sub_id, token = await _one_subscription(admin_client)

    page = await admin_client.get(f"/admin/webhooks/{sub_id}/edit")
    assert page.status_code == 200 and 'value="https://hooks.example.test/h"' in page.text
    edit = {"csrf_token": token, "url": "https://hooks.example.test/v2", "event_types": "approve merged"}
    assert (
        await admin_client.post(f"/admin/webhooks/{sub_id}/edit", data={**edit, "csrf_token": ""})
    ).status_code == 403
    r = await admin_client.post(f"/admin/webhooks/{sub_id}/edit", data={**edit, "description": "CI"})
    assert r.status_code == 303
    stored = await _stored(runtime, sub_id)
    assert (stored.url, stored.event_types, stored.description) == (
        "https://hooks.example.test/v2",
        ["approve", "merged"],
        "CI",
    )
    # A destination the guard refuses is refused here too, and nothing changes.
    r = await admin_client.post(
        f"/admin/webhooks/{sub_id}/edit", data={**edit, "url": "http://169.254.169.254/latest/meta-data/"}
    )
    assert r.status_code == 422 and "destination_not_allowed" in r.text and "link-local" in r.text
    assert (await _stored(runtime, sub_id)).url == "https://hooks.example.test/v2"

    r = await admin_client.post(f"/admin/webhooks/{sub_id}/disable", data={})
    assert r.status_code == 403
    r = await admin_client.post(f"/admin/webhooks/{sub_id}/disable", data={"csrf_token": token})
    assert r.status_code == 303
    listing = (await admin_client.get("/admin/webhooks")).text
    assert "disabled</span>" in listing and "disabled by " in listing
    assert f'action="/admin/webhooks/{sub_id}/enable"' in listing
    assert (await _stored(runtime, sub_id)).disabled_at is not None

    async with db.transaction(runtime.sessions) as s:  # as if deliveries had failed meanwhile
        (await s.get(WebhookSubscription, int(sub_id))).consecutive_failures = 4
    assert "4 failed deliveries in a row" in (await admin_client.get("/admin/webhooks")).text
    r = await admin_client.post(f"/admin/webhooks/{sub_id}/enable", data={"csrf_token": token})
    assert r.status_code == 303
    stored = await _stored(runtime, sub_id)
    assert (stored.disabled_at, stored.consecutive_failures) == (None, 0)
    listing = (await admin_client.get("/admin/webhooks")).text
    assert "enabled</span>" in listing and f'action="/admin/webhooks/{sub_id}/disable"' in listing


async def test_loopback_is_refused_in_the_form_without_the_allowance(signed_in, settings, monkeypatch):
    monkeypatch.setattr(settings.webhooks, "allowed_hosts", [])
    admin_client, _ = await signed_in("admin")
    token = csrf_of((await admin_client.get("/admin/webhooks")).text)
    r = await admin_client.post(
        "/admin/webhooks", data={"csrf_token": token, "url": closed_port_url(), "event_types": "*"}
    )
    assert r.status_code == 422 and "destination_not_allowed" in r.text and "loopback" in r.text
    assert "No webhooks yet" in (await admin_client.get("/admin/webhooks")).text


async def test_another_organizations_admin_cannot_touch_the_subscription(
    signed_in, factory, browser_client, runtime
):
    admin_client, _ = await signed_in("admin")
    sub_id, token = await _one_subscription(admin_client)
    old = (await _stored(runtime, sub_id)).secret
    await browser_client.post("/logout", data={"csrf_token": token})
    browser_client.cookies.clear()

    outsider_client, _ = await signed_in("admin", org=await factory.org("elsewhere"))
    theirs = csrf_of((await outsider_client.get("/admin/webhooks")).text)
    assert (await outsider_client.get(f"/admin/webhooks/{sub_id}/edit")).status_code == 404
    for action, extra in (
        ("rotate-secret", {}),
        ("disable", {}),
        ("edit", {"url": "https://x.example/", "event_types": "*"}),
    ):
        r = await outsider_client.post(
            f"/admin/webhooks/{sub_id}/{action}", data={"csrf_token": theirs, **extra}
        )
        assert r.status_code == 404, (action, r.text)
    stored = await _stored(runtime, sub_id)
    assert (stored.secret, stored.disabled_at, stored.url) == (old, None, "https://hooks.example.test/h")
