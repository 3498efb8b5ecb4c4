"""What a GitHub event handler may use, passed explicitly (handlers never read the environment).

Its own module because two edges answer GitHub events: the bridge (pull requests, reviews, CI) and
ingest's GitHub issues channel. Both import this; neither imports the other's handlers, and the
composition root (osiris.server) combines their routers into one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app.config import Settings
from osiris.github_bridge.github_host import GitHubHost


@dataclass
class Deps:
    session: AsyncSession
    settings: Settings
    host: GitHubHost
