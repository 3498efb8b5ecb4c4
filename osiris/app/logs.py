"""Logging: one line per record with the request id; JSON when asked for. Never a secret."""

from __future__ import annotations

import logging

import structlog
from asgi_correlation_id import CorrelationIdFilter


def configure(level: str = "INFO", *, json: bool = False) -> None:
    # Plain tracebacks: rich's default renders every frame's local variables, which takes seconds
    # on the event loop (a stall under a database outage) and would print any secret held in a local.
    console = structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    renderer = structlog.processors.JSONRenderer() if json else console
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.stdlib.add_log_level,
            structlog.stdlib.ExtraAdder(),
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    handler.addFilter(CorrelationIdFilter(name="request_id", uuid_length=16, default_value="-"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "pgserver", "alembic", "pgqueuer"):
        logging.getLogger(noisy).setLevel("WARNING")
