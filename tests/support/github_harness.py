"""The GitHub tests' harness: the `github` fixture (the fake, a GitHubHost pointed at it, and the app
wired to both; a folder's conftest imports it), and the steps of a task's life on it over REST."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from osiris.app.models import Role, User
from osiris.github_bridge import github_events
from osiris.github_bridge.github_client import GitHub
from osiris.github_bridge.github_host import GitHubHost
from tests.support.fake_github import BOT, FakeGitHub, hook_headers
from tests.support.jobs import drain_kinds
from tests.support.rest import claimed_task, submitted, task_view

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
        """Run queued jobs, retries included, until none is left (`drain_kinds`)."""
        await drain_kinds(self.runtime, seconds=seconds)

    async def deliver(self) -> list[httpx.Response]:
        return await self.fake.deliver(self.client)

    def pr(self, number: int = 1):
        return self.fake.pulls[(REPO, number)]

    @property
    def osiris_calls(self) -> int:
        return sum(self.fake.calls_by[BOT].values())


def ensure_webhook_route(app) -> None:
    """The GitHub webhook route on `app`, when its settings had no GitHub at start-up."""
    if not any(getattr(r, "path", None) == "/api/v1/webhooks/github" for r in app.routes):
        app.include_router(github_events.router)


@pytest.fixture
async def github(app, runtime, client, tmp_path: Path, monkeypatch) -> AsyncIterator[GitHubEnv]:
    fake = FakeGitHub(tmp_path, secret=SECRET)
    fake.create_repo(REPO, BASE_FILES)
    s = runtime.settings
    for name, value in {
        "webhook_secret": SecretStr(SECRET),
        "token": SecretStr("osiris-token"),
        "api_url": "https://api.github.test",
        "repo": {s.repos.default_repo: REPO},
        "retry_seconds": 1.0,
    }.items():
        monkeypatch.setattr(s.github, name, value)
    monkeypatch.setattr(s.server, "public_url", "https://osiris.test")
    http = httpx.AsyncClient(transport=fake.transport(), timeout=5)
    host = GitHubHost(s, runtime.sessions, gh=GitHub(s, client=http))
    monkeypatch.setattr(runtime.services, "code_host", host)
    ensure_webhook_route(app)
    yield GitHubEnv(fake, host, runtime, client)
    await http.aclose()
    assert fake.violations == [], "\n".join(fake.violations[:20])


async def post_webhook(
    env: GitHubEnv, event: str, payload: dict, delivery: str | None = None
) -> httpx.Response:
    """A webhook as GitHub signs it with the harness's secret, posted to OSIRIS's webhook route."""
    body = json.dumps(payload).encode()
    return await env.client.post(
        "/api/v1/webhooks/github", content=body, headers=hook_headers(SECRET, event, body, delivery)
    )


async def reviewer_with_login(factory, login: str, role: Role = Role.REVIEWER) -> User:
    return await factory.user(role, github_login=login)


# --- a task's life on GitHub, over OSIRIS's REST API ------------------------------------------------

PATCH_V1 = """diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,5 +1,5 @@
 def greet(name):
-    return 'hello ' + name
+    return f'hello {name}'
 
 
 def main():
"""

PATCH_V2 = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,2 +1,2 @@
 def greet(name):
-    return f'hello {name}'
+    return f'Hello, {name}!'
diff --git a/src/new.py b/src/new.py
new file mode 100644
--- /dev/null
+++ b/src/new.py
@@ -0,0 +1 @@
+NEW = True
"""


async def github_people(factory) -> tuple[dict, dict, User]:
    """An admin's and an agent's Authorization headers, and a reviewer whose GitHub login is alice."""
    _, admin_h = await factory.member(Role.ADMIN)
    _, agent_h = await factory.member(Role.AGENT)
    alice = await factory.user(Role.REVIEWER, github_login="alice")
    return admin_h, agent_h, alice


async def claim_new_task(env: GitHubEnv, admin_h, agent_h) -> int:
    """A task the admin files (a friendlier greeting, in the default repository) and the agent claims."""
    return await claimed_task(
        env.client, agent_h, creator_h=admin_h, title="Friendlier greeting", description="say hello nicely"
    )


async def submit_version(env: GitHubEnv, task_id: int, agent_h, content, summary: str) -> dict:
    return await submitted(env.client, agent_h, task_id, content, summary=summary)


async def read_task(env: GitHubEnv, task_id: int, headers) -> dict:
    return await task_view(env.client, headers, task_id)


async def published_task(env: GitHubEnv, factory) -> tuple[int, dict, dict]:
    """A claimed task whose version 1 (PATCH_V1) is a draft PR, and alice's GitHub token ("alice-token");
    returns the task id and the admin's and the agent's headers."""
    admin_h, agent_h, _ = await github_people(factory)
    env.fake.tokens["alice-token"] = "alice"
    task_id = await claim_new_task(env, admin_h, agent_h)
    await submit_version(env, task_id, agent_h, PATCH_V1, "v1")
    await env.drain()
    return task_id, admin_h, agent_h
