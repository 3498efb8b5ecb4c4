"""REST: users and API tokens of the caller's organization (admins only)."""

from __future__ import annotations

from fastapi import APIRouter

from osiris.app import accounts
from osiris.app.auth import AdminDep, RuntimeDep, SessionDep
from osiris.app.errors import NotFound
from osiris.app.models import Role
from osiris.app.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    PasswordReset,
    PasswordResetDone,
    SkillsUpdate,
    UserCreate,
    UserRead,
    UserUpdate,
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
        user = await accounts.set_user_skills(session, actor, user.id, skills=body.skills)
    return UserRead.model_validate(user)


@router.put("/users/{user_id}/skills", response_model=UserRead)
async def set_user_skills(user_id: int, body: SkillsUpdate, actor: AdminDep, session: SessionDep) -> UserRead:
    return UserRead.model_validate(
        await accounts.set_user_skills(session, actor, user_id, skills=body.skills)
    )


@router.patch("/users/{user_id}", response_model=UserRead)
async def update_user(
    user_id: int, body: UserUpdate, actor: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> UserRead:
    """Change a user's role, or deactivate (revokes their tokens, closes their live connections) or
    reactivate them. The organization's last active admin cannot be demoted or deactivated (409)."""
    user = await accounts.update_user(
        session,
        actor,
        user_id,
        role=Role(body.role) if body.role else None,
        is_active=body.is_active,
        cache=runtime.services.token_cache,
    )
    return UserRead.model_validate(user)


@router.post("/users/{user_id}/password", response_model=PasswordResetDone)
async def reset_password(
    user_id: int, body: PasswordReset, actor: AdminDep, session: SessionDep
) -> PasswordResetDone:
    """Set a person's password, or have one generated (returned once). Signs out their browsers."""
    user, generated = await accounts.reset_password(session, actor, user_id, password=body.password)
    return PasswordResetDone(user=UserRead.model_validate(user), password=generated)


@router.get("/tokens", response_model=list[ApiTokenRead])
async def list_tokens(actor: AdminDep, session: SessionDep) -> list[ApiTokenRead]:
    return [ApiTokenRead.model_validate(t) for t in await accounts.list_tokens(session, actor)]


@router.post("/tokens", status_code=201, response_model=ApiTokenCreated)
async def create_token(body: ApiTokenCreate, actor: AdminDep, session: SessionDep) -> ApiTokenCreated:
    user = await accounts.find_user(session, body.username)
    if user is None or user.org_id != actor.org_id:
        raise NotFound(f"no user {body.username!r}")
    expires_at = accounts.token_expiry(expires_in_days=body.expires_in_days, expires_at=body.expires_at)
    new = await accounts.create_token(session, user=user, name=body.name, expires_at=expires_at)
    return ApiTokenCreated(**ApiTokenRead.model_validate(new.token).model_dump(), token=new.secret)


@router.delete("/tokens/{token_id}", response_model=ApiTokenRead)
async def revoke_token(
    token_id: int, actor: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> ApiTokenRead:
    cache = runtime.services.token_cache
    return ApiTokenRead.model_validate(await accounts.revoke_token(session, actor, token_id, cache=cache))
