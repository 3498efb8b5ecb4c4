"""Outbound webhooks, end to end: REST-managed subscriptions, a real receiver on a loopback port,
deliveries signed, retried, logged and redelivered; everything scoped to the admin's organization.

The receiver is on loopback, which the destination guard refuses by default: these tests allow it
explicitly (OSIRIS_WEBHOOKS_ALLOWED_HOSTS), and the guard's own tests take the allowance away."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from sqlalchemy import select

from osiris.app import jobs
from osiris.app.models import WebhookDelivery, WebhookSubscription
from tests.support.jobs import drain as drain_jobs

SECRET = "receiver-shared-secret-0123456789"


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """A tiny ASGI app that records every request and answers from a per-path script."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.calls.append(Call(scope["path"], headers, body, time.monotonic()))
        queued = self.script.get(scope["path"]) or [(200, {})]
        status, extra = queued.pop(0) if len(queued) > 1 else queued[0]  # the last answer repeats
        raw = [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": b"received " + str(status).encode()})

    def to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(receiver, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield receiver, url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def receiver(receiver_server) -> tuple[Receiver, str]:
    rec, url = receiver_server
    rec.calls.clear()
    rec.script.clear()
    return rec, url


LOOPBACK_ALLOWED = ["127.0.0.1/32"]


@pytest.fixture(autouse=True)
def allow_loopback(settings, monkeypatch) -> None:
    """The app's settings (the REST API and the portal check subscriptions with them)."""
    monkeypatch.setattr(settings.webhooks, "allowed_hosts", LOOPBACK_ALLOWED)


@pytest.fixture
def drain(runtime, settings):
    """Run the queued jobs as a worker would, with the settings as they are now (plus `overrides`)."""

    async def run(**overrides) -> None:
        fast = {"webhooks": {"retry_base_seconds": 0.2, "timeout_seconds": 5}}
        await drain_jobs(runtime, settings.model_copy(update=fast).model_copy(update=overrides))

    return run


def signatures(call: Call) -> tuple[str, list[str]]:
    """The t= value and every v1= value of OSIRIS-Signature, in order."""
    parts = [part.split("=", 1) for part in call.headers["osiris-signature"].split(",")]
    [t] = [v for k, v in parts if k == "t"]
    return t, [v for k, v in parts if k == "v1"]


def verify(call: Call, secret: str = SECRET) -> dict:
    """What a receiver does: recompute the signature over "{t}.{body}", accept it if any v1 value
    matches (two during a secret rotation), and check the timestamp."""
    t, candidates = signatures(call)
    expected = hmac.new(secret.encode(), f"{t}.".encode() + call.body, hashlib.sha256).hexdigest()
    assert any(hmac.compare_digest(v1, expected) for v1 in candidates)
    assert abs(time.time() - int(t)) < 60
    return json.loads(call.body)


async def subscribe(client, headers, url: str, event_types: list[str], secret: str | None = SECRET) -> dict:
    body = {"url": url, "event_types": event_types}
    if secret is not None:
        body["secret"] = secret
    r = await client.post("/api/v1/webhooks/subscriptions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def claimed_task(client, agent) -> int:
    r = await client.post("/api/v1/tasks", json={"title": "Hook me"}, headers=agent)
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
    return task_id


async def log_rows(runtime) -> list[WebhookDelivery]:
    async with runtime.sessions() as s:
        return list((await s.execute(select(WebhookDelivery).order_by(WebhookDelivery.id))).scalars())


async def claim_delivered(
    client, factory, receiver, drain, path: str, script=None
) -> tuple[dict, list[Call]]:
    """An admin subscribes `path` to claims (answered by `script`), an agent claims a task, the jobs
    run: the admin's headers and what the receiver got."""
    rec, base = receiver
    if script:
        rec.script[path] = script
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    await subscribe(client, admin, f"{base}{path}", ["claim"])
    await claimed_task(client, agent)
    await drain()
    return admin, rec.to(path)


async def test_a_transition_is_delivered_once_signed_and_other_kinds_get_nothing(
    client, factory, runtime, receiver, drain
):
    rec, base = receiver
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    claims = await subscribe(client, admin, f"{base}/claims", ["claim"])
    await subscribe(client, admin, f"{base}/approvals", ["approve"])
    assert claims["secret"] == SECRET and claims["event_types"] == ["claim"]

    task_id = await claimed_task(client, agent)
    await drain()

    [call] = rec.to("/claims")
    assert rec.to("/approvals") == []
    event = verify(call)
    assert event["type"] == "claim" and event["task"]["id"] == task_id
    assert event["task"]["status"] == "IN_PROGRESS"
    assert event["transition"] == {"from": "PENDING", "to": "IN_PROGRESS"}
    assert set(event) >= {"id", "type", "created_at", "task", "data"}
    assert call.headers["osiris-event-id"] == str(event["id"])
    assert call.headers["content-type"] == "application/json"
    [row] = await log_rows(runtime)
    assert (row.ok, row.status_code, row.attempt, row.event_id) == (True, 200, 1, event["id"])
    assert row.response_excerpt == "received 200"

    # A wildcard subscription with a generated secret gets every kind, signed with that secret.
    everything = await subscribe(client, admin, f"{base}/all", ["*"], secret=None)
    assert everything["secret"].startswith("whsec_")
    r = await client.post(f"/api/v1/tasks/{task_id}/release", json={}, headers=agent)
    assert r.status_code == 200, r.text
    await drain()
    [release] = rec.to("/all")
    assert verify(release, everything["secret"])["type"] == "release"
    assert len(rec.to("/claims")) == 1


async def test_no_subscription_no_job(client, factory, runtime):
    _, agent = await factory.member("agent")
    await claimed_task(client, agent)
    async with runtime.sessions() as s:
        depth = await jobs.queue_depth(s)
    assert jobs.DELIVER_WEBHOOK not in depth


async def test_a_500_is_retried_and_each_attempt_logged(client, factory, runtime, receiver, drain):
    _, (first, second) = await claim_delivered(
        client, factory, receiver, drain, "/flaky", [(500, {}), (200, {})]
    )
    assert first.headers["osiris-event-id"] == second.headers["osiris-event-id"]
    assert verify(second)["type"] == "claim"
    rows = await log_rows(runtime)
    assert [(r.attempt, r.status_code, r.ok) for r in rows] == [(1, 500, False), (2, 200, True)]
    assert rows[0].error == "HTTP 500" and rows[0].retry_after_seconds == pytest.approx(0.2)


async def test_a_429_retry_after_is_honoured(client, factory, runtime, receiver, drain):
    _, (first, second) = await claim_delivered(
        client, factory, receiver, drain, "/busy", [(429, {"Retry-After": "1"}), (200, {})]
    )
    assert second.at - first.at >= 0.9  # waited as the receiver asked, not the 0.2 s backoff
    rows = await log_rows(runtime)
    assert [(r.status_code, r.retry_after_seconds) for r in rows] == [(429, 1.0), (200, None)]


async def test_a_redirect_to_another_host_is_not_followed(client, factory, runtime, receiver, drain):
    rec, base = receiver
    elsewhere = f"http://localhost:{base.rsplit(':', 1)[1]}/stolen"  # another host name, same server
    _, calls = await claim_delivered(
        client, factory, receiver, drain, "/moved", [(302, {"Location": elsewhere})]
    )

    assert len(calls) == 1 and rec.to("/stolen") == []
    [row] = await log_rows(runtime)  # a redirect is not retried: the URL needs fixing
    assert row.ok is False and row.status_code == 302
    assert "not followed" in row.error and "localhost" in row.error


async def test_redeliver_sends_the_same_event_again(client, factory, runtime, receiver, drain):
    rec, _ = receiver
    admin, _ = await claim_delivered(client, factory, receiver, drain, "/again")
    [delivery] = (await client.get("/api/v1/webhooks/deliveries", headers=admin)).json()

    r = await client.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=admin)
    assert r.status_code == 202, r.text
    await drain()

    first, second = rec.to("/again")
    assert verify(first)["id"] == verify(second)["id"] == delivery["event_id"]
    rows = await log_rows(runtime)
    assert len(rows) == 2 and rows[1].run != rows[0].run and rows[1].attempt == 1


async def test_another_orgs_admin_gets_404_and_non_admins_403(client, factory, receiver, drain):
    rec, base = receiver
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    other_org = await factory.org("other")
    _, outsider = await factory.member("admin", org=other_org)
    sub = await subscribe(client, admin, f"{base}/mine", ["claim"])
    await claimed_task(client, agent)
    await drain()
    [delivery] = (await client.get("/api/v1/webhooks/deliveries", headers=admin)).json()

    assert (await client.get("/api/v1/webhooks/subscriptions", headers=outsider)).json() == []
    assert (await client.get("/api/v1/webhooks/deliveries", headers=outsider)).json() == []
    r = await client.delete(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=outsider)
    assert r.status_code == 404
    r = await client.post(f"/api/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=outsider)
    assert r.status_code == 404
    for who in (agent, reviewer):
        assert (await client.get("/api/v1/webhooks/subscriptions", headers=who)).status_code == 403
        body = {"url": f"{base}/x", "event_types": ["*"]}
        assert (
            await client.post("/api/v1/webhooks/subscriptions", json=body, headers=who)
        ).status_code == 403
        assert (await client.get("/api/v1/webhooks/deliveries", headers=who)).status_code == 403
    # The owner still can delete it.
    r = await client.delete(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=admin)
    assert r.status_code == 204
    assert (await client.get("/api/v1/webhooks/subscriptions", headers=admin)).json() == []


async def test_the_secret_is_shown_once_and_never_logged(client, factory, runtime, receiver, drain, caplog):
    rec, base = receiver
    rec.script["/down"] = [(503, {})] * 3 + [(200, {})]
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    caplog.set_level(logging.DEBUG)
    created = await subscribe(client, admin, f"{base}/down", ["claim"], secret=None)
    await claimed_task(client, agent)
    await drain()

    listed = (await client.get("/api/v1/webhooks/subscriptions", headers=admin)).text
    deliveries = (await client.get("/api/v1/webhooks/deliveries", headers=admin)).text
    assert created["secret"] not in listed and "secret" not in listed
    assert created["secret"] not in deliveries
    assert created["secret"] not in caplog.text
    async with runtime.sessions() as s:
        stored = await s.scalar(select(WebhookSubscription.secret))
    assert stored == created["secret"]  # readable, because signing needs it
    assert len(rec.to("/down")) == 4


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://user:pw@example.com/hook",
        "javascript:alert(1)",
        "http:///nohost",
        "not a url",
    ],
)
async def test_only_plain_http_and_https_destinations(client, factory, url):
    _, admin = await factory.member("admin")
    r = await client.post(
        "/api/v1/webhooks/subscriptions", json={"url": url, "event_types": ["claim"]}, headers=admin
    )
    assert r.status_code == 422, r.text


async def test_event_types_are_kinds_or_star(client, factory, receiver):
    _, base = receiver
    _, admin = await factory.member("admin")
    for bad in ([], ["Approve!"], [""]):
        r = await client.post(
            "/api/v1/webhooks/subscriptions", json={"url": base, "event_types": bad}, headers=admin
        )
        assert r.status_code == 422, (bad, r.text)
    sub = await subscribe(client, admin, base, ["merged", "*"])
    assert sub["event_types"] == ["*"]


@pytest.mark.parametrize("url", ["http://[::1]:80/x", "https://Example.com:443/h?a=1", "http://127.0.0.1:9/"])
def test_explicit_default_ports_and_ipv6_are_fine(url):
    from osiris.app.outbound_webhooks.destinations import check_destination

    assert check_destination(url) == url


# --- the destination guard (SSRF) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT: not public either
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback, IPv4 127.0.0.1 inside"),
        ("::ffff:10.0.0.1", "private, IPv4 10.0.0.1 inside"),
        ("2002:a00:1::", "private, IPv4 10.0.0.1 inside"),  # 6to4 around 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused_unless_allowed(address, kind):
    from osiris.app.outbound_webhooks.destinations import DestinationPolicy

    refusal = DestinationPolicy().refusal("hooks.example", address)
    assert refusal is not None and f"({kind})" in refusal and address in refusal
    assert DestinationPolicy(allowed_networks=(ipaddress.ip_network(address),)).refusal("h", address) is None
    assert (
        DestinationPolicy(allowed_names=frozenset({"hooks.example"})).refusal("hooks.example", address)
        is None
    )
    # allow_private opens private networks only: loopback, link-local and the rest stay refused
    private_ok = DestinationPolicy(allow_private=True).refusal("hooks.example", address) is None
    assert private_ok == (kind == "private")


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"])
def test_public_addresses_are_fine(address):
    from osiris.app.outbound_webhooks.destinations import DestinationPolicy

    assert DestinationPolicy().refusal("hooks.example", address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",  # a name: resolved, and every address checked
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://10.0.0.7/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8000/",
        "https://224.0.0.251/",
    ],
)
async def test_non_public_destinations_are_refused_at_create(client, factory, monkeypatch, settings, url):
    monkeypatch.setattr(settings.webhooks, "allowed_hosts", [])
    _, admin = await factory.member("admin")
    r = await client.post(
        "/api/v1/webhooks/subscriptions", json={"url": url, "event_types": ["*"]}, headers=admin
    )
    assert r.status_code == 422, r.text
    assert (
        r.json()["code"] == "destination_not_allowed"
        and "OSIRIS_WEBHOOKS_ALLOWED_HOSTS" in r.json()["detail"]
    )
    assert (await client.get("/api/v1/webhooks/subscriptions", headers=admin)).json() == []


async def test_allow_private_admits_private_networks_but_not_loopback(client, factory, monkeypatch, settings):
    monkeypatch.setattr(settings.webhooks, "allowed_hosts", [])
    monkeypatch.setattr(settings.webhooks, "allow_private", True)
    _, admin = await factory.member("admin")
    await subscribe(client, admin, "http://10.20.30.40:8080/hook", ["*"])
    body = {"url": "http://localhost:8080/hook", "event_types": ["*"]}
    r = await client.post("/api/v1/webhooks/subscriptions", json=body, headers=admin)
    assert r.status_code == 422 and "loopback" in r.json()["detail"]


async def test_a_destination_no_longer_allowed_is_refused_at_delivery_and_nothing_sent(
    client, factory, runtime, receiver, drain
):
    rec, base = receiver
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    port = base.rsplit(":", 1)[1]
    await subscribe(client, admin, f"{base}/by-ip", ["claim"])  # allowed when subscribed
    await subscribe(client, admin, f"http://localhost:{port}/by-name", ["claim"])
    await claimed_task(client, agent)

    await drain(webhooks={"allowed_hosts": []})  # the operator took the allowance away since

    assert rec.calls == []
    rows = await log_rows(runtime)
    assert sorted(r.url.rsplit("/", 1)[1] for r in rows) == ["by-ip", "by-name"]
    for row in rows:  # logged, not retried: the URL or the allowlist has to change
        assert (row.ok, row.status_code, row.attempt, row.retry_after_seconds) == (False, None, 1, None)
        assert row.error.startswith("refused destination:") and "(loopback)" in row.error
    assert any("localhost resolves to 127.0.0.1" in r.error for r in rows)


async def test_a_name_is_connected_at_its_checked_address_with_its_own_host_header(
    client, factory, runtime, receiver, drain, monkeypatch, settings
):
    rec, base = receiver
    monkeypatch.setattr(settings.webhooks, "allowed_hosts", ["localhost"])  # by name, not by address
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    port = base.rsplit(":", 1)[1]
    await subscribe(client, admin, f"http://LocalHost:{port}/named", ["claim"])
    await claimed_task(client, agent)
    await drain()

    [call] = rec.to("/named")
    assert call.headers["host"] == f"localhost:{port}"  # the URL's host, though 127.0.0.1 was dialled
    assert verify(call)["type"] == "claim"
    # The address itself is not allowed by that entry: the same server by IP is refused.
    r = await client.post(
        "/api/v1/webhooks/subscriptions", json={"url": f"{base}/ip", "event_types": ["*"]}, headers=admin
    )
    assert r.status_code == 422 and r.json()["code"] == "destination_not_allowed"


# --- secret rotation -----------------------------------------------------------------------------


async def test_a_rotated_secret_signs_beside_the_old_one_for_the_grace_period_then_alone(
    client, factory, runtime, receiver, drain, caplog
):
    rec, base = receiver
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    caplog.set_level(logging.DEBUG)
    sub = await subscribe(client, admin, f"{base}/rotating", ["claim", "release"])

    r = await client.post(f"/api/v1/webhooks/subscriptions/{sub['id']}/rotate-secret", headers=admin)
    assert r.status_code == 200, r.text
    rotated = r.json()
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != SECRET and SECRET not in r.text
    grace = datetime.fromisoformat(rotated["rotation_grace_until"]) - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < grace <= timedelta(hours=24)

    task_id = await claimed_task(client, agent)
    await drain()
    [during] = rec.to("/rotating")
    t, (first, second) = signatures(during)  # two v1 values: the new secret's first
    mac = lambda key: hmac.new(key.encode(), f"{t}.".encode() + during.body, hashlib.sha256).hexdigest()  # noqa: E731
    assert (first, second) == (mac(new), mac(SECRET))
    assert verify(during, new) == verify(during, SECRET)  # a receiver on either secret accepts it

    # The grace period ends: only the new secret signs.
    async with runtime.sessions() as s, s.begin():
        row = await s.get(WebhookSubscription, sub["id"])
        row.previous_secret_expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert (await client.post(f"/api/v1/tasks/{task_id}/release", json={}, headers=agent)).status_code == 200
    await drain()
    after = rec.to("/rotating")[1]
    assert signatures(after)[1] == [mac_for(new, after)]
    verify(after, new)
    with pytest.raises(AssertionError):
        verify(after, SECRET)
    listed = (await client.get("/api/v1/webhooks/subscriptions", headers=admin)).text
    assert new not in listed and SECRET not in listed
    assert new not in caplog.text and SECRET not in caplog.text


def mac_for(secret: str, call: Call) -> str:
    t, _ = signatures(call)
    return hmac.new(secret.encode(), f"{t}.".encode() + call.body, hashlib.sha256).hexdigest()


async def test_a_rotation_without_grace_drops_the_old_secret_at_once(client, factory, receiver, drain):
    rec, base = receiver
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    sub = await subscribe(client, admin, f"{base}/leaked", ["claim"])
    r = await client.post(
        f"/api/v1/webhooks/subscriptions/{sub['id']}/rotate-secret", json={"grace_seconds": 0}, headers=admin
    )
    assert r.status_code == 200 and r.json()["rotation_grace_until"] is None
    await claimed_task(client, agent)
    await drain()
    [call] = rec.to("/leaked")
    assert signatures(call)[1] == [mac_for(r.json()["secret"], call)]


# --- editing, disabling, auto-disable ------------------------------------------------------------


async def test_patch_edits_and_rechecks_the_url(client, factory, receiver, monkeypatch, settings):
    _, base = receiver
    _, admin = await factory.member("admin")
    sub = await subscribe(client, admin, f"{base}/v1", ["claim"])
    path = f"/api/v1/webhooks/subscriptions/{sub['id']}"

    r = await client.patch(
        path,
        json={"url": f"{base}/v2", "event_types": ["approve", "merged"], "description": "CI"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["url"], r.json()["event_types"], r.json()["description"]) == (
        f"{base}/v2",
        ["approve", "merged"],
        "CI",
    )
    for bad in ({"url": "http://169.254.169.254/latest"}, {"url": "ftp://x.example/"}, {"event_types": []}):
        r = await client.patch(path, json=bad, headers=admin)
        assert r.status_code == 422, (bad, r.text)
    assert (await client.patch(path, json={"url": "http://10.0.0.1/"}, headers=admin)).json()["code"] == (
        "destination_not_allowed"
    )
    [now] = (await client.get("/api/v1/webhooks/subscriptions", headers=admin)).json()
    assert now["url"] == f"{base}/v2"  # a refused edit changes nothing


async def test_disabled_subscriptions_get_nothing_until_enabled(client, factory, runtime, receiver, drain):
    rec, base = receiver
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    sub = await subscribe(client, admin, f"{base}/toggle", ["claim", "release"])
    path = f"/api/v1/webhooks/subscriptions/{sub['id']}"

    r = await client.patch(path, json={"enabled": False}, headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["disabled_reason"]
    task_id = await claimed_task(client, agent)
    async with runtime.sessions() as s:
        assert jobs.DELIVER_WEBHOOK not in await jobs.queue_depth(s)  # not even matched
    await drain()
    assert rec.to("/toggle") == []

    r = await client.patch(path, json={"enabled": True}, headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is True and r.json()["disabled_at"] is None
    assert (await client.post(f"/api/v1/tasks/{task_id}/release", json={}, headers=agent)).status_code == 200
    await drain()
    assert [verify(c)["type"] for c in rec.to("/toggle")] == ["release"]


async def test_a_disabled_subscriptions_pending_retries_stop(client, factory, runtime, receiver, settings):
    from osiris.app.outbound_webhooks.delivery import deliver_webhook

    rec, base = receiver
    rec.script["/stop"] = [(503, {}), (200, {})]
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    sub = await subscribe(client, admin, f"{base}/stop", ["claim"])
    await claimed_task(client, agent)
    [delivery_payload] = await queued_payloads(runtime)
    ctx = jobs.JobContext(runtime.sessions, settings, runtime.services)

    with pytest.raises(jobs.Retry):  # the first attempt fails; a retry would follow
        await deliver_webhook(delivery_payload, ctx)
    r = await client.patch(
        f"/api/v1/webhooks/subscriptions/{sub['id']}", json={"enabled": False}, headers=admin
    )
    assert r.status_code == 200
    await deliver_webhook(delivery_payload, ctx)  # the retry: the subscription is disabled now

    assert len(rec.to("/stop")) == 1
    assert [row.status_code for row in await log_rows(runtime)] == [503]
    [row] = await log_rows(runtime)
    r = await client.post(f"/api/v1/webhooks/deliveries/{row.id}/redeliver", headers=admin)
    assert r.status_code == 409 and "disabled" in r.json()["detail"]


async def queued_payloads(runtime) -> list[dict]:
    async with runtime.sessions() as s:
        conn = await s.connection()
        raw = await conn.exec_driver_sql(
            "SELECT payload FROM pgqueuer WHERE entrypoint = 'deliver_webhook' AND status = 'queued'"
        )
        return [json.loads(bytes(p)) for (p,) in raw]


async def test_a_subscription_that_keeps_failing_is_disabled_and_a_success_resets_the_count(
    client, factory, runtime, receiver, drain, caplog
):
    rec, base = receiver
    rec.script["/broken"] = [(500, {})]
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    sub = await subscribe(client, admin, f"{base}/broken", ["claim"])
    limits = {"webhooks": {"max_attempts": 2, "disable_after_failures": 3}}

    async def state() -> dict:
        [row] = (await client.get("/api/v1/webhooks/subscriptions", headers=admin)).json()
        return row

    async def claimed_again() -> None:  # a release (not subscribed) and a claim (one delivery)
        assert (
            await client.post(f"/api/v1/tasks/{task_id}/release", json={}, headers=agent)
        ).status_code == 200
        assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200

    task_id = await claimed_task(client, agent)
    await drain(**limits)
    assert len(rec.to("/broken")) == 2  # one run, two attempts ...
    assert (await state())["consecutive_failures"] == 1  # ... counted once

    rec.script["/broken"] = [(200, {})]  # a success in between resets the count
    await claimed_again()
    await drain(**limits)
    assert (await state())["consecutive_failures"] == 0

    rec.script["/broken"] = [(500, {})]
    caplog.set_level(logging.WARNING)
    for failures in (1, 2, 3):
        assert (await state())["enabled"] is True
        await claimed_again()
        await drain(**limits)
        assert (await state())["consecutive_failures"] == failures
    now = await state()
    assert now["enabled"] is False and now["disabled_at"] is not None
    assert (
        now["disabled_reason"].startswith("3 failed deliveries in a row")
        and "HTTP 500" in now["disabled_reason"]
    )
    assert "webhook subscription disabled" in caplog.text
    sent = len(rec.to("/broken"))
    assert sent == 2 + 1 + 3 * 2

    # Disabled: the next events are not even matched, so nothing is sent.
    await claimed_again()
    async with runtime.sessions() as s:
        assert jobs.DELIVER_WEBHOOK not in await jobs.queue_depth(s)
    await drain(**limits)
    assert len(rec.to("/broken")) == sent

    r = await client.patch(
        f"/api/v1/webhooks/subscriptions/{sub['id']}", json={"enabled": True}, headers=admin
    )
    assert r.json()["enabled"] is True and r.json()["consecutive_failures"] == 0
    assert r.json()["disabled_reason"] is None


@pytest.fixture
def tls_listener(tmp_path) -> Iterator[tuple[int, list[str | None]]]:
    """A TLS server on loopback with a self-signed certificate for localhost: it records the SNI
    name of each handshake (which no public CA would let a client verify)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    names: list[str | None] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    ctx.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    pass  # the client refused our certificate, as it should

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], names
    stop.set()
    thread.join(5)
    server.close()


async def test_https_keeps_the_host_name_for_sni_and_certificate_checks(
    client, factory, runtime, drain, monkeypatch, settings, tls_listener
):
    port, names = tls_listener
    monkeypatch.setattr(settings.webhooks, "allowed_hosts", ["localhost"])
    _, admin = await factory.member("admin")
    _, agent = await factory.member("agent")
    await subscribe(client, admin, f"https://localhost:{port}/tls", ["claim"])
    await claimed_task(client, agent)
    await drain(webhooks={"max_attempts": 1})

    assert names == ["localhost"]  # dialled 127.0.0.1, but the TLS name is the URL's host
    [row] = await log_rows(runtime)
    assert row.ok is False and row.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in row.error  # verification stays on: a self-signed cert fails


def test_the_readme_receiver_accepts_either_secret_during_a_rotation():
    """The verification code in the README, run as a receiver would: both secrets pass while both
    sign; a wrong secret, a changed body or an old timestamp do not."""
    from pathlib import Path

    from osiris.app.outbound_webhooks.delivery import sign

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("Verifying a delivery", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own README
    receiver_verify = namespace["verify"]
    body, now = b'{"id":1}', int(time.time())
    header = sign("whsec_new-secret-0123456789", now, body, SECRET)
    assert receiver_verify(body, header, "whsec_new-secret-0123456789")
    assert receiver_verify(body, header, SECRET)
    assert not receiver_verify(body, header, "whsec_someone-else-0123456789")
    assert not receiver_verify(body + b" ", header, SECRET)
    assert not receiver_verify(body, sign(SECRET, now - 3600, body), SECRET)
    assert header.split(",")[1] == sign("whsec_new-secret-0123456789", now, body).split(",")[1]
