"""Database access: the URL (configured or embedded), the async engine, sessions, migrations."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from osiris.app.config import Settings

T = TypeVar("T")

log = logging.getLogger(__name__)

# One constant for every process that migrates: replicas starting together queue on this lock.
MIGRATION_LOCK_KEY = 0x05151515


def _asyncpg_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


class EmbeddedPostgres:
    """A PostgreSQL server owned by this data dir, started on demand (pgserver ships the binaries).

    pgserver shares one postmaster between processes using the same data dir and stops it when the
    last one lets go, so the CLI works while `serve` runs.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pg").resolve()
        self._server = None

    def start(self) -> str:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        _runtime_dir_for_pgserver(self.pgdata)
        import pgserver  # imported late: only the embedded default needs the binaries

        self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        return f"postgresql+asyncpg://postgres@/postgres?host={self.pgdata}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _runtime_dir_for_pgserver(pgdata: Path) -> None:
    """pgserver keeps its inter-process lock (and, for a data dir too deep for a socket path, the
    socket) in the user's runtime dir, which platformdirs reads from XDG_RUNTIME_DIR when pgserver is
    imported; unset (containers, CI, ssh without a login session) it warns and falls back to a
    shared /tmp/runtime-<uid> anyone could have created first. Ours, then: a private folder in the
    data dir, unless a login session gave us one, or the data dir is too deep for the socket (which
    then needs the short fallback; unix socket paths are limited to about 100 bytes)."""
    if os.environ.get("XDG_RUNTIME_DIR") or len(str(pgdata / ".s.PGSQL.5432")) > 100:
        return
    run = pgdata.parent / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(run)


def resolve_database_url(settings: Settings, embedded: EmbeddedPostgres | None = None) -> str:
    if settings.db.url:
        return _asyncpg_url(settings.db.url)
    if embedded is None:
        raise RuntimeError("no DATABASE_URL and no embedded server")
    return embedded.start()


def make_engine(url: str, settings: Settings) -> AsyncEngine:
    # HTTP requests queue in front of the app (admission.py) so that the ones in progress fit in
    # pool_size + max_overflow with a few to spare: under load they wait there, in order, rather
    # than here, and pool_timeout is rarely the limit that load reaches.
    return create_async_engine(
        url,
        pool_size=settings.db.pool_size,
        max_overflow=settings.db.max_overflow,
        pool_timeout=settings.db.pool_timeout_seconds,
        # No pre-ping: it costs a round trip on every checkout (a quarter of a claim). A connection
        # lost with a database restart fails one request with 503 and is replaced by the pool.
        pool_pre_ping=False,
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The one place that commits: the edge opens this, services only flush."""
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection in autocommit, as the asyncpg connection under it: for a statement that is
    a whole transaction by itself on a hot path (the claim), which then costs one round trip instead
    of three (no BEGIN, no COMMIT) and none of the ORM's per-call work.

    Only for single statements: two statements on it would be two transactions. Errors come out as
    SQLAlchemy's, as from a session (problems.py answers them: a lost connection is a 503, a value
    PostgreSQL cannot hold a 422), and a connection that broke is dropped from the pool.
    """
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        driver: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
        try:
            yield driver
        except asyncpg.DataError as exc:
            raise DataError(None, None, exc) from exc
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
            await conn.invalidate()
            raise OperationalError(None, None, exc, connection_invalidated=True) from exc
        except asyncpg.PostgresError as exc:
            if driver.is_closed():  # e.g. the server shutting down (57P01)
                await conn.invalidate()
            raise DBAPIError(None, None, exc, connection_invalidated=driver.is_closed()) from exc


async def insert_new(
    session: AsyncSession, model: type[T], values: dict[str, Any], **conflict: Any
) -> T | None:
    """INSERT one row unless a unique key already holds it (PostgreSQL decides a race); the new row,
    or None when it existed. `conflict` is `on_conflict_do_nothing`'s target (index_elements=/constraint=)."""
    stmt = pg_insert(model).values(**values).on_conflict_do_nothing(**conflict).returning(model.id)
    new_id = (await session.execute(stmt)).scalar_one_or_none()
    return None if new_id is None else await session.get(model, new_id)


def alembic_config(url: str):
    from alembic.config import Config

    here = Path(__file__).resolve().parent.parent
    cfg = Config()
    cfg.set_main_option("script_location", str(here / "migrations"))
    cfg.attributes["url"] = url
    return cfg


# Alembic keeps its environment in module globals: one migration run per process at a time.
# Across processes (replicas) the advisory lock in env.py does the queuing.
_alembic_lock = threading.Lock()


def upgrade_sync(url: str, revision: str = "head") -> None:
    from alembic import command

    with _alembic_lock:
        command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    if revision == "head" and await _at_head(url):
        return  # the usual start: nothing to migrate, and no need to load Alembic to learn that
    # Alembic's async env runs its own event loop; give it a thread of its own.
    await asyncio.to_thread(upgrade_sync, url, revision)


_REVISION = re.compile(r"^revision(?:: *str)? *= *['\"]([^'\"]+)['\"] *$", re.MULTILINE)
_DOWN_REVISION = re.compile(
    r"^down_revision(?::[^=\n]*)? *= *(?:['\"]([^'\"]+)['\"]|(None)) *$", re.MULTILINE
)


def head_revision() -> str | None:
    """The newest migration's revision, read from the files' text without importing Alembic (a
    tenth of a second of every start, issue 17); None unless the migrations are one plain chain
    with one head, and then Alembic decides."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (Path(__file__).resolve().parent.parent / "migrations" / "versions").glob("[0-9]*.py"):
        text = path.read_text()
        revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision[1])
        if down[1]:
            downs.add(down[1])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 and downs <= revisions else None


async def _at_head(url: str) -> bool:
    """Whether the database is at the newest migration already (Alembic's version table says so)."""
    head = head_revision()
    if head is None:
        return False
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return False  # Alembic will say what is wrong
    try:
        rows = await conn.fetch("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return False  # a new database
    finally:
        await conn.close()
    return [r["version_num"] for r in rows] == [head]
