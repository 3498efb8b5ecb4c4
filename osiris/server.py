"""create_app(): the one ASGI application — REST API, webhooks, MCP, portal, and their lifespan.

The composition root: it sits above the core (osiris.app) and every edge package and wires them
together; nothing in osiris.app imports it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import text
from sqlalchemy.engine import make_url

from osiris import __version__
from osiris.app import (
    accounts,
    db,
    effects,
    integrations,
    jobs,
    lifecycle,
    metrics,
    problems,
    reminders,
    repositories,
    sandbox,
)
from osiris.app.admission import Admission, request_limit
from osiris.app.api import admin, auth, health, tasks
from osiris.app.api import docs as api_docs
from osiris.app.api import oauth as oauth_api
from osiris.app.api import organizations as organizations_api
from osiris.app.api import review_reminders as review_reminders_api
from osiris.app.api import reviews as reviews_api
from osiris.app.api import routing as routing_api
from osiris.app.api import webhook_subscriptions as webhook_subscriptions_api
from osiris.app.config import Settings, get_settings
from osiris.app.ratelimit import RateLimiter
from osiris.app.realtime import Hub
from osiris.app.runtime import Runtime
from osiris.app.security import TOKENS_CHANNEL
from osiris.app.streams import REVOKED_CHANNEL, OpenStreams
from osiris.app.token_cache import TokenCache

log = logging.getLogger(__name__)
assert effects  # imported for its job handlers  # noqa: S101


# The edges, each in a package of its own. Each module exposes `install(app, settings)` (routes and
# mounts) and may expose `async def services(runtime)` (the ports it implements, for job handlers)
# and `lifespan(app, runtime)` (what it runs while the app runs: the MCP session manager, the SMTP
# listener). Imported when an app or a worker is assembled, not when a CLI command only needs the
# database.
@functools.cache
def _extensions() -> list:
    from gidgethub.routing import Router

    from osiris.github_bridge import extension as code_host
    from osiris.github_bridge import github_events
    from osiris.ingest import extension as channels
    from osiris.ingest import github_issues
    from osiris.mcp import extension as mcp
    from osiris.portal import extension as portal

    # One router for GitHub's webhook events, over both edges that answer them (pull requests and
    # reviews in the bridge, issues as requests in ingest), assembled here as bedevere's __main__ does.
    router = Router(github_events.ROUTER, github_issues.ROUTER)
    jobs.job_handler(github_events.GITHUB_EVENT)(github_events.event_job(router))
    return [code_host, mcp, channels, portal]


class _RequestId(CorrelationIdMiddleware):
    """X-Request-ID on every request. A WebSocket gets its id for its log lines too, but its
    messages go straight out: the wrapper that adds the header to an HTTP response would be one more
    call per live event and client (the board's fan-out, issue 17)."""

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        given = dict(scope["headers"]).get(self.header_name.lower().encode(), b"").decode("latin-1")
        valid = given and (self.validator is None or self.validator(given))
        correlation_id.set(given if valid else self.generator())
        await self.app(scope, receive, send)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _sweep_leases(runtime: Runtime) -> None:
    next_scan = 0.0  # review reminders (app/reminders.py) ride the same loop, at their own pace
    while True:
        await asyncio.sleep(
            min(runtime.settings.tasks.sweep_interval_seconds, runtime.settings.review.reminder_scan_seconds)
        )
        try:
            async with db.transaction(runtime.sessions) as session:
                returned = await lifecycle.expire_leases(session)
            if returned:
                log.info("returned expired claims to PENDING", extra={"task_ids": returned})
            if asyncio.get_running_loop().time() >= next_scan:
                next_scan = asyncio.get_running_loop().time() + runtime.settings.review.reminder_scan_seconds
                async with db.transaction(runtime.sessions) as session:
                    claimed = await reminders.scan_due(session, runtime.settings)
                if claimed:
                    log.info("review reminders due", extra={"reminder_ids": claimed})
        except Exception as exc:  # the database may be away; try again next round
            log.warning("lease sweep failed: %s", type(exc).__name__)


@asynccontextmanager
async def start_runtime(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Runtime]:
    """Bring up the database (embedded or configured), migrate, and hold the engine."""
    embedded = db.EmbeddedPostgres(settings.data_dir) if settings.db.embedded else None
    url = db.resolve_database_url(settings, embedded)
    try:
        if migrate:
            await db.upgrade(url)
        engine = db.make_engine(url, settings)
        runtime = Runtime(
            settings=settings, engine=engine, sessions=db.make_sessionmaker(engine), dsn=asyncpg_dsn(url)
        )
        try:
            yield runtime
        finally:
            await engine.dispose()
    finally:
        if embedded is not None:
            embedded.stop()


BOOTSTRAP_LOCK_KEY = 0x05151516


async def bootstrap(runtime: Runtime) -> None:
    pw = runtime.settings.auth.admin_password
    async with db.transaction(runtime.sessions) as session:
        # Replicas and `serve --workers` start together: one at a time decides whether to create it.
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOTSTRAP_LOCK_KEY})
        generated = await accounts.bootstrap_admin(session, password=pw.get_secret_value() if pw else None)
        s = runtime.settings
        await repositories.register_configured(
            session, names=[s.repos.default_repo, *s.local.projects], github=s.github.repo
        )
    if generated:
        announce_admin_password(runtime.settings, generated)


ADMIN_PASSWORD_FILE = "admin-password"


def admin_password_path(settings: Settings) -> Path:
    return settings.data_dir.resolve() / ADMIN_PASSWORD_FILE


def store_admin_password(settings: Settings, password: str) -> Path:
    """Keep the generated password for its owner: a file only they can read, in the data dir that
    checks never see (sandbox.hidden_paths). Written whole or not at all."""
    path = admin_password_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{password}\n".encode())
    finally:
        os.close(fd)
    os.replace(partial, path)
    return path


def announce_admin_password(settings: Settings, password: str) -> None:
    """To the console, never through logging (whose records may be shipped anywhere): one line to
    paste, and where the password is kept."""
    try:
        where = f"stored in {store_admin_password(settings, password)} (mode 0600)"
    except OSError as exc:
        where = f"not stored ({type(exc).__name__}): keep it now"
    sys.stderr.write(
        "\nOSIRIS admin account created: user 'admin'; its password is "
        f"{where}. For the README's examples:\n"
        f"export OSIRIS_ADMIN_PASSWORD={shlex.quote(password)}\n\n"
    )
    sys.stderr.flush()


def create_app(settings: Settings | None = None, *, run_background: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with start_runtime(settings) as runtime:
            runtime.services.login_limiter = RateLimiter(settings.auth.login_rate_per_minute)
            app.state.runtime = runtime
            await bootstrap(runtime)
            await install_services(runtime)
            log.info(integrations.summary(settings))  # names settings, never their values
            hub = Hub(runtime.dsn)
            runtime.services.hub = hub
            cache = TokenCache()
            runtime.services.token_cache = cache
            hub.listen(TOKENS_CHANNEL, cache.evict)
            # Open WebSockets and MCP streams of a revoked credential close on every replica.
            streams = OpenStreams(per_credential=settings.live.max_per_credential)
            runtime.services.open_streams = streams
            hub.listen(TOKENS_CHANNEL, streams.token_revoked)
            hub.listen(REVOKED_CHANNEL, streams.key_revoked)
            background: list[asyncio.Task] = []
            worker = None
            async with contextlib.AsyncExitStack() as stack:
                for ext in _extensions():  # the edges' own parts of the lifespan
                    if hasattr(ext, "lifespan"):
                        await stack.enter_async_context(ext.lifespan(app, runtime))
                await hub.start()
                if run_background:
                    background.append(asyncio.create_task(_sweep_leases(runtime), name="lease-sweeper"))
                    if settings.server.run_worker:
                        jobs.handlers_for(settings)  # a misspelt OSIRIS_WORKER_JOBS stops the start
                        ctx = jobs.JobContext(runtime.sessions, settings, runtime.services)
                        worker = jobs.Worker(runtime.dsn, ctx)
                        background.append(asyncio.create_task(worker.run(), name="job-worker"))
                try:
                    yield
                finally:
                    if worker is not None:
                        worker.stop()
                    for t in background:
                        t.cancel()
                    for t in background:
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await asyncio.wait_for(t, 10)
                    await hub.stop()

    app = FastAPI(
        title="OSIRIS",
        version=__version__,
        description="A human-in-the-loop gate for AI coding agents.",
        lifespan=lifespan,
        docs_url=None,  # served by _offline_docs, from our own origin
        redoc_url=None,
    )
    api_docs.install(app)
    app.state.settings = settings
    problems.install(app)
    for router in (health.router, auth.router, tasks.router, admin.router, routing_api.router):
        app.include_router(router)
    app.include_router(webhook_subscriptions_api.router)
    app.include_router(organizations_api.router)
    app.include_router(reviews_api.router)
    app.include_router(review_reminders_api.router)
    app.include_router(oauth_api.router)
    for ext in _extensions():
        ext.install(app, settings)

    # Innermost of these: refusals after a long wait are counted in the request metrics.
    app.add_middleware(
        Admission,
        limit=request_limit(settings),
        wait_seconds=settings.db.pool_timeout_seconds,
    )
    app.add_middleware(metrics.RequestMetrics)
    app.add_middleware(problems.BodySizeLimit, max_bytes=2 * settings.tasks.max_artifact_bytes + 65536)
    app.add_middleware(_RequestId, header_name="X-Request-ID")
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


async def install_services(runtime: Runtime) -> None:
    """Ports that job handlers and edges use (code host, notifiers), from every extension."""
    if runtime.services.login_limiter is None:
        runtime.services.login_limiter = RateLimiter(runtime.settings.auth.login_rate_per_minute)
    for ext in _extensions():
        if hasattr(ext, "services"):
            await ext.services(runtime)
    # The checks' isolation is probed (and logged) once at start, not at the first check.
    await asyncio.to_thread(sandbox.protect_data_dir, runtime.settings)
    with contextlib.suppress(sandbox.SandboxUnavailable):  # logged; each check is then an error
        await asyncio.to_thread(sandbox.choose, runtime.settings)
