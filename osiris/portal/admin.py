"""Administration: users and roles, GitHub login mapping, agent tokens, and the audit log."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from osiris.app import accounts, db, integrations, organizations
from osiris.app.errors import InvalidInput, NotFound
from osiris.app.models import Role
from osiris.app.schemas import valid_username
from osiris.portal import queries
from osiris.portal.access import AdminDep, FormDep, Viewer, runtime_of, text_field
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(prefix="/admin", route_class=PortalRoute, include_in_schema=False)


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
    username = valid_username(text_field(form, "username"))  # the core's rule, as REST and the CLI
    role_name = text_field(form, "role")
    password = text_field(form, "password") or None
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


def _user_id(value: str) -> int:
    if not (value.isdigit() and len(value) < 18):
        raise NotFound("no such user in your organization")
    return int(value)


@router.post("/users/{user_id}/role")
async def set_role(request: Request, user_id: int, viewer: AdminDep, form: FormDep) -> Response:
    role_name = text_field(form, "role")
    if role_name not in {r.value for r in Role}:
        raise InvalidInput("choose a role: admin, reviewer or agent")
    async with db.transaction(runtime_of(request).sessions) as session:
        user = await accounts.update_user(
            session,
            viewer.actor,
            user_id,
            role=Role(role_name),
            cache=runtime_of(request).services.token_cache,
        )
    hint = " Reset their password so they can sign in." if user.is_human and not user.password_hash else ""
    viewer.session.flash("ok", f"{user.username} is now {user.role}.{hint}")
    return redirect("/admin/users")


@router.post("/users/{user_id}/active")
async def set_active(request: Request, user_id: int, viewer: AdminDep, form: FormDep) -> Response:
    active = text_field(form, "active")
    if active not in ("true", "false"):
        raise InvalidInput("active is true or false")
    async with db.transaction(runtime_of(request).sessions) as session:
        user = await accounts.update_user(
            session,
            viewer.actor,
            user_id,
            is_active=active == "true",
            cache=runtime_of(request).services.token_cache,
        )
    done = (
        "reactivated" if user.is_active else "deactivated: their tokens are revoked, their live pages closed"
    )
    viewer.session.flash("ok", f"{user.username} {done}.")
    return redirect("/admin/users")


@router.post("/users/{user_id}/password")
async def reset_password(request: Request, user_id: int, viewer: AdminDep, form: FormDep) -> Response:
    chosen = text_field(form, "password") or None
    async with db.transaction(runtime_of(request).sessions) as session:
        user, generated = await accounts.reset_password(session, viewer.actor, user_id, password=chosen)
        users = await accounts.list_users(session, viewer.actor)
    context = {"users": users, "roles": [r.value for r in Role]}
    # A generated password is shown in this response only (no-store), like a new token.
    context["reset"] = {"username": user.username, "password": generated}
    return render(request, "admin/users.html", context)


@router.post("/users/{user_id}/skills")
async def set_skills(request: Request, user_id: int, viewer: AdminDep, form: FormDep) -> Response:
    skills = [s for s in text_field(form, "skills").replace(",", " ").split() if s]
    async with db.transaction(runtime_of(request).sessions) as session:
        user = await accounts.set_user_skills(session, viewer.actor, user_id, skills=skills)
    viewer.session.flash("ok", f"{user.username} now has skills: {', '.join(user.skills) or 'none'}.")
    return redirect("/admin/users")


async def _tokens_context(request: Request, viewer: Viewer) -> dict:
    async with db.transaction(runtime_of(request).sessions) as session:
        tokens = await accounts.list_tokens(session, viewer.actor)
        people = await queries.people(session, viewer.actor)
    agents = [uid for uid, u in people.items() if u.role == Role.AGENT.value and u.is_active]
    return {
        "tokens": tokens,
        "people": people,
        "default_user_id": agents[0] if agents else None,
        "now": datetime.now(UTC),
    }


def _expiry_days(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 5:
        raise InvalidInput("expires in: a whole number of days, or empty for never")
    return int(value)


@router.get("/tokens")
async def tokens_page(request: Request, viewer: AdminDep) -> Response:
    return render(request, "admin/tokens.html", await _tokens_context(request, viewer))


@router.post("/tokens")
async def create_token(request: Request, viewer: AdminDep, form: FormDep) -> Response:
    name = text_field(form, "name").strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("a token needs a name of 1-100 characters")
    user_id = text_field(form, "user_id")
    expires_at = accounts.token_expiry(expires_in_days=_expiry_days(text_field(form, "expires_in_days")))
    async with db.transaction(runtime_of(request).sessions) as session:
        people = await queries.people(session, viewer.actor)
        user = people.get(_user_id(user_id))
        if user is None:
            raise NotFound("no such user in your organization")
        if user.is_human and text_field(form, "confirm_person") != "yes":
            # A token for a person acts with their reviewer or admin rights: ask once more.
            context = await _tokens_context(request, viewer)
            context["confirm"] = {
                "user": user,
                "name": name,
                "expires_in_days": text_field(form, "expires_in_days").strip(),
            }
            return render(request, "admin/tokens.html", context, status=409)
        new = await accounts.create_token(session, user=user, name=name, expires_at=expires_at)
    context = await _tokens_context(request, viewer)
    # Shown in this response only; the database keeps a hash. no-store keeps it out of caches.
    context["created"] = {
        "name": name,
        "username": user.username,
        "secret": new.secret,
        "expires_at": new.token.expires_at,
    }
    return render(request, "admin/tokens.html", context, status=201)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int, viewer: AdminDep, form: FormDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        cache = runtime_of(request).services.token_cache
        token = await accounts.revoke_token(session, viewer.actor, token_id, cache=cache)
    viewer.session.flash("ok", f"Token {token.name} ({token.display_prefix}…) revoked.")
    return redirect("/admin/tokens")


@router.get("/integrations")
async def integrations_page(request: Request, viewer: AdminDep) -> Response:
    """Which code host and channels are on and what each still needs; setting names, never values.
    The operator also sees every organization's channel accounts."""
    settings = runtime_of(request).settings
    async with db.transaction(runtime_of(request).sessions) as session:
        org_id = None if viewer.actor.superuser else viewer.actor.org_id
        channel_accounts = await organizations.list_channel_accounts(session, org_id=org_id)
    accounts_by_channel = Counter(a.channel for a in channel_accounts)
    return render(
        request,
        "admin/integrations.html",
        {
            "items": integrations.status(settings),
            "accounts_by_channel": accounts_by_channel,
            "mcp_url": settings.server.public_url.rstrip("/") + "/mcp",
        },
    )


@dataclass(frozen=True)
class AuditFilters:
    """The audit page's query, as typed; `until` is the day after `to` (the range includes `to`)."""

    actor: str = ""
    task: int | None = None
    kind: str = ""
    since: datetime | None = None
    until: datetime | None = None
    raw: dict[str, str] = field(default_factory=dict)  # what was asked, to refill the form and page on


KIND = re.compile(r"^[a-z0-9_]{1,64}$")


def _day(value: str, what: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{what} must be a date written YYYY-MM-DD, e.g. 2026-11-03; got {value[:40]!r}"
        ) from None


def audit_filters(actor: str, task: str, kind: str, since: str, until: str) -> AuditFilters:
    """Parse the audit page's filters; anything malformed is a 422 that says which field and why."""
    actor, task, kind = actor.strip(), task.strip().lstrip("#"), kind.strip()
    if len(actor) > 200:
        raise InvalidInput("the actor filter is limited to 200 characters")
    if task and not (task.isdigit() and 0 < int(task) < 2**63):
        raise InvalidInput(f"the task filter must be a task number, e.g. 12; got {task[:40]!r}")
    if kind and not KIND.match(kind):
        raise InvalidInput("an event kind is lower-case letters, digits and _, e.g. approve")
    first, last = _day(since, "the from date"), _day(until, "the to date")
    if first and last and first > last:
        raise InvalidInput(f"the from date {first} is after the to date {last}")
    raw = {"actor": actor, "task": task, "kind": kind, "from": since.strip(), "to": until.strip()}
    return AuditFilters(
        actor=actor,
        task=int(task) if task else None,
        kind=kind,
        since=datetime.combine(first, time(), UTC) if first else None,
        until=datetime.combine(last + timedelta(days=1), time(), UTC) if last else None,
        raw={k: v for k, v in raw.items() if v},
    )


@router.get("/audit")
async def audit_page(
    request: Request,
    viewer: AdminDep,
    before: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
    kind: Annotated[str, Query(max_length=100)] = "",
    actor: Annotated[str, Query(max_length=300)] = "",
    task: Annotated[str, Query(max_length=40)] = "",
    since: Annotated[str, Query(alias="from", max_length=40)] = "",
    until: Annotated[str, Query(alias="to", max_length=40)] = "",
) -> Response:
    f = audit_filters(actor, task, kind, since, until)
    async with db.transaction(runtime_of(request).sessions) as session:
        rows = await queries.audit_log(
            session,
            viewer.actor,
            before_id=before,
            kind=f.kind or None,
            actor_name=f.actor or None,
            task_id=f.task,
            since=f.since,
            until=f.until,
        )
    older = rows[-1][0].id if len(rows) == 100 else None
    return render(
        request,
        "admin/audit.html",
        {"rows": rows, "older": older, "filters": f, "query": urlencode(f.raw)},
    )
