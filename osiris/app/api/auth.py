"""REST: humans exchange a password for a short-lived JWT (OAuth2 password flow)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from osiris.app import accounts, security
from osiris.app.auth import RuntimeDep, SessionDep
from osiris.app.errors import Unauthenticated
from osiris.app.schemas import TokenResponse

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/token", response_model=TokenResponse)
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    runtime: RuntimeDep,
    request: Request,
) -> TokenResponse:
    client = request.client.host if request.client else "unknown"
    runtime.services.login_limiter.hit(client, form.username)
    user = await accounts.authenticate_password(session, form.username, form.password)
    if user is None:
        raise Unauthenticated("wrong user name or password")
    ttl = runtime.settings.auth.jwt_ttl_seconds
    token = security.issue_jwt(
        user_id=user.id,
        org_id=user.org_id,
        role=user.role,
        key=runtime.settings.signing_key(),
        ttl_seconds=ttl,
    )
    return TokenResponse(access_token=token, expires_in=ttl)
