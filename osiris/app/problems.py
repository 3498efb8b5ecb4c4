"""REST error shape: `application/problem+json` with a stable `code`, one handler per error family."""

from __future__ import annotations

import logging

from asyncpg import DataError as PgDataError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from osiris.app.errors import OsirisError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(status: int, code: str, title: str, detail: str, **extra: object) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


# What every error body looks like, for the OpenAPI description (RFC 9457 plus our stable `code`).
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
}


def _document_problems(app: FastAPI) -> None:
    """FastAPI documents 422 as its own JSON shape; ours is a problem document: say so."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "422" in operation.get("responses", {}):
                    operation["responses"]["422"] = {
                        "description": "Invalid input",
                        "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}},
                    }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _document_problems(app)

    @app.exception_handler(OsirisError)
    async def _domain(_: Request, exc: OsirisError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return problem(
            422, "invalid_input", "Invalid input", "the request does not match the schema", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(OSError)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem(
            503, "unavailable", "Service unavailable", "the database is not reachable; retry shortly"
        )

    # Every pooled connection busy for the pool's whole timeout: overload, not a bug (bench/load.py).
    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database connection pool exhausted")
        response = problem(
            503, "unavailable", "Service unavailable", "the server is overloaded; retry shortly"
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(DBAPIError)
    async def _db_error(_: Request, exc: DBAPIError) -> JSONResponse:
        # 08: connection exceptions; 57: the server is shutting down or starting up.
        if exc.connection_invalidated or str(getattr(exc.orig, "sqlstate", ""))[:2] in ("08", "57"):
            return problem(
                503, "unavailable", "Service unavailable", "the database connection was lost; retry"
            )
        if isinstance(exc, DataError) or isinstance(exc.orig.__cause__, PgDataError):
            # A value PostgreSQL cannot hold (an id past bigint, a NUL in text) is the caller's error.
            return problem(422, "invalid_input", "Invalid input", "a value is out of range or malformed")
        log.exception("database error")
        return problem(500, "internal", "Internal error", "an unexpected database error occurred")


class BodySizeLimit:
    """Refuse bodies over the limit with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(scope, receive, send, self.max_bytes)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(scope, receive, send, self.max_bytes)


class _BodyTooLarge(StarletteHTTPException):
    """An HTTP error, so that code reading the body (FastAPI's parsers, webhooks) answers 413 with it."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem(413, "too_large", "Payload too large", f"request bodies are limited to {limit} bytes")
    await response(scope, receive, send)
