"""Plugs the code-host bridge into the app: its routes, and the code host the jobs will use."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from osiris.app.config import Settings
from osiris.app.runtime import Runtime
from osiris.github_bridge import change_requests, git_http, github_events
from osiris.github_bridge.local_git import LocalGitHost


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
    """Part of the app's lifespan: the GitHub host's HTTP client is closed at shutdown."""
    try:
        yield
    finally:
        host = runtime.services.code_host
        if hasattr(host, "aclose"):
            await host.aclose()  # the GitHub host's HTTP client


def install(app: FastAPI, settings: Settings) -> None:
    app.include_router(change_requests.router)
    # The webhook route is always there: unconfigured, it refuses every delivery (no secret).
    app.include_router(github_events.router)  # importing it also registers the github_event job
    if settings.local.git_http_enabled:
        app.include_router(git_http.router)


async def services(runtime: Runtime) -> None:
    if runtime.settings.github.enabled:
        from osiris.github_bridge.github_host import install_github_host

        install_github_host(runtime)
        return
    host = LocalGitHost(runtime.settings)
    await host.start()  # creates the configured bare repositories on first start
    runtime.services.code_host = host
