"""Plugs the portal into create_app(): pages, admin, WebSockets and the static files."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from osiris.app.config import Settings
from osiris.portal import admin, board, live, login, organizations, start, task_page, webhook_subscriptions
from osiris.portal.rendering import HERE


def install(app: FastAPI, settings: Settings) -> None:
    # start first: its /tasks/new must win over task_page's /tasks/{task_id}
    for router in (
        login.router,
        board.router,
        start.router,
        task_page.router,
        admin.router,
        webhook_subscriptions.router,
        live.router,
    ):
        app.include_router(router)
    app.include_router(organizations.router)  # repositories, channel accounts, organizations
    app.mount("/static/portal", StaticFiles(directory=HERE / "static"), name="portal-static")
