"""What one OSIRIS process holds while it runs: settings, engine, sessions, background services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from osiris.app.config import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    dsn: str  # plain asyncpg DSN for LISTEN and the job worker
    services: dict[str, Any] = field(default_factory=dict)  # code host, notifiers, hub …
