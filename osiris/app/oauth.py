"""OSIRIS as an OAuth 2.1 authorization server for its own resources: agents' clients, the client
credentials grant, audience-bound scoped access tokens, and which scope each agent operation needs.

An admin registers a client for an agent user (REST or `osiris client create`); the client secret is
shown once and stored as its SHA-256, like API tokens (it is 256 random bits, so a fast hash is
enough). The client exchanges it at /oauth/token for an access token that names one resource (RFC
8707: the MCP endpoint or the REST API base), a set of scopes, and expires after
`OSIRIS_OAUTH_TOKEN_TTL_SECONDS` (600).

Access tokens are opaque (`osa_…`, stored hashed), not JWTs: every request must check that the client
is not revoked and its agent still active anyway (a revoked client's tokens stop at once), so a
signed token would save no query; opaque tokens go through the same per-process cache, NOTIFY
eviction and live-stream closing (`osiris_tokens` with the token's hash) as `osr_` API tokens, and a
leaked database holds no usable token.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import security
from osiris.app.actors import Actor
from osiris.app.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from osiris.app.models import OAuthAccessToken, OAuthClient, Role, User

CLIENT_ID_PREFIX = "osc_"
CLIENT_SECRET_PREFIX = "oss_"
ACCESS_TOKEN_PREFIX = security.ACCESS_TOKEN_PREFIX
TOKEN_PATH = "/oauth/token"
AUTHORIZE_PATH = "/oauth/authorize"  # exists only to refuse: no grant here goes through a browser
MCP_PATH = "/mcp"
API_PATH = "/api/v1"

# --- scopes ---------------------------------------------------------------------------------------
TASKS_READ = "tasks:read"  # see the queue, tasks, versions, messages, feedback, checks
TASKS_CREATE = "tasks:create"  # file a task
TASKS_CLAIM = "tasks:claim"  # claim (and renew, release) a task
TASKS_SUBMIT = "tasks:submit"  # hand in a version
TASKS_MESSAGE = "tasks:message"  # post a message on a task
REPOS_READ = "repos:read"  # clone or fetch the organization's repositories (git over HTTP)
SCOPES: dict[str, str] = {
    TASKS_READ: "read the queue, tasks, versions, messages, feedback and checks",
    TASKS_CREATE: "file tasks",
    TASKS_CLAIM: "claim tasks, renew and release a claim",
    TASKS_SUBMIT: "submit versions of a task you hold",
    TASKS_MESSAGE: "post messages on a task you hold",
    REPOS_READ: "fetch the organization's repositories over git smart HTTP",
}
ALL_SCOPES: tuple[str, ...] = tuple(SCOPES)
# What `osiris client create` grants when no --scope is given: the agent's work loop.
DEFAULT_SCOPES: tuple[str, ...] = (TASKS_READ, TASKS_CLAIM, TASKS_SUBMIT, TASKS_MESSAGE, REPOS_READ)

# Every REST route an agent may reach, with the scope an OAuth access token needs for it. A route
# that is not here refuses every OAuth token (403 insufficient_scope): `osr_` tokens remain for that.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/agent/me"): TASKS_READ,
    ("GET", "/api/v1/repositories"): TASKS_READ,
    ("POST", "/api/v1/tasks"): TASKS_CREATE,
    ("GET", "/api/v1/tasks"): TASKS_READ,
    ("GET", "/api/v1/tasks/pending"): TASKS_READ,
    ("POST", "/api/v1/tasks/claim-next"): TASKS_CLAIM,
    ("GET", "/api/v1/tasks/{task_id}"): TASKS_READ,
    ("POST", "/api/v1/tasks/{task_id}/claim"): TASKS_CLAIM,
    ("POST", "/api/v1/tasks/{task_id}/heartbeat"): TASKS_CLAIM,
    ("POST", "/api/v1/tasks/{task_id}/release"): TASKS_CLAIM,
    ("POST", "/api/v1/tasks/{task_id}/artifacts"): TASKS_SUBMIT,
    ("GET", "/api/v1/tasks/{task_id}/artifacts"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/artifacts/diff"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/artifacts/{version}"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/messages"): TASKS_READ,
    ("POST", "/api/v1/tasks/{task_id}/messages"): TASKS_MESSAGE,
    ("GET", "/api/v1/tasks/{task_id}/events"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/checks"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/change-request"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/changes"): TASKS_READ,
    ("POST", "/api/v1/tasks/{task_id}/feedback/read"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/review-comments"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/attachments"): TASKS_READ,
    ("GET", "/api/v1/tasks/{task_id}/attachments/{attachment_id}"): TASKS_READ,
}
# The MCP tools (and the task resource and its subscriptions), by the gateway operation behind them.
# An operation not listed refuses every OAuth token (require_scope(actor, None)).
MCP_SCOPES: dict[str, str] = {
    "read_pending_tasks": TASKS_READ,
    "list_my_tasks": TASKS_READ,
    "get_task": TASKS_READ,  # also the resource osiris://tasks/{task_id}
    "get_artifact": TASKS_READ,
    "read_feedback": TASKS_READ,
    "check_readable": TASKS_READ,  # subscribing to a task resource
    "claim_task": TASKS_CLAIM,
    "release_task": TASKS_CLAIM,
    "submit_artifact": TASKS_SUBMIT,
    "post_message": TASKS_MESSAGE,
    "ask_requester": TASKS_MESSAGE,  # a question to the requester, in their own chat
}


class InsufficientScope(Forbidden):
    code, title = "insufficient_scope", "The access token lacks the scope this needs"


def require_scope(actor: Actor, scope: str | None) -> None:
    """Refuse an OAuth access token without `scope` (None: no OAuth token may do this at all).
    API tokens, JWTs and portal sessions carry no scopes and keep their role's full rights."""
    if actor.scopes is None:
        return
    if scope is None:
        raise InsufficientScope("OAuth access tokens cannot use this; an API token (osr_…) can")
    if scope not in actor.scopes:
        raise InsufficientScope(
            f"this needs the scope {scope!r}; the token has {' '.join(sorted(actor.scopes))}"
        )


def require_route_scope(actor: Actor, method: str, path: str) -> None:
    if actor.scopes is not None:
        require_scope(actor, ROUTE_SCOPES.get((method, path)))


# --- audiences ------------------------------------------------------------------------------------


def issuer(public_url: str) -> str:
    return public_url.rstrip("/")


def mcp_audience(public_url: str) -> str:
    return issuer(public_url) + MCP_PATH


def api_audience(public_url: str) -> str:
    """The REST API base; git over HTTP accepts tokens for it too."""
    return issuer(public_url) + API_PATH


def audiences(public_url: str) -> tuple[str, ...]:
    return (mcp_audience(public_url), api_audience(public_url))


def canonical_resource(resource: str) -> str:
    """RFC 8707 resource URIs compared without a trailing slash, scheme and host in lower case."""
    scheme, sep, rest = resource.strip().partition("://")
    if not sep:
        return resource.strip()
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}".rstrip("/")


def metadata(public_url: str) -> dict[str, Any]:
    """RFC 8414 authorization server metadata. Only the client credentials grant, and no dynamic
    registration. The authorization endpoint is listed because clients' metadata models require one
    (the MCP SDK's does); it answers every request with `unsupported_response_type`."""
    base = issuer(public_url)
    return {
        "issuer": base,
        "authorization_endpoint": base + AUTHORIZE_PATH,
        "token_endpoint": base + TOKEN_PATH,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": list(ALL_SCOPES),
        "response_types_supported": [],
        "service_documentation": base + "/docs",
        "client_id_metadata_document_supported": False,
    }


# --- clients --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewClient:
    client: OAuthClient
    secret: str  # the only time the plaintext exists


def parse_scopes(scopes: str | Sequence[str] | None) -> list[str]:
    """Known scopes, in the canonical order; an unknown one is refused with the list of known ones."""
    if scopes is None:
        return list(DEFAULT_SCOPES)
    words = scopes.split() if isinstance(scopes, str) else [w for s in scopes for w in s.split()]
    unknown = sorted(set(words) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {' '.join(unknown)}; known: {' '.join(ALL_SCOPES)}")
    if not words:
        raise InvalidInput(f"give at least one scope of: {' '.join(ALL_SCOPES)}")
    return [s for s in ALL_SCOPES if s in words]


async def create_client(
    session: AsyncSession,
    *,
    user: User,
    name: str,
    scopes: str | Sequence[str] | None = None,
    created_by: int | None = None,
) -> NewClient:
    """A client for an agent user: people (reviewers, admins) sign in themselves and get none."""
    if user.role != Role.AGENT.value:
        raise InvalidInput(f"{user.username} is a {user.role}: OAuth clients are for agents only")
    if not user.is_active:
        raise InvalidInput(f"{user.username} is deactivated: reactivate them before giving them a client")
    name = (name or "").strip() or "agent client"
    if len(name) > 100:
        raise InvalidInput("a client's name has at most 100 characters")
    secret = CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)
    client = OAuthClient(
        org_id=user.org_id,
        user_id=user.id,
        client_id=CLIENT_ID_PREFIX + secrets.token_urlsafe(16),
        name=name,
        secret_hash=security.hash_token(secret),
        display_prefix=secret[:10],
        scopes=parse_scopes(scopes),
        created_by_id=created_by,
    )
    session.add(client)
    await session.flush()
    return NewClient(client, secret)


async def list_clients(session: AsyncSession, org_id: int | None) -> Sequence[tuple[OAuthClient, str]]:
    """An organization's clients (every one for the operator's CLI: None) with their agent's name."""
    stmt = (
        select(OAuthClient, User.username).join(User, User.id == OAuthClient.user_id).order_by(OAuthClient.id)
    )
    if org_id is not None:
        stmt = stmt.where(OAuthClient.org_id == org_id)
    return [(c, name) for c, name in (await session.execute(stmt)).all()]


async def find_client(session: AsyncSession, client_id: str, *, org_id: int | None) -> OAuthClient:
    stmt = select(OAuthClient).where(OAuthClient.client_id == client_id)
    if org_id is not None:
        stmt = stmt.where(OAuthClient.org_id == org_id)
    client = await session.scalar(stmt)
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    return client


async def revoke_client(
    session: AsyncSession, client: OAuthClient, *, cache: Any | None = None
) -> OAuthClient:
    """Revoke a client and every access token it holds: they stop at once on this process (`cache`
    evicted now) and on every replica when the caller commits (NOTIFY, which also closes their
    live MCP requests and WebSockets)."""
    await session.execute(
        update(OAuthClient)
        .where(OAuthClient.id == client.id, OAuthClient.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    hashes = (
        await session.scalars(
            delete(OAuthAccessToken)
            .where(OAuthAccessToken.client_pk == client.id)
            .returning(OAuthAccessToken.token_hash)
        )
    ).all()
    await _announce(session, hashes, cache)
    await session.refresh(client)
    return client


async def end_user_tokens(session: AsyncSession, user_id: int, *, revoke: bool, cache: Any | None) -> None:
    """A user deactivated or given another role: their access tokens leave every cache (the lookup
    then refuses them: only an active agent's tokens resolve); with `revoke`, they are deleted."""
    if revoke:
        stmt: Any = delete(OAuthAccessToken).where(OAuthAccessToken.user_id == user_id)
        hashes = (await session.scalars(stmt.returning(OAuthAccessToken.token_hash))).all()
    else:
        hashes = (
            await session.scalars(
                select(OAuthAccessToken.token_hash).where(OAuthAccessToken.user_id == user_id)
            )
        ).all()
    await _announce(session, hashes, cache)


async def _announce(session: AsyncSession, hashes: Sequence[str], cache: Any | None) -> None:
    for token_hash in hashes:
        await session.execute(select(func.pg_notify(security.TOKENS_CHANNEL, token_hash)))
        if cache is not None:
            cache.evict(token_hash)


# --- the token endpoint ---------------------------------------------------------------------------


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response of the token endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


# Compared against when the client id is unknown, so that answer takes as long as a wrong secret.
_DUMMY_SECRET_HASH = security.hash_token(CLIENT_SECRET_PREFIX + "osiris-timing-equaliser")


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    resource: str


async def authenticate_client(
    session: AsyncSession, client_id: str, client_secret: str
) -> tuple[OAuthClient, User]:
    """The client and its agent, or OAuthError invalid_client: unknown client, wrong secret, revoked
    client, or an agent that is deactivated, no longer an agent, or in another organization."""
    row = (
        await session.execute(
            select(OAuthClient, User)
            .join(User, User.id == OAuthClient.user_id)
            .where(OAuthClient.client_id == client_id)
        )
    ).one_or_none()
    stored = row[0].secret_hash if row is not None else _DUMMY_SECRET_HASH
    ok = hmac.compare_digest(security.hash_token(client_secret).encode(), stored.encode())
    if not ok or row is None:
        raise OAuthError("invalid_client", "unknown client or wrong secret", 401)
    client, user = row
    if client.revoked_at is not None:
        raise OAuthError("invalid_client", "the client was revoked", 401)
    if not user.is_active or user.role != Role.AGENT.value or user.org_id != client.org_id:
        raise OAuthError(
            "invalid_client", "the client's agent cannot sign in (deactivated, or not an agent)", 401
        )
    return client, user


async def issue_token(
    session: AsyncSession,
    client: OAuthClient,
    user: User,
    *,
    scope: str | None,
    resources: Sequence[str],
    public_url: str,
    ttl_seconds: int,
) -> IssuedToken:
    """Grant the requested scopes the client holds (RFC 6749 §3.3: the response says which), for one
    of our resources; `invalid_scope` when none of them is the client's, `invalid_target` for a
    resource that is not ours."""
    if len(resources) != 1:
        raise OAuthError(
            "invalid_target",
            f"name exactly one resource: {' or '.join(audiences(public_url))}",
        )
    ours = {canonical_resource(a): a for a in audiences(public_url)}
    resource = ours.get(canonical_resource(resources[0]))
    if resource is None:
        raise OAuthError("invalid_target", f"not a resource of this server; use {' or '.join(ours.values())}")
    held = list(client.scopes)
    if scope is None or not scope.split():
        granted = held
    else:
        asked = scope.split()
        unknown = sorted(set(asked) - set(SCOPES))
        if unknown:
            raise OAuthError("invalid_scope", f"unknown scope {' '.join(unknown)}")
        granted = [s for s in held if s in asked]
    if not granted:
        raise OAuthError("invalid_scope", f"the client holds none of those scopes; it holds {' '.join(held)}")
    token = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
    # expired tokens of this client go as new ones come, so the table stays the size of live tokens
    await session.execute(
        delete(OAuthAccessToken).where(
            OAuthAccessToken.client_pk == client.id, OAuthAccessToken.expires_at < func.now()
        )
    )
    session.add(
        OAuthAccessToken(
            client_pk=client.id,
            org_id=client.org_id,
            user_id=user.id,
            token_hash=security.hash_token(token),
            scopes=granted,
            resource=resource,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_seconds),
        )
    )
    await session.execute(
        update(OAuthClient)
        .where(
            OAuthClient.id == client.id,
            or_(
                OAuthClient.last_used_at.is_(None),
                OAuthClient.last_used_at < func.now() - timedelta(minutes=1),
            ),
        )
        .values(last_used_at=func.now())
    )
    await session.flush()
    return IssuedToken(token, ttl_seconds, " ".join(granted), resource)


# --- resolving an access token ----------------------------------------------------------------------


async def actor_from_access_token(
    session: AsyncSession, token: str, *, audience: str | None, cache: Any | None = None
) -> Actor:
    """An `osa_` token's actor: an active agent of the token's organization, through a client that is
    not revoked, before its expiry, and only for the resource it was issued for (`audience`; None
    — an edge with no audience of its own — refuses every access token)."""
    token_hash = security.hash_token(token)
    actor = cache.get(token_hash) if cache is not None else None
    if actor is None:
        row = (
            await session.execute(
                select(OAuthAccessToken, User)
                .join(OAuthClient, OAuthClient.id == OAuthAccessToken.client_pk)
                .join(User, User.id == OAuthAccessToken.user_id)
                .where(
                    OAuthAccessToken.token_hash == token_hash,
                    OAuthAccessToken.expires_at > func.now(),
                    OAuthClient.revoked_at.is_(None),
                    User.is_active.is_(True),
                    User.role == Role.AGENT.value,
                    User.org_id == OAuthAccessToken.org_id,
                    OAuthClient.org_id == OAuthAccessToken.org_id,
                )
            )
        ).one_or_none()
        if row is None:
            raise Unauthenticated("unknown, revoked or expired token")
        access, user = row
        actor = Actor(
            org_id=user.org_id,
            user_id=user.id,
            name=user.username,
            role=Role(user.role),
            scopes=frozenset(access.scopes),
            audience=access.resource,
        )
        if cache is not None:
            cache.put(token_hash, actor, access.expires_at)
    if (
        audience is None
        or actor.audience is None
        or canonical_resource(actor.audience) != canonical_resource(audience)
    ):
        raise Unauthenticated("the token was issued for another resource")
    return actor
