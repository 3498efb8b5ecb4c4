"""Bearer tokens on /mcp through the SDK's resource-server auth, and DNS-rebinding protection.

The SDK's middleware answers a missing or bad token with 401, `WWW-Authenticate: Bearer …` and the
address of the protected-resource metadata (RFC 9728), which names OSIRIS itself as the authorization
server (its RFC 8414 metadata and /oauth/token: osiris/app/api/oauth.py) and the scopes the tools
need. OSIRIS issues every token it accepts (`osr_…` API tokens, `osa_…` OAuth access tokens bound to
this endpoint, JWTs from /api/v1/auth/token), so the verifier resolves them exactly as REST does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from osiris.app import db, oauth
from osiris.app.auth import actor_from_token
from osiris.app.config import Settings
from osiris.app.errors import Unauthenticated
from osiris.app.runtime import Runtime

if TYPE_CHECKING:  # the SDK is imported with the first MCP request (osiris/mcp/extension.py)
    from mcp.server.auth.provider import AccessToken
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.transport_security import TransportSecuritySettings

MCP_PATH = oauth.MCP_PATH


class OsirisTokenVerifier:
    """Implements the SDK's `TokenVerifier`: an OSIRIS token becomes an access token carrying the actor."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime  # available once the app's lifespan has started

    async def verify_token(self, token: str) -> AccessToken | None:
        from mcp.server.auth.provider import AccessToken

        runtime = self._runtime()
        try:
            async with db.transaction(runtime.sessions) as session:
                actor = await actor_from_token(
                    session,
                    token,
                    signing_key=runtime.settings.signing_key(),
                    # The REST API's cache: revocations evict it on every replica through NOTIFY.
                    cache=runtime.services.token_cache,
                    # an OAuth access token is accepted here only if issued for this MCP endpoint
                    audience=oauth.mcp_audience(runtime.settings.server.public_url),
                )
        except Unauthenticated:
            return None
        assert actor.user_id is not None and actor.role is not None  # noqa: S101 - a token names a user
        return AccessToken(
            token=token,
            # The session manager binds a session to (client_id, issuer, subject): one user, one owner.
            client_id=f"osiris-user-{actor.user_id}",
            subject=str(actor.user_id),
            # an OAuth access token's scopes (each tool checks its own); else the role, unlimited
            scopes=sorted(actor.scopes) if actor.scopes is not None else [actor.role.value],
            resource=actor.audience,
            claims={
                "org_id": actor.org_id,
                "user_id": actor.user_id,
                "name": actor.name,
                "role": actor.role.value,
                "scopes": sorted(actor.scopes) if actor.scopes is not None else None,
            },
        )


def auth_settings(settings: Settings) -> AuthSettings:
    from mcp.server.auth.settings import AuthSettings

    base = settings.server.public_url.rstrip("/")
    # Validated from strings so the settings keep a path-less issuer exactly as configured (no "/").
    return AuthSettings.model_validate(
        {
            "issuer_url": base,
            "resource_server_url": base + MCP_PATH,
            # Our verifier checks the audience itself: OAuth access tokens must name this endpoint
            # (RFC 8707), while `osr_` API tokens and JWTs carry none and stay valid everywhere.
            "validate_token_resource": False,
        }
    )


def transport_security(settings: Settings) -> TransportSecuritySettings:
    from mcp.server.transport_security import TransportSecuritySettings

    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.server.mcp_allowed_hosts,
        allowed_origins=settings.server.mcp_allowed_origins,
    )


# What the protected-resource metadata lists: the scopes the MCP tools check (osiris/app/oauth.py).
MCP_SCOPES_SUPPORTED = sorted(set(oauth.MCP_SCOPES.values()), key=oauth.ALL_SCOPES.index)


def protected_resource_routes(settings: Settings) -> list:
    """RFC 9728 metadata for /mcp, served by the SDK's handler: the resource, OSIRIS as its
    authorization server, and the scopes its tools use (the SDK's own route lists none)."""
    from mcp.server.auth.routes import create_protected_resource_routes

    auth = auth_settings(settings)
    assert auth.resource_server_url is not None  # noqa: S101 - set by auth_settings
    return create_protected_resource_routes(
        resource_url=auth.resource_server_url,
        authorization_servers=[auth.issuer_url],
        scopes_supported=MCP_SCOPES_SUPPORTED,
        resource_name="OSIRIS",
    )
