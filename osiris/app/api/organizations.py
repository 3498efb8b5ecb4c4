"""REST: organizations and channel accounts (the operator, a superuser), repositories (each organization).

A superuser acts in another organization only through these endpoints; every other route keeps
them inside their own organization, like any admin.
"""

from __future__ import annotations

from fastapi import APIRouter

from osiris.app import accounts, organizations, repositories, routing
from osiris.app.auth import ActorDep, AdminDep, SessionDep, SuperuserDep
from osiris.app.models import Role
from osiris.app.schemas import (
    ChannelAccountCreate,
    ChannelAccountRead,
    ChannelAccountSettingsUpdate,
    OrganizationCreate,
    OrganizationRead,
    RepositoryCreate,
    RepositoryRead,
    UserCreate,
    UserRead,
)

router = APIRouter(prefix="/api/v1", tags=["organizations"])


@router.get("/organizations", response_model=list[OrganizationRead])
async def list_organizations(actor: SuperuserDep, session: SessionDep) -> list[OrganizationRead]:
    return [OrganizationRead.model_validate(o) for o in await organizations.list_organizations(session)]


@router.post("/organizations", status_code=201, response_model=OrganizationRead)
async def create_organization(
    body: OrganizationCreate, actor: SuperuserDep, session: SessionDep
) -> OrganizationRead:
    org = await organizations.create_organization(session, slug=body.slug, name=body.name)
    return OrganizationRead.model_validate(org)


@router.post("/organizations/{slug}/users", status_code=201, response_model=UserRead)
async def create_organization_user(
    slug: str, body: UserCreate, actor: SuperuserDep, session: SessionDep
) -> UserRead:
    """A user of any organization, typically its first admin, who then manages the rest."""
    org = await organizations.organization_by_slug(session, slug)
    user = await accounts.create_user(
        session,
        org_id=org.id,
        username=body.username,
        role=Role(body.role),
        password=body.password,
        github_login=body.github_login,
    )
    if body.skills:
        user.skills = routing.normalize_skills(body.skills)
        await session.flush()
    return UserRead.model_validate(user)


# --- repositories --------------------------------------------------------------------------------


@router.get("/repositories", response_model=list[RepositoryRead])
async def list_repositories(actor: ActorDep, session: SessionDep) -> list[RepositoryRead]:
    return [RepositoryRead.model_validate(r) for r in await repositories.list_repositories(session, actor)]


@router.post("/repositories", status_code=201, response_model=RepositoryRead)
async def create_repository(body: RepositoryCreate, actor: AdminDep, session: SessionDep) -> RepositoryRead:
    repo = await repositories.create_repository(
        session, org_id=actor.org_id, name=body.name, github_repo=body.github_repo
    )
    return RepositoryRead.model_validate(repo)


@router.delete("/repositories/{repository_id}", response_model=RepositoryRead)
async def delete_repository(repository_id: int, actor: AdminDep, session: SessionDep) -> RepositoryRead:
    return RepositoryRead.model_validate(await repositories.delete_repository(session, actor, repository_id))


# --- channel accounts ----------------------------------------------------------------------------


@router.get("/channel-accounts", response_model=list[ChannelAccountRead])
async def list_channel_accounts(actor: AdminDep, session: SessionDep) -> list[ChannelAccountRead]:
    """The operator sees every organization's; an admin their own organization's."""
    rows = await organizations.list_channel_accounts(
        session, org_id=None if actor.superuser else actor.org_id
    )
    return [ChannelAccountRead.model_validate(r) for r in rows]


@router.post("/channel-accounts", status_code=201, response_model=ChannelAccountRead)
async def add_channel_account(
    body: ChannelAccountCreate, actor: SuperuserDep, session: SessionDep
) -> ChannelAccountRead:
    org = await organizations.organization_by_slug(session, body.organization)
    row = await organizations.add_channel_account(
        session, org_id=org.id, channel=body.channel, account=body.account
    )
    return ChannelAccountRead.model_validate(row)


@router.patch("/channel-accounts/{account_id}", response_model=ChannelAccountRead)
async def update_channel_account(
    account_id: int, body: ChannelAccountSettingsUpdate, actor: AdminDep, session: SessionDep
) -> ChannelAccountRead:
    """An account's own settings: the operator's for any account, an admin's for their organization's."""
    row = await organizations.update_channel_account_settings(session, actor, account_id, body.settings)
    return ChannelAccountRead.model_validate(row)


@router.delete("/channel-accounts/{account_id}", response_model=ChannelAccountRead)
async def remove_channel_account(
    account_id: int, actor: SuperuserDep, session: SessionDep
) -> ChannelAccountRead:
    return ChannelAccountRead.model_validate(await organizations.remove_channel_account(session, account_id))
