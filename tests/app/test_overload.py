"""An exhausted connection pool is overload: a clear 503 with Retry-After, never a 500."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from osiris.server import create_app


async def test_pool_exhaustion_is_a_503_with_retry_after(settings, factory):
    _, agent = await factory.member("agent")
    tight = settings.model_copy(
        update={"db": {"pool_size": 1, "max_overflow": 0, "pool_timeout_seconds": 0.3}}
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


async def test_requests_beyond_the_limit_wait_their_turn_in_order():
    """Admission: over the limit a request waits (first come, first served) instead of failing, and
    only a wait longer than the configured one is a 503 with Retry-After."""
    import asyncio

    from osiris.app.admission import Admission

    gate = asyncio.Event()
    order: list[str] = []

    async def endpoint(scope, receive, send) -> None:
        if scope["path"] == "/hold":
            await gate.wait()
        order.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = Admission(endpoint, limit=1, wait_seconds=2.0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        hold = asyncio.create_task(client.get("/hold"))
        await asyncio.sleep(0.05)
        waiting = []
        for n in range(5):
            waiting.append(asyncio.create_task(client.get(f"/w{n}")))
            await asyncio.sleep(0.01)  # arrive in a known order
        assert (await client.get("/healthz")).status_code == 200  # probes never wait in line
        await asyncio.sleep(0.2)
        gate.set()
        assert [r.status_code for r in await asyncio.gather(hold, *waiting)] == [200] * 6
        assert order == ["/healthz", "/hold", "/w0", "/w1", "/w2", "/w3", "/w4"]

        gate.clear()
        app.wait_seconds = 0.2
        hold = asyncio.create_task(client.get("/hold"))
        await asyncio.sleep(0.05)
        refused = await client.get("/late")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "unavailable"
        gate.set()
        assert (await hold).status_code == 200
