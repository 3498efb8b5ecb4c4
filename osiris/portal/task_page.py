"""One task: what was asked, by whom, the live timeline, the thread, the work, and the decision.

Every action is a plain form POST answered with a redirect, so the page works without JavaScript;
each one calls the lifecycle, which refuses anyone whose role may not make the move.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from osiris.app import checks, db, lifecycle, repository
from osiris.app.errors import ChecksFailed, ChecksPending, InvalidInput
from osiris.app.models import OPEN_STATUSES, TaskStatus
from osiris.portal import highlight, queries
from osiris.portal.access import FormDep, ViewerDep, runtime_of, text_field
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
MAX_TEXT = 50_000  # the same bound the REST API puts on a message


def _text(form_value: str, what: str, *, required: bool) -> str:
    value = form_value.strip()
    if required and not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{what} is limited to {MAX_TEXT} characters")
    return value


@router.get("/portal/highlight.css")
async def highlight_css() -> Response:
    return Response(highlight.stylesheet(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/tasks/{task_id}")
async def task_page(
    request: Request,
    task_id: int,
    viewer: ViewerDep,
    v: int | None = None,
    from_version: Annotated[int | None, Query(alias="from")] = None,
    to_version: Annotated[int | None, Query(alias="to")] = None,
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        last_id = await queries.last_event_id(session, viewer.actor, task_id)  # before the data: see queries
        task = await repository.get_task(session, viewer.actor, task_id)
        artifacts = list(await repository.artifacts_of(session, task))
        messages = await repository.messages_of(session, task)
        timeline = await repository.events_of(session, task)
        people = await queries.people(session, viewer.actor)
        check_runs = await checks.latest_runs(session, task)  # newest version first
        try:
            await lifecycle.checks_hold(session, task)
            held = None
        except (ChecksPending, ChecksFailed) as exc:
            held = exc
    by_version = {a.version: a for a in artifacts}
    shown = by_version.get(v) if v is not None else (artifacts[-1] if artifacts else None)
    rendered = await asyncio.to_thread(highlight.render_artifact, shown) if shown else []
    # Compare the two newest versions unless asked for others.
    if from_version is None and to_version is None and len(artifacts) >= 2:
        from_version, to_version = artifacts[-2].version, artifacts[-1].version
    older, newer = by_version.get(from_version or 0), by_version.get(to_version or 0)
    compared = await asyncio.to_thread(highlight.render_diff, older, newer) if older and newer else None
    published = next((a for a in reversed(artifacts) if a.pr_url or a.pr_number), None)
    return render(
        request,
        "task.html",
        {
            "task": task,
            "artifacts": artifacts,
            "shown": shown,
            "rendered": rendered,
            "compared": compared,
            "from_version": from_version,
            "to_version": to_version,
            "published": published,
            "messages": messages,
            "timeline": timeline,
            "people": people,
            "last_event_id": last_id,
            "is_open": task.status in OPEN_STATUSES,
            "in_review": task.status == TaskStatus.REVIEW.value,
            "check_runs": check_runs,
            "checks_key": " ".join(f"{r.id}:{r.status}" for r in check_runs),
            "held": held,
        },
    )


@router.post("/tasks/{task_id}/messages")
async def post_message(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    body = _text(text_field(form, "body"), "the message", required=True)
    async with db.transaction(runtime_of(request).sessions) as session:
        await lifecycle.post_message(session, viewer.actor, task_id, body=body, source="portal")
    viewer.session.flash("ok", "Message sent to the agent.")
    return redirect(f"/tasks/{task_id}#thread")


@router.post("/tasks/{task_id}/approve")
async def approve(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    comment = _text(text_field(form, "comment"), "the comment", required=False) or None
    async with db.transaction(runtime_of(request).sessions) as session:
        await lifecycle.approve_task(session, viewer.actor, task_id, comment=comment)
    viewer.session.flash("ok", f"Task #{task_id} approved; it will be merged.")
    return redirect(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/request-changes")
async def request_changes(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    feedback = _text(text_field(form, "feedback"), "the feedback", required=True)
    runtime = runtime_of(request)
    async with db.transaction(runtime.sessions) as session:
        await lifecycle.request_changes(
            session,
            viewer.actor,
            task_id,
            feedback=feedback,
            lease_seconds=runtime.settings.lease_seconds,
            source="portal",
        )
    viewer.session.flash("ok", f"Changes requested; task #{task_id} is back with its agent.")
    return redirect(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/cancel")
async def cancel(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    reason = _text(text_field(form, "reason"), "the reason", required=False) or None
    async with db.transaction(runtime_of(request).sessions) as session:
        await lifecycle.cancel_task(session, viewer.actor, task_id, reason=reason)
    viewer.session.flash("ok", f"Task #{task_id} cancelled.")
    return redirect(f"/tasks/{task_id}")
