"""Where a webhook may be POSTed: a well-formed http(s) URL whose host is, and resolves to, public
addresses only, unless the operator allowed it (`OSIRIS_WEBHOOKS_ALLOWED_HOSTS`,
`OSIRIS_WEBHOOKS_ALLOW_PRIVATE`). Checked when a subscription is created or edited, and again
before every attempt; deliveries connect only to the addresses checked here."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from osiris.app.errors import InvalidInput

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationNotAllowed(InvalidInput):
    code, title = "destination_not_allowed", "The webhook destination is not allowed"


class DestinationUnresolved(Exception):
    """The host name does not resolve (now): nothing to check, and nothing to connect to."""


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
        for entry in settings.webhooks.allowed_hosts:
            entry = entry.strip().lower().rstrip(".")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.strip("[]"))
        return cls(
            frozenset(names),
            tuple(networks),
            settings.webhooks.allow_private,
            settings.webhooks.timeout_seconds,
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
