"""The board: a column per status, filters and search; the live script refreshes it in place."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from osiris.app import checks, db
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
    async with db.transaction(runtime_of(request).sessions) as session:
        board = await queries.board(session, viewer.actor, filters)
        shown = [t.id for col in board.columns for t in col.tasks if t.artifact_count]
        card_checks = await checks.latest_status(session, shown)
    return render(
        request,
        "board.html",
        {
            "board": board,
            "filters": filters,
            "priorities": list(PRIORITIES),
            "priority_filter": priority or "",
            "card_checks": card_checks,
        },
    )
