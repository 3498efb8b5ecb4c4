"""An exhausted connection pool is overload: a clear 503 with Retry-After, never a 500."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from osiris.app.main import create_app


async def test_pool_exhaustion_is_a_503_with_retry_after(settings, factory):
    _, agent = await factory.member("agent")
    tight = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_seconds": 0.3}
    )
    app = create_app(tight, run_background=False)
    async with LifespanManager(app, startup_timeout=60):
        engine = app.state.runtime.engine
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/api/v1/tasks", headers=agent)).status_code == 200
            async with engine.connect():  # the only connection, held elsewhere
                r = await client.get("/api/v1/tasks", headers=agent)
            assert r.status_code == 503
            assert r.json()["code"] == "unavailable"
            assert r.headers["retry-after"] == "1"
            assert (await client.get("/api/v1/tasks", headers=agent)).status_code == 200
