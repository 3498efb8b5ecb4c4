"""REST: users and API tokens of the caller's organization (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from osiris.app import accounts, routing
from osiris.app.auth import AdminDep, RuntimeDep, SessionDep
from osiris.app.errors import NotFound
from osiris.app.models import Role
from osiris.app.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    SkillsUpdate,
    UserCreate,
    UserRead,
)

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/users", response_model=list[UserRead])
async def list_users(actor: AdminDep, session: SessionDep) -> list[UserRead]:
    return [UserRead.model_validate(u) for u in await accounts.list_users(session, actor)]


@router.post("/users", status_code=201, response_model=UserRead)
async def create_user(body: UserCreate, actor: AdminDep, session: SessionDep) -> UserRead:
    user = await accounts.create_user(
        session,
        org_id=actor.org_id,
        username=body.username,
        role=Role(body.role),
        password=body.password,
        github_login=body.github_login,
    )
    if body.skills:
        user = await routing.set_user_skills(session, actor, user.id, skills=body.skills)
    return UserRead.model_validate(user)


@router.put("/users/{user_id}/skills", response_model=UserRead)
async def set_user_skills(user_id: int, body: SkillsUpdate, actor: AdminDep, session: SessionDep) -> UserRead:
    return UserRead.model_validate(await routing.set_user_skills(session, actor, user_id, skills=body.skills))


@router.get("/tokens", response_model=list[ApiTokenRead])
async def list_tokens(actor: AdminDep, session: SessionDep) -> list[ApiTokenRead]:
    return [ApiTokenRead.model_validate(t) for t in await accounts.list_tokens(session, actor)]


@router.post("/tokens", status_code=201, response_model=ApiTokenCreated)
async def create_token(body: ApiTokenCreate, actor: AdminDep, session: SessionDep) -> ApiTokenCreated:
    user = await accounts.find_user(session, body.username)
    if user is None or user.org_id != actor.org_id:
        raise NotFound(f"no user {body.username!r}")
    new = await accounts.create_token(session, user=user, name=body.name)
    return ApiTokenCreated(**ApiTokenRead.model_validate(new.token).model_dump(), token=new.secret)


@router.delete("/tokens/{token_id}", response_model=ApiTokenRead)
async def revoke_token(
    token_id: int, actor: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> ApiTokenRead:
    cache = runtime.services.get("token_cache")
    return ApiTokenRead.model_validate(await accounts.revoke_token(session, actor, token_id, cache=cache))
