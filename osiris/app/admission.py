"""At most so many HTTP requests in progress per process; the rest wait their turn, in order.

Why (measured with bench/load.py, 100 agents on 2 cores): no request holds a database connection for
long, but when the event loop is saturated every request holds its connection across several slow
turns of the loop, so 100 requests in progress keep the whole pool checked out (most connections
"idle in transaction", waiting for Python). The pool's queue is not fair either: a connection handed
back goes to whichever request asks first in that turn of the loop, and a waiter that loses the
race goes to the back of the line, so a few requests waited the full pool timeout and got 503
while the median waited a fraction of a second.

Admitting only as many requests as the pool can serve (its size and overflow, less a reserve for
the in-process worker, the sweeper and live clients catching up) moves the wait in front of the
request, before it holds anything, and makes it first come, first served: under overload requests
get slower evenly, and a 503 (with Retry-After) only comes after `db_pool_timeout_seconds` in line.
A database that is down still answers 503 at once (problems.py): the line is not the problem then.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from osiris.app.config import Settings
from osiris.app.problems import problem

log = logging.getLogger(__name__)

# Connections kept for what does not come through here: the job worker's handlers (pgqueuer runs a
# batch of 5 at once), the lease sweeper, WebSocket sign-ins and catch-up pages.
POOL_RESERVE = 8
# Long-lived or database-free: never wait in line (a clone, an SSE stream, probes, static files).
EXEMPT_PREFIXES = ("/static/", "/git/", "/healthz", "/readyz", "/metrics")

WAITING = Gauge("osiris_http_requests_waiting", "HTTP requests waiting for their turn (admission)")
REFUSED = Counter("osiris_http_requests_refused_total", "HTTP requests refused after waiting too long")


def request_limit(settings: Settings) -> int:
    """Requests in progress at once: what the pool can serve, less the reserve (at least one)."""
    if settings.server.max_requests_in_progress is not None:
        return settings.server.max_requests_in_progress
    return max(1, settings.db.pool_size + settings.db.max_overflow - POOL_RESERVE)


class Admission:
    """Pure ASGI middleware: a first-come, first-served line in front of the application."""

    def __init__(self, app: ASGIApp, limit: int, wait_seconds: float) -> None:
        self.app = app
        self.wait_seconds = wait_seconds
        # asyncio.Semaphore is FIFO: a newcomer never overtakes a waiter.
        self._slots = asyncio.Semaphore(limit)

    @staticmethod
    def _exempt(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if path.startswith(EXEMPT_PREFIXES):
            return True
        # MCP's GET is the session's server-sent event stream: open as long as the session is.
        return scope.get("method") == "GET" and path == "/mcp"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        WAITING.inc()
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            REFUSED.inc()
            log.warning("request waited %.0f s for its turn; refused", self.wait_seconds)
            response = problem(
                503, "unavailable", "Service unavailable", "the server is overloaded; retry shortly"
            )
            response.headers["Retry-After"] = "1"
            await response(scope, receive, send)
            return
        finally:
            WAITING.dec()
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()
