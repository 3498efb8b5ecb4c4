"""REST: routing a task (its skills, a reservation for one agent) and its pre-review checks."""

from __future__ import annotations

from fastapi import APIRouter

from osiris.app import check_runs, lifecycle, task_queries
from osiris.app.api.tasks import task_read
from osiris.app.auth import ActorDep, SessionDep
from osiris.app.schemas import (
    PRIORITIES,
    CheckRunRead,
    PriorityUpdate,
    ReservationUpdate,
    SkillsUpdate,
    TaskRead,
)

router = APIRouter(prefix="/api/v1/tasks", tags=["routing and checks"])


@router.put("/{task_id}/skills", response_model=TaskRead)
async def set_skills(task_id: int, body: SkillsUpdate, actor: ActorDep, session: SessionDep) -> TaskRead:
    """Reviewers and admins: the skills an agent needs to claim this task ([] = open to all)."""
    return task_read(await lifecycle.set_task_skills(session, actor, task_id, skills=body.skills))


@router.put("/{task_id}/assignee", response_model=TaskRead)
async def reserve(task_id: int, body: ReservationUpdate, actor: ActorDep, session: SessionDep) -> TaskRead:
    """Reviewers and admins: only this agent may claim the task (null: anyone whose skills match)."""
    return task_read(await lifecycle.reserve_task(session, actor, task_id, agent_id=body.agent_id))


@router.put("/{task_id}/priority", response_model=TaskRead)
async def set_priority(task_id: int, body: PriorityUpdate, actor: ActorDep, session: SessionDep) -> TaskRead:
    """Reviewers and admins: low, normal, high or urgent (the queue's order)."""
    priority = PRIORITIES[body.priority]
    return task_read(await lifecycle.set_task_priority(session, actor, task_id, priority=priority))


@router.get("/{task_id}/checks", response_model=list[CheckRunRead])
async def list_checks(task_id: int, actor: ActorDep, session: SessionDep) -> list[CheckRunRead]:
    """The pre-review check runs of the task's versions, newest first."""
    task = await task_queries.get_task(session, actor, task_id)
    return [CheckRunRead.model_validate(r) for r in await check_runs.latest_runs(session, task)]
