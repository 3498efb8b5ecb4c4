"""Fixtures for the GitHub tests: the fake, a GitHubHost pointed at it, and the app wired to both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fake_github import BOT, FakeGitHub
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode
from pydantic import SecretStr

from osiris.app import jobs
from osiris.app.models import Role, User
from osiris.github_bridge import webhooks
from osiris.github_bridge.github_client import GitHub
from osiris.github_bridge.github_host import GitHubHost

SECRET = "whsec-for-tests"
REPO = "acme/widgets"
BASE_FILES = {
    "README.md": "# widgets\n",
    "src/app.py": "def greet(name):\n    return 'hello ' + name\n\n\ndef main():\n    print(greet('world'))\n",
    "src/util.py": "X = 1\n",
}


@dataclass
class GitHubEnv:
    fake: FakeGitHub
    host: GitHubHost
    runtime: Any
    client: httpx.AsyncClient  # OSIRIS's own API

    async def drain(self, seconds: float = 60.0) -> None:
        """Run queued jobs, retries included, until none is left.

        Like `jobs.drain`, but polling every half second: in drain mode pgqueuer otherwise waits its
        whole dequeue timeout (30 s) before it picks up a job that asked to be retried.
        """
        ctx = jobs.JobContext(self.runtime.sessions, self.runtime.settings, self.runtime.services)
        conn = await asyncpg.connect(self.runtime.dsn)
        try:
            qm = QueueManager(Queries(AsyncpgDriver(conn)))
            worker = jobs.Worker(self.runtime.dsn, ctx)
            for name, handler in jobs.HANDLERS.items():
                qm.entrypoint(name)(worker._wrap(name, handler))
            run = qm.run(mode=QueueExecutionMode.drain, batch_size=5, dequeue_timeout=timedelta(seconds=0.5))
            await asyncio.wait_for(run, seconds)
        finally:
            await conn.close()

    async def deliver(self) -> list[httpx.Response]:
        return await self.fake.deliver(self.client)

    def pr(self, number: int = 1):
        return self.fake.pulls[(REPO, number)]

    @property
    def osiris_calls(self) -> int:
        return sum(self.fake.calls_by[BOT].values())


def _ensure_route(app) -> None:
    if not any(getattr(r, "path", None) == "/api/v1/webhooks/github" for r in app.routes):
        app.include_router(webhooks.router)


@pytest.fixture
async def github(app, runtime, client, tmp_path: Path, monkeypatch) -> AsyncIterator[GitHubEnv]:
    fake = FakeGitHub(tmp_path, secret=SECRET)
    fake.create_repo(REPO, BASE_FILES)
    s = runtime.settings
    for name, value in {
        "github_webhook_secret": SecretStr(SECRET),
        "github_token": SecretStr("osiris-token"),
        "github_api_url": "https://api.github.test",
        "github_repo": {s.default_repo: REPO},
        "github_retry_seconds": 1.0,
        "public_url": "https://osiris.test",
    }.items():
        monkeypatch.setattr(s, name, value)
    http = httpx.AsyncClient(transport=fake.transport(), timeout=5)
    host = GitHubHost(s, runtime.sessions, gh=GitHub(s, client=http))
    monkeypatch.setattr(runtime.services, "code_host", host)
    _ensure_route(app)
    yield GitHubEnv(fake, host, runtime, client)
    await http.aclose()
    assert fake.violations == [], "\n".join(fake.violations[:20])


async def reviewer_with_login(factory, login: str, role: Role = Role.REVIEWER) -> User:
    return await factory.user(role, github_login=login)
