"""Shared fixtures: a real PostgreSQL database of this run's own, migrated with Alembic.

With OSIRIS_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) a fresh database is
created on that server for this run and dropped afterwards, so parallel runs never collide; without
it the embedded server (pgserver) runs under a temporary folder.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from bench._server import create_database, drop_database
from osiris.app import accounts, db
from osiris.app.actors import Actor
from osiris.app.auth import actor_for
from osiris.app.config import Settings
from osiris.app.models import Organization, Role, User
from osiris.app.runtime import Runtime
from osiris.server import asyncpg_dsn, create_app
from tests.support.settings import make_settings

TABLES = (
    "organizations, users, api_tokens, tasks, artifacts, messages, task_events, deliveries, "
    "pgqueuer, pgqueuer_log, pgqueuer_statistics"
)


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="osiris-test-"))


@pytest.fixture(scope="session")
async def database_url(tmp_root: Path) -> AsyncIterator[str]:
    server = os.environ.get("OSIRIS_TEST_DATABASE_URL")
    if not server:
        embedded = db.EmbeddedPostgres(tmp_root)
        url = embedded.start()
        await db.upgrade(url)
        yield url
        embedded.stop()
        return
    created = await create_database(server, "osiris_t")
    url = created.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    await db.upgrade(url)
    yield url
    await drop_database(server, created)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_root: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_root / "data",
        tasks={"lease_seconds": 600},
        # The venv's python may live under /root, which the namespace level's uid (nobody) cannot
        # execute; that level is driven end to end in tests/security/test_attack_checks.py.
        sandbox={"isolation": "userns"},
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator:
    application = create_app(settings, run_background=False)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=30):
        yield application


@pytest.fixture(scope="session")
def runtime(app) -> Runtime:
    return app.state.runtime


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture(autouse=True)
async def _clean_database(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test starts from empty tables (only when the test uses the database)."""
    if "database_url" not in request.fixturenames:
        yield
        return
    url = request.getfixturevalue("database_url")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    await conn.close()
    yield


# --- factories ---------------------------------------------------------------------------------


class Factory:
    """Small async builders for rows, committed so that the API and other connections see them."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def org(self, slug: str | None = None) -> Organization:
        async with db.transaction(self.runtime.sessions) as session:
            if slug is None:
                return await accounts.default_org(session)
            org = Organization(slug=slug, name=slug)
            session.add(org)
            await session.flush()
            return org

    async def user(
        self,
        role: Role | str = Role.AGENT,
        *,
        org: Organization | None = None,
        name: str | None = None,
        password: str | None = None,
        github_login: str | None = None,
    ) -> User:
        org = org or await self.org()
        role = Role(role)
        async with db.transaction(self.runtime.sessions) as session:
            return await accounts.create_user(
                session,
                org_id=org.id,
                username=name or f"{role.value}-{secrets.token_hex(4)}",
                role=role,
                password=password,
                github_login=github_login,
            )

    async def token(self, user: User) -> str:
        async with db.transaction(self.runtime.sessions) as session:
            return (await accounts.create_token(session, user=user, name="test")).secret

    async def member(
        self, role: Role | str = Role.AGENT, *, org: Organization | None = None
    ) -> tuple[User, dict]:
        """A user and the Authorization header that acts as them."""
        user = await self.user(role, org=org)
        return user, {"Authorization": f"Bearer {await self.token(user)}"}

    @staticmethod
    def actor(user: User) -> Actor:
        return actor_for(user)


@pytest.fixture
def factory(runtime: Runtime) -> Factory:
    return Factory(runtime)
