"""Code-host fixtures: the GitHub fake wired to the app (`github`), the local git host (`host`,
`repo_name`), and the session's app behind a real uvicorn for git's smart HTTP (`git_server`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn

from bench._server import free_port
from tests.support.github_harness import github  # noqa: F401 - a fixture
from tests.support.local_git import host, repo_name  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
async def git_server(app) -> AsyncIterator[str]:
    """The session's app behind a real uvicorn on a free loopback port (its lifespan already ran)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(200):
        if srv.started:
            break
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    await asyncio.wait_for(task, 10)
