"""REST: OSIRIS's OAuth 2.1 authorization server (RFC 8414 metadata, the client credentials grant at
/oauth/token) and the administration of agents' clients (admins only)."""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import datetime
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from osiris.app import accounts, oauth
from osiris.app.auth import AdminDep, RuntimeDep, SessionDep
from osiris.app.errors import NotFound, RateLimited

log = logging.getLogger(__name__)
router = APIRouter(tags=["oauth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.get("/.well-known/oauth-authorization-server")
async def authorization_server_metadata(runtime: RuntimeDep) -> JSONResponse:
    """RFC 8414 metadata: the issuer, the token endpoint, the client credentials grant, the scopes."""
    return JSONResponse(
        oauth.metadata(runtime.settings.server.public_url),
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=3600"},
    )


@router.get(oauth.AUTHORIZE_PATH, status_code=400, responses={400: {}})
async def authorize() -> JSONResponse:
    """Refuses: agents get tokens from /oauth/token with their client's credentials, and people sign
    in to the portal or at /api/v1/auth/token. No authorization code is ever issued."""
    return JSONResponse(
        {
            "error": "unsupported_response_type",
            "error_description": "OSIRIS issues tokens only through the client credentials grant at "
            + oauth.TOKEN_PATH,
        },
        status_code=400,
        headers=NO_STORE,
    )


def _error(exc: oauth.OAuthError, *, basic: bool) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="OSIRIS"' if basic else 'Bearer realm="OSIRIS"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description}, status_code=exc.status, headers=headers
    )


def _client_credentials(request: Request, form: dict[str, list[str]]) -> tuple[str, str, bool]:
    """(client_id, client_secret, by Basic): HTTP Basic (client_secret_basic, each part form-encoded,
    RFC 6749 §2.3.1) or the form (client_secret_post), never both."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    in_form = "client_secret" in form
    if scheme.lower() == "basic":
        if in_form:
            raise oauth.OAuthError("invalid_request", "authenticate the client one way, not two")
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise oauth.OAuthError("invalid_client", "malformed Basic credentials", 401) from None
        if not sep:
            raise oauth.OAuthError("invalid_client", "malformed Basic credentials", 401)
        return unquote_plus(user), unquote_plus(password), True
    ids, secrets_ = form.get("client_id", []), form.get("client_secret", [])
    if len(ids) != 1 or len(secrets_) != 1:
        raise oauth.OAuthError("invalid_client", "send the client id and secret (Basic, or the form)", 401)
    return ids[0], secrets_[0], False


@router.post(oauth.TOKEN_PATH, responses={400: {}, 401: {}, 429: {}})
async def token(request: Request, session: SessionDep, runtime: RuntimeDep) -> JSONResponse:
    """The client credentials grant (RFC 6749 §4.4) with an RFC 8707 `resource`: the MCP endpoint
    (`<public url>/mcp`) or the REST API base (`<public url>/api/v1`). Form fields: grant_type,
    scope (optional, space-separated), resource; the client authenticates with HTTP Basic or with
    client_id and client_secret in the form."""
    basic = False
    try:
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raise oauth.OAuthError("invalid_request", "send application/x-www-form-urlencoded")
        raw = await request.form(max_files=0, max_fields=20)
        form: dict[str, list[str]] = {}
        for key, value in raw.multi_items():
            if isinstance(value, str):
                form.setdefault(key, []).append(value)
        client_id, client_secret, basic = _client_credentials(request, form)
        # like logins: per client address and per client id, before the secret is looked at
        address = request.client.host if request.client else "unknown"
        runtime.services.login_limiter.hit("oauth", address, client_id[:100])
        for single in ("grant_type", "scope"):
            if len(form.get(single, [])) > 1:
                raise oauth.OAuthError("invalid_request", f"{single} given more than once")
        grant = (form.get("grant_type") or [""])[0]
        if grant != "client_credentials":
            raise oauth.OAuthError("unsupported_grant_type", "only client_credentials is supported")
        client, user = await oauth.authenticate_client(session, client_id, client_secret)
        issued = await oauth.issue_token(
            session,
            client,
            user,
            scope=(form.get("scope") or [None])[0],
            resources=form.get("resource", []),
            public_url=runtime.settings.server.public_url,
            ttl_seconds=runtime.settings.auth.oauth_token_ttl_seconds,
        )
    except oauth.OAuthError as exc:
        log.info("token request refused", extra={"oauth_error": exc.error})
        return _error(exc, basic=basic)
    except RateLimited as exc:
        return JSONResponse(
            {"error": "rate_limited", "error_description": exc.detail},
            status_code=429,
            headers={**NO_STORE, "Retry-After": "60"},
        )
    return JSONResponse(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
            "resource": issued.resource,
        },
        headers=NO_STORE,
    )


# --- clients (admins) -----------------------------------------------------------------------------


class OAuthClientCreate(BaseModel):
    username: str = Field(min_length=1, max_length=100, description="the agent user the client acts as")
    name: str = Field(default="agent client", max_length=100)
    scopes: list[str] | None = Field(
        default=None, description=f"of {' '.join(oauth.ALL_SCOPES)}; default {' '.join(oauth.DEFAULT_SCOPES)}"
    )

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else oauth.parse_scopes(value)


class OAuthClientRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    client_id: str
    name: str
    user_id: int
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class OAuthClientCreated(OAuthClientRead):
    client_secret: Annotated[str, Field(description="shown only now: store it safely")]
    token_endpoint: str
    resources: list[str]


@router.get("/api/v1/oauth-clients", response_model=list[OAuthClientRead], tags=["admin"])
async def list_clients(actor: AdminDep, session: SessionDep) -> list[OAuthClientRead]:
    return [OAuthClientRead.model_validate(c) for c, _ in await oauth.list_clients(session, actor.org_id)]


@router.post("/api/v1/oauth-clients", status_code=201, response_model=OAuthClientCreated, tags=["admin"])
async def create_client(
    body: OAuthClientCreate, actor: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> OAuthClientCreated:
    """Register a client for an agent user (people are refused: 422); the secret is returned once."""
    user = await accounts.find_user(session, body.username)
    if user is None or user.org_id != actor.org_id:
        raise NotFound(f"no user {body.username!r}")
    new = await oauth.create_client(
        session, user=user, name=body.name, scopes=body.scopes, created_by=actor.user_id
    )
    public_url = runtime.settings.server.public_url
    return OAuthClientCreated(
        **OAuthClientRead.model_validate(new.client).model_dump(),
        client_secret=new.secret,
        token_endpoint=oauth.issuer(public_url) + oauth.TOKEN_PATH,
        resources=list(oauth.audiences(public_url)),
    )


@router.delete("/api/v1/oauth-clients/{client_id}", response_model=OAuthClientRead, tags=["admin"])
async def revoke_client(
    client_id: str, actor: AdminDep, session: SessionDep, runtime: RuntimeDep
) -> OAuthClientRead:
    """Revoke a client: its access tokens stop at once, on every replica, live streams included."""
    client = await oauth.find_client(session, client_id, org_id=actor.org_id)
    client = await oauth.revoke_client(session, client, cache=runtime.services.token_cache)
    return OAuthClientRead.model_validate(client)
