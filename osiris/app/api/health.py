"""Operations: liveness, readiness (the database answers), Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from osiris.app import jobs, metrics
from osiris.app.auth import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> Response:
    try:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means not ready
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", response_class=PlainTextResponse)  # Prometheus text, as documented
async def prometheus(runtime: RuntimeDep) -> Response:
    try:
        async with runtime.sessions() as session, session.begin():
            depth = await jobs.queue_depth(session)
        metrics.QUEUE_DEPTH.clear()
        for entrypoint, n in depth.items():
            metrics.QUEUE_DEPTH.labels(entrypoint).set(n)
    except Exception:  # noqa: S110 - metrics still serve the in-process counters without the database
        pass
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
