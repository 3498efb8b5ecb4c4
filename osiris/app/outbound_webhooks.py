"""Outbound webhooks: an organization's task events POSTed, signed, to the URLs its admins subscribe.

`events.record_event` (and the claim statement) find the matching subscriptions inside the very
statement that writes the event (`MATCHING_SUBSCRIPTIONS_SQL`), so the common case, no subscription,
costs no extra round trip; a match enqueues one `deliver_webhook` job per subscription in the same
transaction. The job POSTs `{id, type, created_at, task, data}` signed like Stripe and Slack
(`OSIRIS-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">`), to exactly the configured URL:
redirects are failures, never followed. Every attempt is a row in `webhook_deliveries`.

Destinations are guarded against SSRF (`DestinationPolicy`): the host is resolved once per attempt,
every address checked, and the POST goes to a checked address (the Host header and TLS name stay the
URL's), so a name that rebinds between check and connect reaches nothing new. A rotated secret keeps
signing for a grace period (two `v1=`), and a subscription that keeps failing disables itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from osiris import __version__
from osiris.app import jobs
from osiris.app.actors import Actor
from osiris.app.errors import Conflict, InvalidInput, NotFound
from osiris.app.models import Task, TaskEvent, WebhookDelivery, WebhookSubscription

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "OSIRIS-Signature"
EVENT_ID_HEADER = "OSIRIS-Event-Id"
ALL_EVENTS = "*"
EVENT_TYPE = re.compile(r"^[a-z][a-z_]{0,39}$")  # TaskEvent kinds: claim, submit, approve, merged …
SECRET_PREFIX = "whsec_"
FIRST_RUN = "0"  # the delivery the event itself caused; a redelivery gets a run of its own

# The subscriptions an event goes to, evaluated in the statement that inserts it (`ev` is that row).
# An empty array in the common case; the org_id index keeps it one probe.
MATCHING_SUBSCRIPTIONS_SQL = (
    "ARRAY(SELECT ws.id FROM webhook_subscriptions ws WHERE ws.org_id = ev.org_id"
    " AND ws.event_types && ARRAY[ev.kind, '*']::varchar[] AND ws.disabled_at IS NULL ORDER BY ws.id)"
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationNotAllowed(InvalidInput):
    code, title = "destination_not_allowed", "The webhook destination is not allowed"


class DestinationUnresolved(Exception):
    """The host name does not resolve (now): nothing to check, and nothing to connect to."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes, *older: str) -> str:
    """The OSIRIS-Signature value: a receiver recomputes v1 and rejects old timestamps. During a
    secret rotation the previous secret's signature follows the new one's (`t=…,v1=new,v1=old`)."""
    macs = [
        hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        for key in (secret, *older)
    ]
    return f"t={timestamp}," + ",".join(f"v1={mac}" for mac in macs)


def check_destination(url: str) -> str:
    """The URL as deliveries will use it, or InvalidInput: http(s), a host, no credentials, and
    parsed alike by the standard library and httpx, so what was checked is where the POST goes."""
    try:
        parts = urlsplit(url)
        parsed = httpx.URL(url)
        port = parts.port
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidInput("the webhook URL is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL is http:// or https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("put no credentials in a webhook URL; the signature authenticates OSIRIS")
    if parts.fragment:
        raise InvalidInput("a webhook URL has no #fragment")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    same = (
        parsed.scheme == parts.scheme
        and parsed.host == parts.hostname.lower()
        and (parsed.port or default_port) == (port or default_port)
    )
    if not same:
        raise InvalidInput("the webhook URL's scheme or host is ambiguous")
    return url


def _address_kind(ip: IpAddress) -> str | None:
    """What kind of non-public address `ip` is ("loopback", "private", …), or None if public.
    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo) are judged by that address."""
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in (ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())):
            if inner is not None and (kind := _address_kind(inner)):
                return f"{kind}, IPv4 {inner} inside"
    for kind, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private or not ip.is_global),
    ):
        if flag:
            return kind
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses a webhook may reach: public ones, and what the operator allowed."""

    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IpNetwork, ...] = ()
    allow_private: bool = False
    resolve_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> DestinationPolicy:
        names: set[str] = set()
        networks: list[IpNetwork] = []
        for entry in settings.webhooks_allowed_hosts:
            entry = entry.strip().lower().rstrip(".")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.strip("[]"))
        return cls(
            frozenset(names),
            tuple(networks),
            settings.webhooks_allow_private,
            settings.webhooks_timeout_seconds,
        )

    def refusal(self, host: str, address: str) -> str | None:
        """Why `host` may not be reached at `address`, or None if it may."""
        if host.lower().rstrip(".") in self.allowed_names:
            return None
        ip = ipaddress.ip_address(address)
        candidates = [ip] if not isinstance(ip, ipaddress.IPv6Address) else [ip, ip.ipv4_mapped]
        if any(c is not None and c in net for c in candidates for net in self.allowed_networks):
            return None
        kind = _address_kind(ip)
        if kind is None or (kind == "private" and self.allow_private):
            return None
        shown = host if host == address else f"{host} resolves to {address}, which"
        return f"{shown} is not public ({kind}); an operator can allow it in OSIRIS_WEBHOOKS_ALLOWED_HOSTS"

    async def addresses(self, url: str) -> list[str]:
        """The addresses `url`'s host has now, every one allowed, else DestinationNotAllowed.
        Deliveries connect only to these, so what was checked is what is reached."""
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None  # a name: resolve it
        if literal is not None:
            return self._checked(host, [str(literal)])
        port = parsed.port or {"http": 80, "https": 443}[parsed.scheme]
        try:
            async with asyncio.timeout(self.resolve_timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise DestinationUnresolved(f"cannot resolve {host}: {exc or 'timed out'}") from exc
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not found:
            raise DestinationUnresolved(f"{host} has no address")
        return self._checked(host, found)

    def _checked(self, host: str, addresses: list[str]) -> list[str]:
        for address in addresses:
            if reason := self.refusal(host, address):
                raise DestinationNotAllowed(reason)
        return addresses


async def vet_destination(url: str, policy: DestinationPolicy) -> str:
    """For a new or edited subscription: a well-formed URL whose host resolves to allowed addresses
    only. A name that does not resolve yet is accepted; each delivery checks again anyway."""
    url = check_destination(url)
    try:
        await policy.addresses(url)
    except DestinationUnresolved:
        pass
    return url


def check_event_types(event_types: Sequence[str]) -> list[str]:
    kinds = sorted({kind.strip() for kind in event_types if kind.strip()})
    if not kinds:
        raise InvalidInput('choose at least one event type, or "*" for all')
    bad = [k for k in kinds if k != ALL_EVENTS and not EVENT_TYPE.match(k)]
    if bad or len(kinds) > 50:
        raise InvalidInput(f"event types are TaskEvent kinds (e.g. approve, merged) or *; not {bad}")
    return [ALL_EVENTS] if ALL_EVENTS in kinds else kinds


# --- managing subscriptions (admins, their organization only) -----------------------------------


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
    await jobs.enqueue(
        session,
        jobs.DELIVER_WEBHOOK,
        {"event_id": row.event_id, "subscription_id": row.subscription_id, "run": secrets.token_hex(8)},
    )
    return row


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


# --- delivering ---------------------------------------------------------------------------------


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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


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
    cap = settings.webhooks_response_excerpt_bytes
    parsed = httpx.URL(url)
    host = parsed.raw_host.decode("ascii")
    headers = {**headers, "Host": parsed.netloc.decode("ascii")}
    # trust_env=False: no proxy from the environment; the POST goes to the configured URL itself.
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=settings.webhooks_timeout_seconds
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
        out.retry_after = _retry_after(response)
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
    if outcome.retryable and attempt < settings.webhooks_max_attempts:
        backoff = settings.webhooks_retry_base_seconds * 2 ** (attempt - 1)
        again = min(
            outcome.retry_after if outcome.retry_after is not None else backoff,
            settings.webhooks_retry_max_seconds,
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
                limit=settings.webhooks_disable_after_failures,
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
