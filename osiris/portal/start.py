"""Starting from the portal: the New task form, and routing a task from its page (priority,
reservation for one agent, skills). Each calls the same service as its REST endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from osiris.app import db, lifecycle, repositories
from osiris.app.errors import InvalidInput
from osiris.app.schemas import PRIORITIES, PRIORITY_NAMES
from osiris.portal.access import FormDep, ViewerDep, runtime_of, text_field
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
MAX_TITLE = 300  # TaskCreate.title's bound
MAX_DESCRIPTION = 50_000


def _skills(value: str) -> list[str]:
    return [s for s in value.replace(",", " ").split() if s]


def _priority(value: str) -> int:
    if value not in PRIORITIES:
        raise InvalidInput("priority is low, normal, high or urgent")
    return PRIORITIES[value]


@router.get("/tasks/new")
async def new_task_form(request: Request, viewer: ViewerDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        repos = await repositories.list_repositories(session, viewer.actor)
    return render(
        request,
        "new_task.html",
        {
            "repos": repos,
            "priorities": list(PRIORITIES),
            "default_repo": runtime_of(request).settings.repos.default_repo,
        },
    )


@router.post("/tasks")
async def create_task(request: Request, viewer: ViewerDep, form: FormDep) -> Response:
    """The REST `POST /api/v1/tasks` from a form: the same repository rule, the same lifecycle."""
    title = text_field(form, "title").strip()
    description = text_field(form, "description").strip()
    if not 1 <= len(title) <= MAX_TITLE:
        raise InvalidInput(f"a task needs a title of 1-{MAX_TITLE} characters")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"the description is limited to {MAX_DESCRIPTION} characters")
    repo = text_field(form, "repo").strip() or None
    runtime = runtime_of(request)
    async with db.transaction(runtime.sessions) as session:
        task = await lifecycle.file_task(
            session,
            viewer.actor,
            runtime.settings,
            title=title,
            description=description,
            priority=_priority(text_field(form, "priority", default="normal")),
            repo=repo,
            skills=_skills(text_field(form, "skills")),
            channel="portal",
        )
    viewer.session.flash("ok", f"Task #{task.id} created in {task.repo}; agents can claim it now.")
    return redirect(f"/tasks/{task.id}")


@router.post("/tasks/{task_id}/priority")
async def set_priority(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    priority = _priority(text_field(form, "priority"))
    async with db.transaction(runtime_of(request).sessions) as session:
        await lifecycle.set_task_priority(session, viewer.actor, task_id, priority=priority)
    viewer.session.flash("ok", f"Task #{task_id} is now {PRIORITY_NAMES[priority]} priority.")
    return redirect(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/assignee")
async def reserve(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    """Reserve for one agent (only it may claim the task), or lift the reservation (empty)."""
    value = text_field(form, "agent_id").strip()
    if value and not (value.isdigit() and len(value) < 18):
        raise InvalidInput("choose an agent of this organization")
    async with db.transaction(runtime_of(request).sessions) as session:
        await lifecycle.reserve_task(session, viewer.actor, task_id, agent_id=int(value) if value else None)
    viewer.session.flash("ok", f"Task #{task_id} {'reserved' if value else 'open to any matching agent'}.")
    return redirect(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/skills")
async def set_skills(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        task = await lifecycle.set_task_skills(
            session, viewer.actor, task_id, skills=_skills(text_field(form, "skills"))
        )
    viewer.session.flash("ok", f"Task #{task_id} needs skills: {', '.join(task.skills) or 'none'}.")
    return redirect(f"/tasks/{task_id}")
