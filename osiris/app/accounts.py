"""Organizations, users and API tokens."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import security
from osiris.app.actors import Actor
from osiris.app.errors import Conflict, InvalidInput, NotFound
from osiris.app.models import ApiToken, Organization, Role, User

DEFAULT_ORG_SLUG = "default"


async def default_org(session: AsyncSession) -> Organization:
    """The embedded default's single organization, created on first use."""
    org = await session.scalar(select(Organization).where(Organization.slug == DEFAULT_ORG_SLUG))
    if org is None:
        org = Organization(slug=DEFAULT_ORG_SLUG, name="Default organization")
        session.add(org)
        await session.flush()
    return org


async def create_user(
    session: AsyncSession,
    *,
    org_id: int,
    username: str,
    role: Role,
    password: str | None = None,
    github_login: str | None = None,
    is_superuser: bool = False,
) -> User:
    username = username.strip()
    if is_superuser and role is not Role.ADMIN:
        raise InvalidInput("a superuser must be an admin")
    if not username or len(username) > 100:
        raise InvalidInput("username must be 1-100 characters")
    if role is not Role.AGENT and password is not None and len(password) < 8:
        raise InvalidInput("password must be at least 8 characters")
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} exists")
    user = User(
        org_id=org_id,
        username=username,
        role=role.value,
        github_login=github_login,
        password_hash=security.hash_password(password) if password else None,
        is_superuser=is_superuser,
    )
    session.add(user)
    await session.flush()
    return user


async def find_user(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def authenticate_password(session: AsyncSession, username: str, password: str) -> User | None:
    user = await find_user(session, username)
    ok = security.verify_password(password, user.password_hash if user else None)
    if not ok or user is None or not user.is_active or user.role == Role.AGENT.value:
        return None
    return user


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # the only time the plaintext exists


async def create_token(session: AsyncSession, *, user: User, name: str) -> NewToken:
    secret = security.new_api_token()
    token = ApiToken(
        org_id=user.org_id,
        user_id=user.id,
        name=name,
        token_hash=security.hash_token(secret),
        display_prefix=secret[:10],
        scopes=[],
    )
    session.add(token)
    await session.flush()
    return NewToken(token, secret)


async def list_tokens(session: AsyncSession, actor: Actor) -> Sequence[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.org_id == actor.org_id).order_by(ApiToken.id)
    return (await session.execute(stmt)).scalars().all()


async def revoke_token(
    session: AsyncSession, actor: Actor, token_id: int, *, cache: Any | None = None
) -> ApiToken:
    """Revoke a token of the actor's organization.

    `cache` (this process's TokenCache) is evicted at once, so the caller's next request already
    fails; other replicas evict when the NOTIFY below arrives after commit.
    """
    token = await session.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.org_id == actor.org_id)
    )
    if token is None:
        raise NotFound(f"token {token_id} not found")
    await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    # every replica drops its cached copy of this token when we commit
    await session.execute(select(func.pg_notify(security.TOKENS_CHANNEL, token.token_hash)))
    if cache is not None:
        cache.evict(token.token_hash)
    await session.refresh(token)
    return token


async def list_users(session: AsyncSession, actor: Actor) -> Sequence[User]:
    stmt = select(User).where(User.org_id == actor.org_id).order_by(User.id)
    return (await session.execute(stmt)).scalars().all()


async def bootstrap_admin(session: AsyncSession, *, password: str | None) -> str | None:
    """On an empty database create `admin`, the operator (a superuser); return the generated
    password to print once, if any. A deployment from before superusers existed gets its oldest
    admin of the default organization promoted, so someone can manage organizations."""
    org = await default_org(session)
    first_admin = await session.scalar(
        select(User).where(User.org_id == org.id, User.role == Role.ADMIN.value).order_by(User.id).limit(1)
    )
    if first_admin is not None:
        if await session.scalar(select(User.id).where(User.is_superuser.is_(True)).limit(1)) is None:
            first_admin.is_superuser = True
            await session.flush()
        return None
    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(12)
    await create_user(
        session, org_id=org.id, username="admin", role=Role.ADMIN, password=password, is_superuser=True
    )
    return generated


async def set_github_login(
    session: AsyncSession, actor: Actor, user_id: int, github_login: str | None
) -> User:
    """Map a user of the actor's organization to a GitHub login (None or blank clears it).

    One login maps to one user per organization, so a review on GitHub is attributed unambiguously.
    """
    login = (github_login or "").strip().lstrip("@") or None
    if login is not None and len(login) > 100:
        raise InvalidInput("a GitHub login has at most 100 characters")
    user = await session.scalar(select(User).where(User.id == user_id, User.org_id == actor.org_id))
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if login is not None:
        taken = await session.scalar(
            select(User.username).where(
                User.org_id == actor.org_id,
                func.lower(User.github_login) == login.lower(),
                User.id != user.id,
            )
        )
        if taken is not None:
            raise Conflict(f"GitHub login {login!r} is already mapped to {taken!r}")
    user.github_login = login
    await session.flush()
    return user
