"""The board: a column per status, filters and search; the live script refreshes it in place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from osiris.app import check_runs, db
from osiris.app.schemas import PRIORITIES
from osiris.portal import queries
from osiris.portal.access import ViewerDep, runtime_of
from osiris.portal.rendering import PortalRoute, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 18 else None


@router.get("/")
async def board_page(
    request: Request,
    viewer: ViewerDep,
    repo: str | None = None,
    assignee: str | None = None,
    priority: str | None = None,
    channel: str | None = None,
    q: str | None = None,
) -> Response:
    filters = queries.BoardFilters(
        repo=repo or None,
        assignee_id=_int_or_none(assignee),
        priority=PRIORITIES.get(priority or ""),
        channel=channel or None,
        q=(q or "").strip()[:200] or None,
    )
    days = runtime_of(request).settings.portal.board_closed_days
    async with db.transaction(runtime_of(request).sessions) as session:
        board = await queries.board(session, viewer.actor, filters, closed_since=_window_start(days))
        cards = [t for col in board.columns for t in col.tasks]
        card_checks = await check_runs.latest_status(session, [t.id for t in cards if t.artifact_count])
        facts = await queries.card_facts(session, viewer.actor, cards)
    return render(
        request,
        "board.html",
        {
            "board": board,
            "filters": filters,
            "priorities": list(PRIORITIES),
            "priority_filter": priority or "",
            "card_checks": card_checks,
            "facts": facts,
            "closed_days": days,
            # Nothing at all yet: the board teaches how to file a task and connect an agent.
            "empty": not filters.active and all(c.count == 0 and not c.older for c in board.columns),
            "public_url": runtime_of(request).settings.server.public_url.rstrip("/"),
        },
    )


def _window_start(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


@router.get("/archive")
async def archive_page(
    request: Request, viewer: ViewerDep, page: Annotated[int, Query(ge=1, le=10**6)] = 1
) -> Response:
    """Closed tasks older than the board's window, most recently closed first."""
    days = runtime_of(request).settings.portal.board_closed_days
    async with db.transaction(runtime_of(request).sessions) as session:
        tasks, total = await queries.archive(
            session, viewer.actor, closed_before=_window_start(days), page=page
        )
        facts = await queries.card_facts(session, viewer.actor, tasks)
        people = await queries.people(session, viewer.actor)
    pages = max(1, -(-total // queries.ARCHIVE_PAGE))
    return render(
        request,
        "archive.html",
        {
            "tasks": tasks,
            "facts": facts,
            "people": people,
            "total": total,
            "page": page,
            "pages": pages,
            "closed_days": days,
        },
    )
