"""What one OSIRIS process holds while it runs: settings, engine, sessions, and its services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from osiris.app.config import Settings

if TYPE_CHECKING:  # annotations only: these modules import this one
    from osiris.app.ports import CodeHost, Notifier, ReviewerNotifier
    from osiris.app.ratelimit import RateLimiter
    from osiris.app.realtime import Hub
    from osiris.app.streams import OpenStreams
    from osiris.app.token_cache import TokenCache


@dataclass
class Services:
    """The long-lived objects of one process, filled in at start by the composition root and the
    edges' `services(runtime)`. A field left None is a part this process does not run (no worker's
    code host in a bare API test, no SMTP listener when email is off)."""

    code_host: CodeHost | None = None  # the local git host or GitHub (osiris.app.ports.CodeHost)
    notifier: Notifier | None = None  # replies and notices to requesters, over their channel
    reviewer_notifier: ReviewerNotifier | None = None  # review reminders to reviewers' own addresses
    hub: Hub | None = None  # the one LISTEN connection of the process
    token_cache: TokenCache | None = None  # bearer tokens seen lately, evicted on revocation
    open_streams: OpenStreams | None = None  # live WebSockets and MCP streams, closed on revocation
    login_limiter: RateLimiter | None = None
    channel_limiter: RateLimiter | None = None
    smtp_port: int | None = None  # the SMTP listener's bound port (0 in the settings picks one)


@dataclass(eq=False)  # one per process, compared (and hashed) by identity
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    dsn: str  # plain asyncpg DSN for LISTEN and the job worker
    services: Services = field(default_factory=Services)
