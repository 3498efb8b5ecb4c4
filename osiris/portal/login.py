"""Sign in and out with a human account (admins and reviewers; agents use tokens, not the portal)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from osiris.app import accounts, db, streams
from osiris.app.errors import RateLimited
from osiris.portal.access import FormDep, portal_session, runtime_of, text_field, user_of_session
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site: `//evil.example` or a full URL would make login an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    if await user_of_session(request, portal_session(request)) is not None:
        return redirect(safe_next(next))
    return render(request, "login.html", {"next": safe_next(next)})


@router.post("/login")
async def login(request: Request, form: FormDep) -> Response:
    runtime = runtime_of(request)
    username = text_field(form, "username").strip()
    password = text_field(form, "password")
    target = safe_next(text_field(form, "next", default="/"))
    context = {"next": target, "username": username}
    client = request.client.host if request.client else "unknown"
    try:
        runtime.services.login_limiter.hit("portal", client, username.lower())
    except RateLimited:
        context["error"] = "Too many sign-in attempts. Wait a minute and try again."
        return render(request, "login.html", context, status=429)
    async with db.transaction(runtime.sessions) as session:
        user = await accounts.authenticate_password(session, username, password)
    if user is None:
        context["error"] = "Wrong user name or password."
        return render(request, "login.html", context, status=401)
    portal_session(request).sign_in(user.id, user.password_hash)
    return redirect(target)


@router.post("/logout")
async def logout(request: Request, form: FormDep) -> Response:
    session = portal_session(request)
    if session.user_id is not None:
        # This browser's live sockets close on every replica. The cookie itself is stateless: one
        # copied before signing out stays valid until it expires (portal_session_max_age_seconds).
        async with db.transaction(runtime_of(request).sessions) as db_session:
            await streams.announce_revoked(db_session, streams.session_key(session.csrf))
    session.sign_out()
    session.flash("info", "You are signed out.")
    return redirect("/login")
