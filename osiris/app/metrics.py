"""Prometheus metrics, defined once."""

import time

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("osiris_http_requests_total", "HTTP requests", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("osiris_http_request_seconds", "HTTP request latency", ["method", "route"])
TRANSITIONS = Counter("osiris_task_transitions_total", "Task state transitions", ["action", "to"])
JOB_OUTCOMES = Counter("osiris_job_outcomes_total", "Job outcomes", ["entrypoint", "outcome"])
QUEUE_DEPTH = Gauge("osiris_job_queue_depth", "Queued jobs", ["entrypoint"])
ANNOUNCEMENT_BATCHES = Counter(
    "osiris_announcement_batches_total", "Batches of events announced after commit"
)
ANNOUNCEMENTS_LOST = Counter("osiris_announcements_lost_total", "Committed events whose announcement failed")


class RequestMetrics:
    """Pure ASGI middleware counting requests by route template (not raw path: bounded labels)."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message) -> None:  # type: ignore[no-untyped-def]
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, status).inc()
            REQUEST_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - start)
