"""Who is calling: opaque API tokens and short-lived JWTs turned into an Actor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import func

from osiris.app import oauth, security
from osiris.app.actors import Actor
from osiris.app.errors import Forbidden, Unauthenticated
from osiris.app.models import ApiToken, Role, User
from osiris.app.runtime import Runtime
from osiris.app.token_cache import TokenCache


def actor_for(user: User) -> Actor:
    return Actor(
        org_id=user.org_id,
        user_id=user.id,
        name=user.username,
        role=Role(user.role),
        superuser=bool(user.is_superuser),
    )


async def actor_from_token(
    session: AsyncSession,
    token: str,
    *,
    signing_key: str,
    cache: TokenCache | None = None,
    audience: str | None = None,
) -> Actor:
    """Resolve a bearer token, opaque (`osr_…`), an OAuth access token (`osa_…`, only for the
    `audience` it was issued for) or JWT; raise Unauthenticated for anything else."""
    if token.startswith(oauth.ACCESS_TOKEN_PREFIX):
        return await oauth.actor_from_access_token(session, token, audience=audience, cache=cache)
    if token.startswith(security.TOKEN_PREFIX):
        token_hash = security.hash_token(token)
        if cache is not None and (hit := cache.get(token_hash)) is not None:
            return hit
        row = (
            await session.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(
                    ApiToken.token_hash == token_hash,
                    ApiToken.revoked_at.is_(None),
                    or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > func.now()),
                    User.is_active.is_(True),
                )
            )
        ).one_or_none()
        if row is None:
            raise Unauthenticated("unknown, revoked or expired token")
        api_token, user = row
        # last-used, at most once a minute per token: keeps hot paths free of writes
        await session.execute(
            update(ApiToken)
            .where(
                ApiToken.id == api_token.id,
                or_(
                    ApiToken.last_used_at.is_(None), ApiToken.last_used_at < func.now() - timedelta(minutes=1)
                ),
            )
            .values(last_used_at=func.now())
        )
        actor = actor_for(user)
        if cache is not None:
            cache.put(token_hash, actor, api_token.expires_at)
        return actor
    try:
        claims = security.decode_jwt(token, key=signing_key)
    except jwt.InvalidTokenError:
        raise Unauthenticated("invalid or expired token") from None
    user = await session.get(User, int(claims["sub"]))
    if user is None or not user.is_active or user.org_id != claims["org"]:
        raise Unauthenticated("the token's user no longer exists")
    return actor_for(user)


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns, rolled back if it raises."""
    async with runtime.sessions() as session, session.begin():
        yield session


# scope="function": commit before the response is sent, so a 2xx means the data is durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
_bearer = HTTPBearer(
    auto_error=False,
    description="An `osr_…` API token, an OAuth access token from /oauth/token, or a JWT from /api/v1/auth/token",
)


async def current_actor(
    session: SessionDep,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    request: Request,
) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send Authorization: Bearer <token>")
    actor = await actor_from_token(
        session,
        credentials.credentials,
        signing_key=runtime.settings.signing_key(),
        cache=runtime.services.token_cache,
        audience=oauth.api_audience(runtime.settings.server.public_url),
    )
    if actor.scopes is not None:  # an OAuth access token: only the routes its scopes name
        route = request.scope.get("route")
        oauth.require_route_scope(actor, request.method, getattr(route, "path", request.url.path))
    return actor


ActorDep = Annotated[Actor, Depends(current_actor)]


async def current_admin(actor: ActorDep) -> Actor:
    if actor.role is not Role.ADMIN:
        raise Forbidden("admins only")
    return actor


AdminDep = Annotated[Actor, Depends(current_admin)]


async def current_superuser(actor: ActorDep) -> Actor:
    if not actor.superuser:
        raise Forbidden("the operator (a superuser) only")
    return actor


SuperuserDep = Annotated[Actor, Depends(current_superuser)]
