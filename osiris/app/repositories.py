"""Which organization owns a repository, and the one rule for naming a repository in a task.

Every edge that files a task (REST, chat channels, GitHub issues) asks `repository_for_task`; the
smart-HTTP git server asks `owner_of`. A repository's `name` is unique across the deployment (the
local git host keeps one bare repository per name), so naming another organization's repository is
refused exactly like naming one that does not exist: `unknown_repository`, nothing more. Names are
compared ignoring case (unique index on `lower(name)`): on a case-insensitive file system `App.git`
and `app.git` are one directory, so `App` is `app`, and a task gets the name as it was registered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import accounts, db
from osiris.app.actors import Actor
from osiris.app.errors import Conflict, InvalidInput, NotFound, UnknownRepository
from osiris.app.models import Repository, Task

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")  # TaskCreate.repo's pattern, the column's length
GITHUB_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")


def _check_name(name: str) -> str:
    name = name.strip()
    if not NAME.match(name) or ".." in name.split("/"):
        raise InvalidInput("a repository name is 1-100 letters, digits, '.', '_', '-' or '/'")
    return name


async def _insert(
    session: AsyncSession, *, org_id: int, name: str, github_repo: str | None
) -> Repository | None:
    """Register `name` unless it already is; PostgreSQL decides a race between two organizations."""
    values = {"org_id": org_id, "name": name, "github_repo": github_repo}
    return await db.insert_new(session, Repository, values, index_elements=[func.lower(Repository.name)])


async def repository_for_task(
    session: AsyncSession, *, org_id: int, name: str | None, default_repo: str, auto_register: bool
) -> str:
    """The repository a new task of `org_id` targets; raises UnknownRepository otherwise.

    Named: it must be this organization's; an unregistered name is registered to it when
    `auto_register` is on. Not named: the configured `default_repo` for the default organization
    (and for any organization that registered it); otherwise the organization's first registered one.
    """
    if name is None:
        name, owner = await _default(session, org_id=org_id, default_repo=default_repo)
    elif not NAME.match(name) or ".." in name.split("/"):
        raise UnknownRepository(f"no repository {name!r} in your organization")
    else:
        name, owner = await _registered(session, name)
    if owner is None and auto_register:
        if await _insert(session, org_id=org_id, name=name, github_repo=None) is not None:
            return name
        name, owner = await _registered(session, name)  # registered a moment ago by a concurrent task
    if owner != org_id:
        raise UnknownRepository(f"no repository {name!r} in your organization")
    return name


async def _registered(session: AsyncSession, name: str) -> tuple[str, int | None]:
    """The name as registered (whatever the case asked for) and its owner; `name` and None if free."""
    row = (
        await session.execute(
            select(Repository.name, Repository.org_id).where(func.lower(Repository.name) == func.lower(name))
        )
    ).one_or_none()
    return (row.name, row.org_id) if row is not None else (name, None)


async def _default(session: AsyncSession, *, org_id: int, default_repo: str) -> tuple[str, int | None]:
    """The repository (and its owner) a task that names none goes to."""
    owner = await owner_of(session, default_repo)
    if owner == org_id or (owner is None and org_id == (await accounts.default_org(session)).id):
        return default_repo, owner
    first = await session.scalar(
        select(Repository.name).where(Repository.org_id == org_id).order_by(Repository.id).limit(1)
    )
    if first is None:
        raise UnknownRepository("name a repository: your organization has none registered yet")
    return first, org_id


async def owner_of(session: AsyncSession, name: str) -> int | None:
    """The organization that registered `name`, in any case."""
    return (await _registered(session, name))[1]


async def name_for_github_repo(session: AsyncSession, *, org_id: int, full_name: str) -> str | None:
    """The organization's repository published to GitHub's `owner/name`, if it registered one."""
    return await session.scalar(
        select(Repository.name)
        .where(Repository.org_id == org_id, func.lower(Repository.github_repo) == full_name.lower())
        .order_by(Repository.id)
        .limit(1)
    )


async def org_for_github_repo(session: AsyncSession, full_name: str) -> int | None:
    return await session.scalar(
        select(Repository.org_id)
        .where(func.lower(Repository.github_repo) == full_name.lower())
        .order_by(Repository.id)
        .limit(1)
    )


# --- administration ------------------------------------------------------------------------------


async def list_repositories(session: AsyncSession, actor: Actor) -> Sequence[Repository]:
    stmt = select(Repository).where(Repository.org_id == actor.org_id).order_by(Repository.name)
    return (await session.execute(stmt)).scalars().all()


async def create_repository(
    session: AsyncSession, *, org_id: int, name: str, github_repo: str | None = None
) -> Repository:
    name = _check_name(name)
    github_repo = (github_repo or "").strip() or None
    if github_repo is not None:
        if not GITHUB_REPO.match(github_repo) or len(github_repo) > 200:
            raise InvalidInput("github_repo is 'owner/name'")
        taken = await org_for_github_repo(session, github_repo)
        if taken is not None and taken != org_id:
            # issues and webhooks of that GitHub repository must map to one organization
            raise Conflict(f"{github_repo} is registered by another organization")
    created = await _insert(session, org_id=org_id, name=name, github_repo=github_repo)
    if created is None:
        # Names are unique per deployment, ignoring case: say which name holds it.
        existing, _ = await _registered(session, name)
        if existing != name:
            raise Conflict(
                f"repository name {name!r} is taken: {existing!r} exists, and names that differ "
                "only in case are the same repository"
            )
        raise Conflict(f"repository name {name!r} is taken")
    return created


async def delete_repository(session: AsyncSession, actor: Actor, repository_id: int) -> Repository:
    """Unregister (the tasks and the local git data stay; the name is free to register again)."""
    repo = await session.scalar(
        select(Repository).where(Repository.id == repository_id, Repository.org_id == actor.org_id)
    )
    if repo is None:
        raise NotFound(f"repository {repository_id} not found")
    await session.execute(delete(Repository).where(Repository.id == repo.id))
    return repo


async def register_configured(session: AsyncSession, *, names: Iterable[str], github: dict[str, str]) -> None:
    """At start-up: the repositories named in settings belong to the default organization unless
    some organization registered them already (idempotent). The first start after upgrading also
    registers each repository existing tasks name, to the organization of its oldest task."""
    org = await accounts.default_org(session)
    first_start = await session.scalar(select(Repository.id).limit(1)) is None
    for name in dict.fromkeys([*names, *(k for k in github if k != "*")]):
        if NAME.match(name):
            await _insert(session, org_id=org.id, name=name, github_repo=github.get(name) or None)
    if first_start:
        await session.execute(
            pg_insert(Repository)
            .from_select(
                ["org_id", "name"],
                select(Task.org_id, Task.repo)
                .ext(distinct_on(Task.repo))
                .where(func.length(Task.repo) <= 100)
                .order_by(Task.repo, Task.id),
            )
            .on_conflict_do_nothing(index_elements=[func.lower(Repository.name)])
        )
