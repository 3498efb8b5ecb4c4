"""Seeded fault schedules for the provider fakes, at the HTTP boundary.

A fault is decided per (provider, request key, n-th time that key is asked), from a seed: the same
seed gives the same faults to the same calls however the concurrent jobs interleave. GitHub and
Twilio are reached through httpx transports (the fault is raised or answered in the transport);
Slack's SDK speaks aiohttp to a real loopback server, so a TCP proxy in front of it answers busy or
resets the connection.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

# Faults after which the provider never acted: any provider may get them.
BEFORE = ("503", "429", "timeout-before", "reset-before")
# GitHub only: its answers say what happened, and OSIRIS looks before it creates again.
GITHUB = (
    "500",
    "429",
    "secondary",
    "primary",
    "timeout-before",
    "reset-before",
    "timeout-after",
    "reset-after",
)


@dataclass
class Schedule:
    seed: int
    rates: dict[str, float]  # provider -> share of its calls that fail
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (provider, kind) -> n
    _seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    _streak: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, provider: str, key: str, kinds: tuple[str, ...]) -> str | None:
        with self._lock:
            n = self._seen[(provider, key)]
            self._seen[(provider, key)] += 1
            rng = random.Random(f"{self.seed}:{provider}:{key}:{n}")
            # never more than four faults in a row on one kind of call: the test stays bounded
            if self._streak[(provider, key)] >= 4 or rng.random() >= self.rates.get(provider, 0.0):
                self._streak[(provider, key)] = 0
                return None
            self._streak[(provider, key)] += 1
            kind = rng.choice(kinds)
            self.injected[(provider, kind)] += 1
            return kind


def _busy(kind: str, request: httpx.Request) -> httpx.Response:
    doc = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
    if kind == "secondary":
        body, headers = (
            {"message": "You have exceeded a secondary rate limit.", "documentation_url": doc},
            {"retry-after": "1"},
        )
        status = 403
    elif kind == "primary":
        import time

        body = {"message": "API rate limit exceeded", "documentation_url": doc}
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(int(time.time()) + 1),
        }
        status = 403
    elif kind == "429":
        body, headers, status = {"message": "Too many requests"}, {"retry-after": "1"}, 429
    else:  # 500 / 503: a busy server; Retry-After kept small for the test
        body, headers, status = {"message": "Server Error"}, {"retry-after": "1"}, int(kind)
    return httpx.Response(status, json=body, headers=headers, request=request)


class ChaosTransport(httpx.AsyncBaseTransport):
    """Wraps a transport; records what reached the provider (and took effect)."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, schedule: Schedule, provider: str, kinds: tuple[str, ...]
    ):
        self.inner, self.schedule, self.provider, self.kinds = inner, schedule, provider, kinds
        self.reached: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        key = f"{request.method} {request.url.path}"
        kind = self.schedule.decide(self.provider, key, self.kinds)
        if kind == "timeout-before":
            raise httpx.ConnectTimeout("chaos: connect timed out", request=request)
        if kind == "reset-before":
            raise httpx.ConnectError("chaos: [Errno 104] Connection reset by peer", request=request)
        if kind is not None and not kind.endswith("-after"):
            return _busy(kind, request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        try:
            body = json.loads(request.content) if request.content else None
        except ValueError:
            body = None
        self.reached.append({"key": key, "status": response.status_code, "body": body})
        if kind == "timeout-after":  # it happened, but the answer never arrives
            raise httpx.ReadTimeout("chaos: read timed out", request=request)
        if kind == "reset-after":
            raise httpx.RemoteProtocolError(
                "chaos: server disconnected without sending a response", request=request
            )
        return response


class ChaosProxy:
    """A loopback HTTP/1.1 proxy, one request per connection: busy answers or resets per Schedule."""

    def __init__(self, target_port: int, schedule: Schedule, provider: str, kinds: tuple[str, ...]) -> None:
        self.target_port, self.schedule, self.provider, self.kinds = target_port, schedule, provider, kinds
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = next(
                (
                    int(v)
                    for k, _, v in (x.partition(":") for x in lines[1:])
                    if k.lower() == "content-length"
                ),
                0,
            )
            body = await reader.readexactly(length) if length else b""
            kind = self.schedule.decide(self.provider, f"{method} {path}", self.kinds)
            if kind == "reset-before" or kind == "timeout-before":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # RST: the client sees the connection reset
                return
            if kind is not None:
                status = {"429": "429 Too Many Requests", "503": "503 Service Unavailable"}[kind]
                payload = json.dumps(
                    {"ok": False, "error": "ratelimited" if kind == "429" else "fatal_error"}
                )
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                    f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n{payload}".encode()
                )
                await writer.drain()
                writer.close()
                return
            kept = [x for x in lines[1:] if x and not x.lower().startswith(("connection:", "keep-alive:"))]
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            upstream_w.write(
                ("\r\n".join([lines[0], *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1") + body
            )
            await upstream_w.drain()
            answer = await upstream_r.read()
            upstream_w.close()
            writer.write(answer)
            await writer.drain()
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
