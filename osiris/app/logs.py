"""Logging: one line per record with the request id; JSON when asked for. Never a secret."""

from __future__ import annotations

import logging

import structlog
from asgi_correlation_id import CorrelationIdFilter


def configure(level: str = "INFO", *, json: bool = False) -> None:
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
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
