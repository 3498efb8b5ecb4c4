"""Administration: users and roles, GitHub login mapping, agent tokens, and the audit log."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from starlette.responses import Response

from osiris.app import accounts, db
from osiris.app.errors import InvalidInput, NotFound
from osiris.app.models import Role
from osiris.portal import queries
from osiris.portal.access import AdminDep, FormDep, Viewer, runtime_of, text_field
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(prefix="/admin", route_class=PortalRoute, include_in_schema=False)
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")  # the REST API's rule, so both edges agree


@router.get("")
async def admin_home(viewer: AdminDep) -> Response:
    return redirect("/admin/users")


@router.get("/users")
async def users_page(request: Request, viewer: AdminDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        users = await accounts.list_users(session, viewer.actor)
    return render(request, "admin/users.html", {"users": users, "roles": [r.value for r in Role]})


@router.post("/users")
async def create_user(request: Request, viewer: AdminDep, form: FormDep) -> Response:
    username = text_field(form, "username").strip()
    role_name = text_field(form, "role")
    password = text_field(form, "password") or None
    if not USERNAME.match(username):
        raise InvalidInput("a user name is 1-100 letters, digits and . _ @ -")
    if role_name not in {r.value for r in Role}:
        raise InvalidInput("choose a role: admin, reviewer or agent")
    role = Role(role_name)
    if role is Role.AGENT:
        password = None  # agents sign in with tokens only
    elif password is None:
        raise InvalidInput("people who sign in to the portal need a password (8 characters or more)")
    async with db.transaction(runtime_of(request).sessions) as session:
        await accounts.create_user(
            session,
            org_id=viewer.actor.org_id,
            username=username,
            role=role,
            password=password,
            github_login=text_field(form, "github_login").strip().lstrip("@") or None,
        )
    viewer.session.flash("ok", f"User {username} created as {role.value}.")
    return redirect("/admin/users")


@router.post("/users/{user_id}/github")
async def set_github_login(request: Request, user_id: int, viewer: AdminDep, form: FormDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        user = await accounts.set_github_login(
            session, viewer.actor, user_id, text_field(form, "github_login")
        )
    mapped = f"@{user.github_login}" if user.github_login else "no GitHub login"
    viewer.session.flash("ok", f"{user.username} is now mapped to {mapped}.")
    return redirect("/admin/users")


async def _tokens_context(request: Request, viewer: Viewer) -> dict:
    async with db.transaction(runtime_of(request).sessions) as session:
        tokens = await accounts.list_tokens(session, viewer.actor)
        people = await queries.people(session, viewer.actor)
    return {"tokens": tokens, "people": people}


@router.get("/tokens")
async def tokens_page(request: Request, viewer: AdminDep) -> Response:
    return render(request, "admin/tokens.html", await _tokens_context(request, viewer))


@router.post("/tokens")
async def create_token(request: Request, viewer: AdminDep, form: FormDep) -> Response:
    name = text_field(form, "name").strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("a token needs a name of 1-100 characters")
    user_id = text_field(form, "user_id")
    async with db.transaction(runtime_of(request).sessions) as session:
        people = await queries.people(session, viewer.actor)
        user = people.get(int(user_id)) if user_id.isdigit() and len(user_id) < 18 else None
        if user is None:
            raise NotFound("no such user in your organization")
        new = await accounts.create_token(session, user=user, name=name)
    context = await _tokens_context(request, viewer)
    # Shown in this response only; the database keeps a hash. no-store keeps it out of caches.
    context["created"] = {"name": name, "username": user.username, "secret": new.secret}
    return render(request, "admin/tokens.html", context, status=201)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int, viewer: AdminDep, form: FormDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        cache = runtime_of(request).services.get("token_cache")
        token = await accounts.revoke_token(session, viewer.actor, token_id, cache=cache)
    viewer.session.flash("ok", f"Token {token.name} ({token.display_prefix}…) revoked.")
    return redirect("/admin/tokens")


@router.get("/audit")
async def audit_page(
    request: Request, viewer: AdminDep, before: int | None = None, kind: str | None = None
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        rows = await queries.audit_log(session, viewer.actor, before_id=before, kind=kind or None)
    older = rows[-1].id if len(rows) == 100 else None
    return render(request, "admin/audit.html", {"rows": rows, "older": older, "kind": kind or ""})
