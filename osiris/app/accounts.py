"""Organizations, users and API tokens."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import oauth, routing, security, streams
from osiris.app.actors import Actor
from osiris.app.errors import Conflict, Forbidden, InvalidInput, NotFound
from osiris.app.models import ApiToken, Organization, Role, User
from osiris.app.schemas import valid_username

DEFAULT_ORG_SLUG = "default"


async def default_org(session: AsyncSession) -> Organization:
    """The embedded default's single organization, created on first use."""
    org = await session.scalar(select(Organization).where(Organization.slug == DEFAULT_ORG_SLUG))
    if org is None:
        org = Organization(slug=DEFAULT_ORG_SLUG, name="Default organization")
        session.add(org)
        await session.flush()
    return org


GITHUB_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?", re.ASCII)  # an App: name[bot]


def valid_github_login(login: str | None) -> str | None:
    login = (login or "").strip().lstrip("@")  # "@name", as people write it, is the same login
    if not login:
        return None
    if not GITHUB_LOGIN.fullmatch(login):
        raise InvalidInput(
            "a GitHub login is 1-39 letters, digits and hyphens, starting with a letter or digit"
        )
    return login


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
    if is_superuser and role is not Role.ADMIN:
        raise InvalidInput("a superuser must be an admin")
    username = valid_username(username)  # the one rule, as written: " alice" is not "alice"
    github_login = valid_github_login(github_login)
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


MAX_TOKEN_DAYS = 3650


def token_expiry(
    *, expires_in_days: int | None = None, expires_at: datetime | None = None
) -> datetime | None:
    """When a new token stops working: in so many days, at a given time, or never (None)."""
    if expires_in_days is not None and expires_at is not None:
        raise InvalidInput("give expires_in_days or expires_at, not both")
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"expires_in_days is 1-{MAX_TOKEN_DAYS}")
        return datetime.now(UTC) + timedelta(days=expires_in_days)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("expires_at needs a time zone, e.g. 2027-01-31T00:00:00Z")
        if expires_at <= datetime.now(UTC):
            raise InvalidInput("expires_at is in the past")
    return expires_at


async def create_token(
    session: AsyncSession, *, user: User, name: str, expires_at: datetime | None = None
) -> NewToken:
    if not user.is_active:
        raise InvalidInput(f"{user.username} is deactivated: reactivate them before giving them a token")
    secret = security.new_api_token()
    token = ApiToken(
        org_id=user.org_id,
        user_id=user.id,
        name=name,
        token_hash=security.hash_token(secret),
        display_prefix=secret[:10],
        scopes=[],
        expires_at=expires_at,
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


async def set_password(session: AsyncSession, *, username: str, password: str) -> User:
    """A person's new password (the operator's CLI). Agents sign in with tokens, never a password."""
    user = await find_user(session, username)
    if user is None:
        raise NotFound(f"user {username!r} not found")
    if user.role == Role.AGENT.value:
        raise InvalidInput("agents have no password: give them a token (`osiris token create`)")
    if len(password) < 8:
        raise InvalidInput("password must be at least 8 characters")
    user.password_hash = security.hash_password(password)
    await session.flush()
    return user


async def all_users(session: AsyncSession) -> Sequence[tuple[User, str]]:
    """Every user with their organization's slug, for the operator's CLI."""
    stmt = (
        select(User, Organization.slug).join(Organization, Organization.id == User.org_id).order_by(User.id)
    )
    return [(u, slug) for u, slug in (await session.execute(stmt)).all()]


async def all_tokens(session: AsyncSession, *, username: str | None = None) -> Sequence[tuple[ApiToken, str]]:
    """Every token (or one user's) with its user's name, for the operator's CLI."""
    stmt = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
    if username is not None:
        stmt = stmt.where(User.username == username)
    return [(t, name) for t, name in (await session.execute(stmt)).all()]


async def token_org(session: AsyncSession, token_id: int) -> int:
    """The organization a token belongs to: the CLI revokes it as that organization's system."""
    org_id = await session.scalar(select(ApiToken.org_id).where(ApiToken.id == token_id))
    if org_id is None:
        raise NotFound(f"token {token_id} not found")
    return org_id


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
    login = valid_github_login(github_login)
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


# --- administration of an organization's users ------------------------------------------------------


def _require_admin(actor: Actor) -> None:
    if actor.role is not Role.ADMIN:
        raise Forbidden("only an admin manages users")


async def _member(session: AsyncSession, actor: Actor, user_id: int) -> User:
    """A user of the actor's organization, row-locked; another organization's is not found."""
    user = await session.scalar(
        select(User).where(User.id == user_id, User.org_id == actor.org_id).with_for_update()
    )
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def _end_credentials(
    session: AsyncSession, user: User, *, revoke_tokens: bool, cache: Any | None
) -> None:
    """Close every live stream of the user on every replica once the caller commits; with
    `revoke_tokens`, their API tokens stop working too. Cached copies of their tokens (which carry
    the role) are evicted either way, so a changed role applies at the next request."""
    rows = (
        await session.execute(
            select(ApiToken.id, ApiToken.token_hash).where(
                ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)
            )
        )
    ).all()
    if revoke_tokens and rows:
        await session.execute(
            update(ApiToken).where(ApiToken.id.in_([r.id for r in rows])).values(revoked_at=func.now())
        )
    for row in rows:
        await session.execute(select(func.pg_notify(security.TOKENS_CHANNEL, row.token_hash)))
        if cache is not None:
            cache.evict(row.token_hash)
    # OAuth access tokens too (their lookup also requires an active agent, so a role change ends them)
    await oauth.end_user_tokens(session, user.id, revoke=revoke_tokens, cache=cache)
    await streams.announce_revoked(session, streams.user_key(user.id))


async def _other_active_admins(session: AsyncSession, user: User) -> int:
    # The organization's admin rows are locked so two admins demoting each other cannot both pass.
    ids = (
        await session.execute(
            select(User.id)
            .where(
                User.org_id == user.org_id,
                User.role == Role.ADMIN.value,
                User.is_active.is_(True),
                User.id != user.id,
            )
            .with_for_update()
        )
    ).all()
    return len(ids)


async def update_user(
    session: AsyncSession,
    actor: Actor,
    user_id: int,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
    cache: Any | None = None,
) -> User:
    """Change a user's role or (de)activate them. Deactivating revokes their tokens and closes their
    live connections; the organization always keeps one active admin (409 otherwise)."""
    _require_admin(actor)
    user = await _member(session, actor, user_id)
    losing_admin = (
        user.role == Role.ADMIN.value
        and user.is_active
        and ((role is not None and role is not Role.ADMIN) or is_active is False)
    )
    if losing_admin and await _other_active_admins(session, user) == 0:
        who = "yourself" if user.id == actor.user_id else user.username
        raise Conflict(
            f"cannot demote or deactivate {who}: the organization's last active admin; "
            "make another user an admin first"
        )
    if user.is_superuser and ((role is not None and role is not Role.ADMIN) or is_active is False):
        raise Conflict("the operator (a superuser) stays an active admin")
    if role is not None and role.value != user.role:
        if role is Role.AGENT:
            user.password_hash = None  # agents sign in with tokens only; a person gets one by a reset
        user.role = role.value
        await session.flush()
        await _end_credentials(session, user, revoke_tokens=False, cache=cache)
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        await session.flush()
        if not is_active:
            await _end_credentials(session, user, revoke_tokens=True, cache=cache)
    return user


async def reset_password(
    session: AsyncSession, actor: Actor, user_id: int, *, password: str | None = None
) -> tuple[User, str | None]:
    """An admin sets a person's new password (or has one generated, returned to show once).
    Their browsers are signed out: the session cookie is bound to the password."""
    _require_admin(actor)
    user = await _member(session, actor, user_id)
    if user.role == Role.AGENT.value:
        raise InvalidInput("agents have no password: give them a token")
    generated = None
    if password is None:
        password = generated = secrets.token_urlsafe(12)
    if not 8 <= len(password) <= 200:
        raise InvalidInput("password must be 8-200 characters")
    user.password_hash = security.hash_password(password)
    await session.flush()
    await streams.announce_revoked(session, streams.user_key(user.id))
    return user, generated


async def set_user_skills(
    session: AsyncSession, actor: Actor, user_id: int, *, skills: Iterable[str]
) -> User:
    if actor.role is not Role.ADMIN:
        raise Forbidden("only an admin sets a user's skills")
    user = await session.get(User, user_id, with_for_update=True)
    if user is None or user.org_id != actor.org_id:
        raise NotFound(f"user {user_id} not found")
    user.skills = routing.normalize_skills(skills)
    await session.flush()
    return user
