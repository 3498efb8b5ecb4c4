"""Outbound webhooks, end to end: REST-managed subscriptions, a real receiver on a loopback port,
deliveries signed, retried, logged and redelivered; everything scoped to the admin's organization."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from sqlalchemy import select

from osiris.app import jobs
from osiris.app.models import WebhookDelivery, WebhookSubscription

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


@pytest.fixture
def drain(runtime, settings):
    fast = settings.model_copy(update={"webhooks_retry_base_seconds": 0.2, "webhooks_timeout_seconds": 5})

    async def run() -> None:
        await jobs.drain(runtime.dsn, jobs.JobContext(runtime.sessions, fast, runtime.services))

    return run


def verify(call: Call, secret: str = SECRET) -> dict:
    """What a receiver does: recompute the signature over "{t}.{body}" and check the timestamp."""
    fields = dict(part.split("=", 1) for part in call.headers["osiris-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + call.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(time.time() - int(fields["t"])) < 60
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
    from osiris.app.outbound_webhooks import check_destination

    assert check_destination(url) == url
