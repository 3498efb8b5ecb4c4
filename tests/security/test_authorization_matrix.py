"""The authorization matrix: every route × every role × own vs another organization → expected outcome.

The cases are generated from the app's route table (REST, portal pages, WebSockets, raw routes) and
from the MCP server's own tool list, so an endpoint or tool without a rule in RULES / MCP_RULES fails
the test ("no rule for POST /api/v1/foo"). Each case is a real request against one live server with
real ids: a fresh task per (route, role) in the caller's organization, and a task, user, token … of
another organization ("other"), whose names carry LEAK so that no answer may ever mention them.

Outcome classes: allowed (2xx/3xx, or a 4xx that is not about who is asking: 409, 422, a 404 for a
missing sub-resource), unauthenticated (401, or 303 → /login?next= on a portal page), forbidden (403),
hidden (404 for another organization's resource, or task_not_found), refused (a webhook without its
signature: 401/403 and nothing stored; a WebSocket handshake turned down).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from mcp.shared.exceptions import MCPError
from sqlalchemy import func, select, text
from starlette.routing import Mount, Route
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from osiris.app import accounts, db, lifecycle, models, oauth, repositories, security
from osiris.app.actors import Actor
from osiris.app.artifacts import validate_artifact
from osiris.app.auth import actor_for
from osiris.app.events import record_event
from osiris.app.models import ChannelAttachment, Role, Task, User
from osiris.portal.live import forget_events
from tests.support.servers import mcp_over_http

ROLES = ("anonymous", "agent", "reviewer", "admin")
PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LEAK = "zzotherorg"  # in every name of the other organization: no answer to us may contain it
MCP_REQUEST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}  # raw, before any MCP session

# --- the rules -----------------------------------------------------------------------------------
# Who may: a set of roles. "agent" on a portal page means an agent's bearer token: agents cannot sign
# in to the portal, so they are sent to /login like anyone signed out.
PUBLIC = frozenset(ROLES)
ANY = frozenset({"agent", "reviewer", "admin"})  # any token (agents on a task they hold: "agent-holder")
AGENT = frozenset({"agent"})  # the lifecycle's agent-only moves (claim, submit, heartbeat)
HOLDER_OR_ADMIN = frozenset({"agent", "admin"})  # release: the holding agent, or an admin
SUPERVISOR = frozenset({"reviewer", "admin"})
ADMIN = frozenset({"admin"})
WEBHOOK = frozenset({"webhook-signature"})  # no role's token is a signature: unsigned → 401/403
# The operator: an admin of our organization with users.is_superuser. Asked only on routes whose rule
# names it (like "bystander" on holder routes); everywhere else a superuser is the admin it also is.
SUPERUSER = frozenset({"superuser"})


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    scoped: bool = False  # another organization's resource is hidden (404 / task_not_found / refused)
    holder: bool = False  # agent-holder: an agent only on a task it holds (another agent: not_your_task)
    note: str = ""


# (method, path) → rule; "*" for a raw route that takes any method.
RULES: dict[tuple[str, str], Rule] = {
    # operations and documentation
    ("GET", "/healthz"): Rule(PUBLIC),
    ("GET", "/readyz"): Rule(PUBLIC),
    ("GET", "/metrics"): Rule(PUBLIC, note="process counters only, no organization data"),
    ("GET", "/openapi.json"): Rule(PUBLIC),
    ("GET", "/docs"): Rule(PUBLIC),
    ("GET", "/docs/oauth2-redirect"): Rule(PUBLIC),
    ("GET", "/redoc"): Rule(PUBLIC),
    ("GET", "/static/portal"): Rule(PUBLIC),
    ("GET", "/static/docs"): Rule(PUBLIC, note="Swagger UI and ReDoc assets, for /docs offline"),
    # MCP: the transport needs a token; each tool's rule is in MCP_RULES
    ("*", "/mcp"): Rule(ANY),
    ("*", "/.well-known/oauth-protected-resource/mcp"): Rule(PUBLIC),
    # auth
    ("POST", "/api/v1/auth/token"): Rule(PUBLIC, note="password form; agents have no password"),
    ("GET", "/api/v1/agent/me"): Rule(ANY),
    # tasks
    ("POST", "/api/v1/tasks"): Rule(ANY, note="agents may file tasks too"),
    ("GET", "/api/v1/tasks"): Rule(ANY, note="lists only the caller's organization"),
    ("GET", "/api/v1/tasks/pending"): Rule(ANY),
    ("POST", "/api/v1/tasks/claim-next"): Rule(AGENT),
    ("GET", "/api/v1/tasks/{task_id}"): Rule(ANY, scoped=True),
    ("POST", "/api/v1/tasks/{task_id}/claim"): Rule(AGENT, scoped=True),
    ("POST", "/api/v1/tasks/{task_id}/heartbeat"): Rule(AGENT, scoped=True, holder=True),
    ("POST", "/api/v1/tasks/{task_id}/release"): Rule(HOLDER_OR_ADMIN, scoped=True, holder=True),
    ("POST", "/api/v1/tasks/{task_id}/artifacts"): Rule(AGENT, scoped=True, holder=True),
    ("GET", "/api/v1/tasks/{task_id}/artifacts"): Rule(ANY, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/artifacts/diff"): Rule(ANY, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/artifacts/{version}"): Rule(ANY, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/messages"): Rule(ANY, scoped=True),
    ("POST", "/api/v1/tasks/{task_id}/messages"): Rule(ANY, scoped=True, holder=True),
    ("GET", "/api/v1/tasks/{task_id}/events"): Rule(ANY, scoped=True),
    ("POST", "/api/v1/tasks/{task_id}/approve"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/api/v1/tasks/{task_id}/reject"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/api/v1/tasks/{task_id}/request-changes"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/api/v1/tasks/{task_id}/cancel"): Rule(SUPERVISOR, scoped=True),
    ("PUT", "/api/v1/tasks/{task_id}/skills"): Rule(SUPERVISOR, scoped=True),
    ("PUT", "/api/v1/tasks/{task_id}/assignee"): Rule(SUPERVISOR, scoped=True),
    ("PUT", "/api/v1/tasks/{task_id}/priority"): Rule(SUPERVISOR, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/checks"): Rule(ANY, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/change-request"): Rule(ANY, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/changes"): Rule(ANY, scoped=True, note="404 until published"),
    ("POST", "/api/v1/tasks/{task_id}/feedback/read"): Rule(ANY, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/review-comments"): Rule(ANY, scoped=True),
    ("POST", "/api/v1/tasks/{task_id}/review-comments"): Rule(
        SUPERVISOR, scoped=True, note="comments on lines of the diff: never an agent"
    ),
    ("PATCH", "/api/v1/tasks/{task_id}/review-comments/{comment_id}"): Rule(
        SUPERVISOR, scoped=True, note="resolving a thread: never an agent"
    ),
    ("POST", "/api/v1/tasks/{task_id}/reviews"): Rule(SUPERVISOR, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/attachments"): Rule(ANY, scoped=True),
    ("GET", "/api/v1/tasks/{task_id}/attachments/{attachment_id}"): Rule(ANY, scoped=True),
    # administration
    ("GET", "/api/v1/users"): Rule(ADMIN),
    ("POST", "/api/v1/users"): Rule(ADMIN),
    ("PUT", "/api/v1/users/{user_id}/skills"): Rule(ADMIN, scoped=True),
    ("PATCH", "/api/v1/users/{user_id}"): Rule(ADMIN, scoped=True, note="role, is_active"),
    ("POST", "/api/v1/users/{user_id}/password"): Rule(ADMIN, scoped=True, note="agents: 422"),
    ("GET", "/api/v1/tokens"): Rule(ADMIN),
    ("POST", "/api/v1/tokens"): Rule(ADMIN, scoped=True, note="the user is named in the body"),
    ("DELETE", "/api/v1/tokens/{token_id}"): Rule(ADMIN, scoped=True),
    # OAuth 2.1: the authorization server (client credentials only) and agents' clients (admins)
    ("GET", "/.well-known/oauth-authorization-server"): Rule(PUBLIC),
    ("GET", "/oauth/authorize"): Rule(PUBLIC, note="exists only to refuse (400): no browser grants"),
    ("POST", "/oauth/token"): Rule(PUBLIC, note="a client's credentials, not a token: any caller may try"),
    ("GET", "/api/v1/oauth-clients"): Rule(ADMIN),
    ("POST", "/api/v1/oauth-clients"): Rule(ADMIN, scoped=True, note="the agent is named in the body"),
    ("DELETE", "/api/v1/oauth-clients/{client_id}"): Rule(ADMIN, scoped=True),
    # inbound webhooks: the provider's signature or shared secret, never a user's token
    ("POST", "/api/v1/webhooks/github"): Rule(WEBHOOK),
    ("POST", "/api/v1/webhooks/twilio"): Rule(WEBHOOK),
    ("POST", "/api/v1/webhooks/slack/events"): Rule(WEBHOOK),
    ("POST", "/api/v1/webhooks/slack/commands"): Rule(WEBHOOK),
    ("POST", "/api/v1/webhooks/email"): Rule(WEBHOOK),
    ("POST", "/api/v1/webhooks/telegram"): Rule(WEBHOOK),
    ("POST", "/api/v1/webhooks/slack/interactions"): Rule(WEBHOOK, note="Slack's buttons, signed as events"),
    # review reminders: a person's own chat addresses; an admin's organization policy
    ("GET", "/api/v1/me/channels"): Rule(SUPERVISOR, note="only the caller's own addresses"),
    ("POST", "/api/v1/me/channels"): Rule(SUPERVISOR, note="for the caller only; agents: 403"),
    ("DELETE", "/api/v1/me/channels"): Rule(SUPERVISOR, note="only the caller's own addresses"),
    ("PUT", "/api/v1/review-reminders"): Rule(ADMIN, note="the caller's organization"),
    ("PUT", "/api/v1/review-reminders/repository"): Rule(
        ADMIN, note="a repository of the caller's organization (another's: 404 by name)"
    ),
    # git smart HTTP: any token of the organization the repository is registered to
    ("GET", "/git/{path:path}"): Rule(ANY, scoped=True, note="another organization's repository: 404"),
    ("POST", "/git/{path:path}"): Rule(ANY, scoped=True, note="another organization's repository: 404"),
    # organizations: the operator only; repositories: each organization's
    ("GET", "/api/v1/organizations"): Rule(SUPERUSER),
    ("POST", "/api/v1/organizations"): Rule(SUPERUSER),
    ("POST", "/api/v1/organizations/{slug}/users"): Rule(SUPERUSER, note="in any organization, by slug"),
    ("GET", "/api/v1/channel-accounts"): Rule(ADMIN | SUPERUSER, note="an admin sees their own's"),
    ("POST", "/api/v1/channel-accounts"): Rule(SUPERUSER),
    ("DELETE", "/api/v1/channel-accounts/{account_id}"): Rule(SUPERUSER),
    ("PATCH", "/api/v1/channel-accounts/{account_id}"): Rule(
        ADMIN | SUPERUSER, scoped=True, note="an admin tunes their own's settings, the operator any"
    ),
    ("GET", "/api/v1/repositories"): Rule(ANY, note="lists only the caller's organization"),
    ("POST", "/api/v1/repositories"): Rule(ADMIN),
    ("DELETE", "/api/v1/repositories/{repository_id}"): Rule(ADMIN, scoped=True),
    # portal pages
    ("GET", "/login"): Rule(PUBLIC),
    ("POST", "/login"): Rule(PUBLIC),
    ("POST", "/logout"): Rule(PUBLIC),
    ("GET", "/portal/highlight.css"): Rule(PUBLIC),
    ("GET", "/"): Rule(SUPERVISOR, note="the board lists only the viewer's organization"),
    ("GET", "/tasks/{task_id}"): Rule(SUPERVISOR, scoped=True),
    ("GET", "/archive"): Rule(SUPERVISOR, note="closed tasks of the viewer's organization only"),
    ("GET", "/tasks/{task_id}/versions/{version}/files"): Rule(
        SUPERVISOR, scoped=True, note="one file of a large version; another organization's task: 404"
    ),
    ("GET", "/tasks/{task_id}/changes/file"): Rule(
        SUPERVISOR, scoped=True, note="one file of Files changed; another organization's task: 404"
    ),
    ("POST", "/tasks/{task_id}/messages"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/tasks/{task_id}/approve"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/tasks/{task_id}/request-changes"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/tasks/{task_id}/cancel"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/tasks/{task_id}/review"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/tasks/{task_id}/comments"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/tasks/{task_id}/comments/{comment_id}/resolve"): Rule(SUPERVISOR, scoped=True),
    ("GET", "/tasks/new"): Rule(
        SUPERVISOR, note="the New task form; repositories of the viewer's organization"
    ),
    ("POST", "/tasks"): Rule(SUPERVISOR, note="files a task in the viewer's organization"),
    ("POST", "/tasks/{task_id}/priority"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/tasks/{task_id}/assignee"): Rule(SUPERVISOR, scoped=True),
    ("POST", "/tasks/{task_id}/skills"): Rule(SUPERVISOR, scoped=True),
    ("GET", "/admin"): Rule(ADMIN),
    ("GET", "/admin/users"): Rule(ADMIN),
    ("POST", "/admin/users"): Rule(ADMIN),
    ("POST", "/admin/users/{user_id}/github"): Rule(ADMIN, scoped=True),
    ("POST", "/admin/users/{user_id}/role"): Rule(ADMIN, scoped=True),
    ("POST", "/admin/users/{user_id}/active"): Rule(ADMIN, scoped=True),
    ("POST", "/admin/users/{user_id}/password"): Rule(ADMIN, scoped=True, note="agents: 422"),
    ("POST", "/admin/users/{user_id}/skills"): Rule(ADMIN, scoped=True),
    ("GET", "/admin/integrations"): Rule(ADMIN, note="setting names and URLs, never a value"),
    ("GET", "/admin/tokens"): Rule(ADMIN),
    ("POST", "/admin/tokens"): Rule(ADMIN, scoped=True, note="the user is named in the form"),
    ("POST", "/admin/tokens/{token_id}/revoke"): Rule(ADMIN, scoped=True),
    ("GET", "/admin/audit"): Rule(ADMIN),
    # repositories (members see, admins change), channel accounts and organizations (the operator)
    ("GET", "/admin/repositories"): Rule(SUPERVISOR, note="lists only the viewer's organization"),
    ("POST", "/admin/repositories"): Rule(ADMIN),
    ("POST", "/admin/repositories/{repository_id}/delete"): Rule(ADMIN, scoped=True),
    ("GET", "/admin/channel-accounts"): Rule(ADMIN | SUPERUSER, note="an admin sees their own's"),
    ("POST", "/admin/channel-accounts"): Rule(SUPERUSER),
    ("POST", "/admin/channel-accounts/{account_id}/delete"): Rule(SUPERUSER),
    ("POST", "/admin/channel-accounts/{account_id}/settings"): Rule(
        ADMIN | SUPERUSER, scoped=True, note="an admin tunes their own's settings, the operator any"
    ),
    ("GET", "/operator/organizations"): Rule(SUPERUSER),
    ("POST", "/operator/organizations"): Rule(SUPERUSER),
    ("POST", "/operator/organizations/{slug}/admins"): Rule(SUPERUSER, note="in any organization, by slug"),
    # outbound webhook subscriptions (the rest of the family: PATTERN_RULES)
    ("PATCH", "/api/v1/webhooks/subscriptions/{subscription_id}"): Rule(ADMIN, scoped=True),
    ("POST", "/api/v1/webhooks/subscriptions/{subscription_id}/rotate-secret"): Rule(ADMIN, scoped=True),
    ("GET", "/admin/webhooks/{subscription_id}/edit"): Rule(ADMIN, scoped=True),
    ("POST", "/admin/webhooks/{subscription_id}/edit"): Rule(ADMIN, scoped=True),
    ("POST", "/admin/webhooks/{subscription_id}/disable"): Rule(ADMIN, scoped=True),
    ("POST", "/admin/webhooks/{subscription_id}/enable"): Rule(ADMIN, scoped=True),
    ("POST", "/admin/webhooks/{subscription_id}/rotate-secret"): Rule(ADMIN, scoped=True),
    # WebSockets: a portal session cookie, or any bearer token (agents included: live.py accepts
    # every token; the stream only ever carries the caller's organization)
    ("WS", "/ws/board"): Rule(ANY, note="agents' bearer tokens are accepted"),
    ("WS", "/ws/tasks/{task_id}"): Rule(ANY, scoped=True, note="agents' bearer tokens are accepted"),
}
# Families of routes by prefix, for endpoints that are being added: outbound webhook subscriptions
# and their delivery log are an admin's business, in their own organization only.
PATTERN_RULES: list[tuple[re.Pattern[str], Rule]] = [
    (re.compile(r"^\w+ /api/v1/webhooks/(subscriptions|deliveries)(/|$)"), Rule(ADMIN, scoped=True)),
    (re.compile(r"^\w+ /admin/webhooks(/|$)"), Rule(ADMIN, scoped=True)),
]

# MCP tools (from the server's list_tools): what osiris/mcp/service.py and the lifecycle allow.
MCP_RULES: dict[str, Rule] = {
    "read_pending_tasks": Rule(ANY, note="people see the whole queue; agents what routing allows"),
    "list_my_tasks": Rule(ANY),
    "get_task": Rule(ANY, scoped=True),
    "get_artifact": Rule(ANY, scoped=True),
    "read_feedback": Rule(ANY, scoped=True, note="a person's token reads with its own cursor"),
    "post_message": Rule(ANY, scoped=True, holder=True),
    "ask_requester": Rule(AGENT, scoped=True, holder=True, note="people are refused; an API task: 422"),
    "claim_task": Rule(AGENT, scoped=True, note="a person's token cannot act as an agent"),
    "submit_artifact": Rule(AGENT, scoped=True, holder=True, note="people are refused"),
    "release_task": Rule(HOLDER_OR_ADMIN, scoped=True, holder=True, note="or an admin"),
    # resource templates (from list_resource_templates), read with resources/read
    "osiris://tasks/{task_id}": Rule(ANY, scoped=True),
}


def rule_for(method: str, path: str) -> Rule | None:
    found = RULES.get((method, path)) or RULES.get(("*", path))
    if found is not None:
        return found
    return next((r for pattern, r in PATTERN_RULES if pattern.match(f"{method} {path}")), None)


def expected(rule: Rule, kind: str, role: str, org: str) -> set[str]:
    if rule.roles == WEBHOOK:
        return {"refused"}
    if role == "bystander":  # an agent of ours on a task another agent holds
        return {"forbidden"} if rule.holder else expected(rule, kind, "agent", org)
    if role in rule.roles:
        if role == "superuser":  # the operator's routes reach into every organization
            return {"allowed"}
        return {"hidden"} if org == "other" else {"allowed"}
    if role == "anonymous" or (kind == "portal" and role == "agent"):
        return {"unauthenticated"}
    # Refused for the role; another organization's resource may be looked up first (404): both
    # answers reveal nothing.
    return {"forbidden"} if org != "other" else {"forbidden", "hidden"}


# --- the route table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    kind: str  # rest | portal | ws
    method: str
    path: str
    rule: Rule

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def endpoints(app) -> tuple[list[Endpoint], list[str]]:
    """Every route of the app with its rule, and the routes that have none."""
    from osiris.portal.rendering import PortalRoute

    found, missing = [], []
    for ctx in iter_route_contexts(app.routes):
        route, path = ctx.original_route, ctx.path
        if isinstance(route, APIWebSocketRoute):
            kind, methods = "ws", ["WS"]
        elif isinstance(route, PortalRoute):
            kind, methods = "portal", sorted(set(ctx.methods or ()) - {"HEAD"})
        elif isinstance(route, APIRoute | Route):
            kind, methods = "rest", sorted(set(ctx.methods or ()) - {"HEAD"}) or ["*"]
        elif isinstance(route, Mount):
            kind, methods = "rest", ["GET"]
        else:
            missing.append(f"no rule for {type(route).__name__} {path}")
            continue
        for method in methods:
            rule = rule_for(method, path)
            if rule is None:
                missing.append(f"no rule for {method} {path}")
            else:
                found.append(Endpoint(kind, method, path, rule))
    return found, missing


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


# --- the world: two organizations, a fresh task per case ------------------------------------------


@dataclass
class Credentials:
    bearer: dict[str, str] = field(default_factory=dict)  # role → token
    cookie: dict[str, tuple[str, str]] = field(default_factory=dict)  # role → (session cookie, csrf)


@dataclass
class World:
    own_id: int
    other_id: int
    actors: dict[str, Actor]  # ours: agent, reviewer, admin; worker and bystander are two more agents
    other: dict[str, Any]  # the other organization's task, user, names
    creds: Credentials
    base_url: str
    settings: Any
    oauth_basic: str = ""  # an agent's OAuth client, as HTTP Basic credentials for /oauth/token


async def _make_task(
    session,
    org_id: int,
    *,
    title: str,
    holder: Actor,
    to_review: bool,
    max_bytes: int,
) -> Task:
    creator = Actor(org_id=org_id, user_id=None, name="matrix", role=None)
    task = await lifecycle.create_task(
        session, creator, title=title, description="d", repo="default", base_branch="main"
    )
    if not to_review:
        return task
    await lifecycle.claim_task(session, holder, task.id, lease_seconds=600)
    # a files artifact, so that one file of the version can be asked for by name
    artifact = validate_artifact({"notes.md": "notes for review"}, "files", max_bytes=max_bytes)
    await lifecycle.submit_artifact(session, holder, task.id, artifact=artifact)
    session.add(
        ChannelAttachment(
            org_id=org_id,
            task_id=task.id,
            filename="a.txt",
            content_type="text/plain",
            size_bytes=3,
            content=b"abc",
        )
    )
    await session.flush()
    return task


async def build_world(factory, live) -> World:
    own, other = await factory.org(), await factory.org("other")
    users = {}
    for role in ("agent", "reviewer", "admin", "worker", "bystander"):
        users[role] = await factory.user(
            role if role in ("agent", "reviewer", "admin") else "agent",
            org=own,
            password=PASSWORD if role in ("reviewer", "admin") else None,
        )
    other_users = {
        role: await factory.user(
            role,
            org=other,
            name=f"{LEAK}-{role}-{secrets.token_hex(3)}",
            password=None if role == "agent" else PASSWORD,
        )
        for role in ("agent", "admin")
    }
    actors = {role: actor_for(u) for role, u in users.items()}
    max_bytes = live.settings.tasks.max_artifact_bytes
    async with db.transaction(factory.runtime.sessions) as session:
        other_actor = actor_for(other_users["agent"])
        other_task = await _make_task(
            session,
            other.id,
            title=f"{LEAK} secret task",
            holder=other_actor,
            to_review=True,
            max_bytes=max_bytes,
        )
        await _make_task(
            session,
            other.id,
            title=f"{LEAK} pending",
            holder=other_actor,
            to_review=False,
            max_bytes=max_bytes,
        )
    creds = Credentials()
    creds.bearer["agent"] = await factory.token(users["agent"])
    creds.bearer["bystander"] = await factory.token(users["bystander"])
    creds.bearer["admin"] = await factory.token(users["admin"])
    async with db.transaction(factory.runtime.sessions) as session:
        operator = await accounts.create_user(
            session,
            org_id=own.id,
            username=_uniq("operator"),
            role=Role.ADMIN,
            password=PASSWORD,  # the operator's portal pages need a session too
            is_superuser=True,
        )
        # the repositories the git routes fetch: ours, and the other organization's
        await repositories.register_configured(session, names=["default"], github={})
        session.add(models.Repository(org_id=other.id, name=f"{LEAK}-repo"))
    creds.bearer["superuser"] = await factory.token(operator)
    users["superuser"] = operator
    creds.bearer["reviewer"] = security.issue_jwt(  # people's REST tokens are JWTs from /auth/token
        user_id=users["reviewer"].id,
        org_id=own.id,
        role="reviewer",
        key=live.settings.signing_key(),
        ttl_seconds=600,
    )
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as c:
        for role in ("anonymous", "reviewer", "admin", "superuser"):
            c.cookies.clear()
            page = await c.get("/login")
            if role != "anonymous":
                r = await c.post(
                    "/login",
                    data={
                        "username": users[role].username,
                        "password": PASSWORD,
                        "csrf_token": csrf_of(page.text),
                    },
                )
                assert r.status_code == 303, r.text
                page = await c.get("/")
            creds.cookie[role] = (c.cookies["osiris_session"], csrf_of(page.text))
        # agents cannot sign in to the portal
        c.cookies.clear()
        page = await c.get("/login")
        r = await c.post(
            "/login",
            data={
                "username": users["agent"].username,
                "password": PASSWORD,
                "csrf_token": csrf_of(page.text),
            },
        )
        assert r.status_code == 401, r.text
    return World(
        own_id=own.id,
        other_id=other.id,
        actors=actors,
        creds=creds,
        base_url=live.url,
        settings=live.settings,
        other={
            "task": other_task.id,
            "user": other_users["agent"],
        },
    )


@dataclass
class Case:
    endpoint: Endpoint
    role: str
    org: str  # own | other | "-" (nothing of an organization's in the request)
    params: dict[str, str] = field(default_factory=dict)
    task_id: int | None = None

    @property
    def label(self) -> str:
        return f"{self.endpoint.label} as {self.role} ({self.org})"


async def fresh_task(session, world: World, role: str, *, pending: bool, max_bytes: int) -> Task:
    """A task of our organization in the state the role would act on: PENDING to claim; held by the
    calling agent (v1 reviewed, changes requested); or in REVIEW with v1 (for people)."""
    if pending:
        return await _make_task(
            session,
            world.own_id,
            title="matrix pending",
            holder=world.actors["worker"],
            to_review=False,
            max_bytes=max_bytes,
        )
    holder = world.actors["agent" if role in ("agent", "bystander") else "worker"]
    task = await _make_task(
        session,
        world.own_id,
        title="matrix task",
        holder=holder,
        to_review=True,
        max_bytes=max_bytes,
    )
    if role in ("agent", "bystander"):
        await lifecycle.request_changes(
            session, world.actors["reviewer"], task.id, feedback="more", lease_seconds=600
        )
    return task


async def _token_id(session, user_id: int) -> str:
    user = await session.get(User, user_id)
    return str((await accounts.create_token(session, user=user, name="matrix")).token.id)


async def _subscription_id(session, world: World, org_id: int) -> int:
    host = "hooks" if org_id == world.own_id else LEAK
    sub = models.WebhookSubscription(
        org_id=org_id, url=f"https://{host}.example.test/osiris", secret="s" * 32, event_types=["*"]
    )
    session.add(sub)
    await session.flush()
    return sub.id


async def fill_params(session, world: World, case: Case, names: list[str], max_bytes: int) -> None:
    own = case.org != "other"
    org_id = world.own_id if own else world.other_id
    for name in names:
        if name == "task_id":
            if own:
                pending = case.endpoint.path.endswith("/claim") or case.endpoint.method == "MCP:claim_task"
                task = await fresh_task(session, world, case.role, pending=pending, max_bytes=max_bytes)
                case.task_id = task.id
            else:
                case.task_id = world.other["task"]
            case.params[name] = str(case.task_id)
        elif name == "version":
            case.params[name] = "1"
        elif name == "comment_id":
            comment = models.ReviewComment(
                org_id=org_id,
                task_id=int(case.params["task_id"]),
                author_name="matrix" if own else LEAK,
                version=1,
                head_sha="ab" * 20,
                path="notes.md",
                side="new",
                line=1,
                diff_hunk="@@ -0,0 +1 @@\n+notes",
                body="a note" if own else f"{LEAK} note",
            )
            session.add(comment)
            await session.flush()
            case.params[name] = str(comment.id)
        elif name == "attachment_id":
            task_id = int(case.params["task_id"])
            query = select(ChannelAttachment.id).where(ChannelAttachment.task_id == task_id)
            case.params[name] = str(await session.scalar(query))
        elif name == "user_id":
            case.params[name] = str(world.actors["worker"].user_id if own else world.other["user"].id)
        elif name == "client_id":
            user_id = world.actors["worker"].user_id if own else world.other["user"].id
            user = await session.get(User, user_id)
            case.params[name] = (
                await oauth.create_client(session, user=user, name="matrix")
            ).client.client_id
        elif name == "token_id":
            user_id = world.actors["worker"].user_id if own else world.other["user"].id
            case.params[name] = await _token_id(session, user_id)
        elif name == "path":
            repo = "default" if own else f"{LEAK}-repo"
            case.params[name] = (
                f"{repo}.git/info/refs" if case.endpoint.method == "GET" else f"{repo}.git/git-upload-pack"
            )
        elif name == "slug":
            case.params[name] = "other"  # the operator creates users in any organization
        elif name == "repository_id":
            repo = models.Repository(org_id=org_id, name=_uniq("repo" if own else LEAK))
            session.add(repo)
            await session.flush()
            case.params[name] = str(repo.id)
        elif name == "account_id":
            account = models.ChannelAccount(org_id=org_id, channel="slack", account=_uniq("T"))
            session.add(account)
            await session.flush()
            case.params[name] = str(account.id)
        elif name == "subscription_id":
            case.params[name] = str(await _subscription_id(session, world, org_id))
        elif name == "delivery_id":
            sub = await _subscription_id(session, world, org_id)
            event = await session.scalar(
                select(func.max(models.TaskEvent.id)).where(models.TaskEvent.org_id == org_id)
            )
            delivery = models.WebhookDelivery(
                org_id=org_id,
                subscription_id=sub,
                event_id=event,
                event_type="created",
                run="r1",
                attempt=1,
                url="https://hooks.example.test/osiris",
                ok=False,
                duration_ms=1,
            )
            session.add(delivery)
            await session.flush()
            case.params[name] = str(delivery.id)
        else:
            raise AssertionError(f"no way to fill {{{name}}} of {case.endpoint.label}: add it to fill_params")


# --- requests ------------------------------------------------------------------------------------


def _uniq(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _form(world: World, case: Case, **fields: Any) -> dict[str, Any]:
    csrf = world.creds.cookie.get(case.role, world.creds.cookie["anonymous"])[1]
    return {"data": {"csrf_token": csrf, **fields}}


# Request bodies and queries the OpenAPI minimum would not make meaningful.
Sample = Callable[[World, Case], dict[str, Any]]
SAMPLES: dict[tuple[str, str], Sample] = {
    ("POST", "/api/v1/auth/token"): lambda w, c: {
        "data": {"username": c.params["_login"], "password": PASSWORD}
    },
    ("POST", "/oauth/token"): lambda w, c: {
        "data": {"grant_type": "client_credentials", "resource": w.base_url + "/api/v1"},
        "headers": {"Authorization": "Basic " + w.oauth_basic},
    },
    ("POST", "/api/v1/oauth-clients"): lambda w, c: {
        "json": {"username": (w.other["user"].username if c.org == "other" else w.actors["worker"].name)}
    },
    ("POST", "/api/v1/tasks"): lambda w, c: {"json": {"title": "matrix filed"}},
    ("POST", "/api/v1/tasks/{task_id}/artifacts"): lambda w, c: {
        "json": {"content": "notes v2", "kind": "text"}
    },
    ("GET", "/api/v1/tasks/{task_id}/artifacts/diff"): lambda w, c: {"params": {"from": 1, "to": 1}},
    ("GET", "/tasks/{task_id}/versions/{version}/files"): lambda w, c: {"params": {"path": "notes.md"}},
    ("GET", "/tasks/{task_id}/changes/file"): lambda w, c: {"params": {"path": "notes.md"}},
    ("POST", "/api/v1/tasks/{task_id}/messages"): lambda w, c: {"json": {"body": "a question"}},
    ("POST", "/api/v1/tasks/{task_id}/reject"): lambda w, c: {"json": {"feedback": "change it"}},
    ("POST", "/api/v1/tasks/{task_id}/request-changes"): lambda w, c: {"json": {"feedback": "change it"}},
    ("PUT", "/api/v1/tasks/{task_id}/skills"): lambda w, c: {"json": {"skills": []}},
    ("PUT", "/api/v1/tasks/{task_id}/assignee"): lambda w, c: {"json": {"agent_id": None}},
    ("PUT", "/api/v1/tasks/{task_id}/priority"): lambda w, c: {"json": {"priority": "high"}},
    # on the worker (an agent): no change of role, and an agent has no password (422)
    ("PATCH", "/api/v1/users/{user_id}"): lambda w, c: {"json": {"role": "agent", "is_active": True}},
    ("POST", "/api/v1/users/{user_id}/password"): lambda w, c: {"json": {"password": PASSWORD}},
    ("POST", "/tasks"): lambda w, c: _form(w, c, title="matrix filed", priority="normal"),
    ("POST", "/tasks/{task_id}/priority"): lambda w, c: _form(w, c, priority="high"),
    ("POST", "/tasks/{task_id}/assignee"): lambda w, c: _form(w, c, agent_id=""),
    ("POST", "/tasks/{task_id}/skills"): lambda w, c: _form(w, c, skills=""),
    ("POST", "/admin/users/{user_id}/role"): lambda w, c: _form(w, c, role="agent"),
    ("POST", "/admin/users/{user_id}/active"): lambda w, c: _form(w, c, active="true"),
    ("POST", "/admin/users/{user_id}/password"): lambda w, c: _form(w, c, password=PASSWORD),
    ("POST", "/admin/users/{user_id}/skills"): lambda w, c: _form(w, c, skills="python"),
    ("POST", "/api/v1/users"): lambda w, c: {"json": {"username": _uniq("made"), "role": "agent"}},
    ("PUT", "/api/v1/users/{user_id}/skills"): lambda w, c: {"json": {"skills": ["python"]}},
    ("POST", "/api/v1/tokens"): lambda w, c: {
        "json": {
            "name": "t",
            "username": (w.other["user"].username if c.org == "other" else w.actors["worker"].name),
        }
    },
    ("POST", "/login"): lambda w, c: _form(w, c, username=c.params["_login"], password=PASSWORD),
    ("POST", "/logout"): lambda w, c: _form(w, c),
    ("POST", "/tasks/{task_id}/messages"): lambda w, c: _form(w, c, body="a question"),
    ("POST", "/tasks/{task_id}/approve"): lambda w, c: _form(w, c, version="1", head_sha="ab" * 20),
    ("POST", "/tasks/{task_id}/request-changes"): lambda w, c: _form(w, c, feedback="change it"),
    ("POST", "/tasks/{task_id}/cancel"): lambda w, c: _form(w, c),
    ("POST", "/tasks/{task_id}/review"): lambda w, c: _form(w, c, verdict="comment", body="a note"),
    ("POST", "/tasks/{task_id}/comments"): lambda w, c: _form(
        w, c, path="notes.md", line="1", side="new", body="a note", version="1", head_sha="ab" * 20
    ),
    ("POST", "/tasks/{task_id}/comments/{comment_id}/resolve"): lambda w, c: _form(w, c, resolved="1"),
    ("POST", "/api/v1/tasks/{task_id}/review-comments"): lambda w, c: {
        "json": {
            "path": "notes.md",
            "line": 1,
            "side": "new",
            "body": "a note",
            "version": 1,
            "head_sha": "ab" * 20,
        }
    },
    ("PATCH", "/api/v1/tasks/{task_id}/review-comments/{comment_id}"): lambda w, c: {
        "json": {"resolved": True}
    },
    ("POST", "/api/v1/tasks/{task_id}/reviews"): lambda w, c: {
        "json": {"verdict": "comment", "body": "a note"}
    },
    ("POST", "/admin/users"): lambda w, c: _form(
        w, c, username=_uniq("made"), role="reviewer", password=PASSWORD
    ),
    ("POST", "/admin/users/{user_id}/github"): lambda w, c: _form(w, c, github_login=_uniq("gh")),
    ("POST", "/admin/tokens"): lambda w, c: _form(
        w, c, name="t", user_id=str(w.other["user"].id if c.org == "other" else w.actors["worker"].user_id)
    ),
    ("POST", "/admin/tokens/{token_id}/revoke"): lambda w, c: _form(w, c),
    ("POST", "/admin/repositories"): lambda w, c: _form(w, c, name=_uniq("repo")),
    ("POST", "/admin/channel-accounts"): lambda w, c: _form(
        w, c, organization="other", channel="slack", account=_uniq("T")
    ),
    ("POST", "/operator/organizations"): lambda w, c: _form(w, c, slug=_uniq("org")),
    ("POST", "/operator/organizations/{slug}/admins"): lambda w, c: _form(
        w, c, admin_username=_uniq("made"), admin_password=PASSWORD
    ),
    ("POST", "/api/v1/organizations"): lambda w, c: {"json": {"slug": _uniq("org")}},
    ("POST", "/api/v1/organizations/{slug}/users"): lambda w, c: {
        "json": {"username": _uniq("made"), "role": "admin", "password": PASSWORD}
    },
    ("POST", "/api/v1/repositories"): lambda w, c: {"json": {"name": _uniq("repo")}},
    ("POST", "/api/v1/channel-accounts"): lambda w, c: {
        "json": {"organization": "other", "channel": "slack", "account": _uniq("T")}
    },
    ("PATCH", "/api/v1/channel-accounts/{account_id}"): lambda w, c: {
        "json": {"settings": {"allowed_senders": ["U1"], "priority_keywords": {"now": "urgent"}}}
    },
    ("POST", "/admin/channel-accounts/{account_id}/settings"): lambda w, c: _form(
        w, c, allowed_senders="U1", priority_keywords="now = urgent"
    ),
    ("POST", "/api/v1/webhooks/subscriptions"): lambda w, c: {
        "json": {"url": "https://hooks.example.test/osiris", "event_types": ["*"]}
    },
    ("POST", "/admin/webhooks"): lambda w, c: _form(
        w, c, url="https://hooks.example.test/osiris", event_types="*"
    ),
    ("PATCH", "/api/v1/webhooks/subscriptions/{subscription_id}"): lambda w, c: {
        "json": {"description": "matrix edit", "enabled": False}
    },
    ("POST", "/api/v1/webhooks/subscriptions/{subscription_id}/rotate-secret"): lambda w, c: {
        "json": {"grace_seconds": 60}
    },
    ("POST", "/admin/webhooks/{subscription_id}/edit"): lambda w, c: _form(
        w, c, url="https://hooks.example.test/edited", event_types="*"
    ),
    ("POST", "/admin/webhooks/{subscription_id}/disable"): lambda w, c: _form(w, c),
    ("POST", "/admin/webhooks/{subscription_id}/enable"): lambda w, c: _form(w, c),
    ("POST", "/admin/webhooks/{subscription_id}/rotate-secret"): lambda w, c: _form(w, c),
    ("GET", "/git/{path:path}"): lambda w, c: {"params": {"service": "git-upload-pack"}},
    ("POST", "/git/{path:path}"): lambda w, c: {
        "content": b"0000",
        "headers": {"Content-Type": "application/x-git-upload-pack-request"},
    },
    ("GET", "/static/portal"): lambda w, c: {"url": "/static/portal/portal.css"},
    ("GET", "/static/docs"): lambda w, c: {"url": "/static/docs/swagger-ui.css"},
    ("*", "/mcp"): lambda w, c: {
        "method": "POST",
        "json": MCP_REQUEST,
        "headers": {"Accept": "application/json, text/event-stream"},
    },
    ("*", "/.well-known/oauth-protected-resource/mcp"): lambda w, c: {"method": "GET"},
    # webhooks: what would file a task if it were signed
    ("POST", "/api/v1/webhooks/github"): lambda w, c: {
        "json": {
            "action": "opened",
            "issue": {"number": 1, "title": "fix", "body": "please", "user": {"login": "x"}},
            "repository": {"full_name": "acme/app"},
            "sender": {"login": "x"},
        },
        "headers": {"X-GitHub-Event": "issues", "X-GitHub-Delivery": _uniq("d")},
    },
    ("POST", "/api/v1/webhooks/twilio"): lambda w, c: {
        "data": {
            "From": "whatsapp:+15550001",
            "To": "whatsapp:+15550002",
            "Body": "please fix it",
            "MessageSid": _uniq("SM"),
            "AccountSid": "AC" + "0" * 32,
        }
    },
    ("POST", "/api/v1/webhooks/slack/events"): lambda w, c: {
        "json": {
            "type": "event_callback",
            "team_id": "T1",
            "event_id": _uniq("Ev"),
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": "please fix it",
                "channel": "C1",
                "ts": "1.2",
            },
        }
    },
    ("POST", "/api/v1/webhooks/slack/commands"): lambda w, c: {
        "data": {
            "command": "/osiris",
            "text": "please fix it",
            "user_id": "U1",
            "channel_id": "C1",
            "team_id": "T1",
        }
    },
    ("POST", "/api/v1/webhooks/email"): lambda w, c: {
        "content": (
            b"From: a@example.com\r\nTo: osiris@example.com\r\nSubject: fix\r\nMessage-ID: <"
            + _uniq("m").encode()
            + b"@x>\r\n\r\nplease fix it\r\n"
        ),
        "headers": {"Content-Type": "message/rfc822"},
    },
    ("POST", "/api/v1/webhooks/telegram"): lambda w, c: {
        "json": {
            "update_id": 1,
            "message": {"message_id": 1, "chat": {"id": 1, "type": "private"}, "text": "fix it"},
        }
    },
}


def _minimal(schema: dict, components: dict) -> Any:
    """The smallest value an OpenAPI schema accepts (for routes without a sample)."""
    if "$ref" in schema:
        return _minimal(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _minimal(options[0], components)
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _minimal(props[k], components) for k in schema.get("required", []) if k in props}
    if kind == "array":
        return [_minimal(schema.get("items", {}), components) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if schema.get("format") == "uri" or "url" in schema.get("title", "").lower():
        return "https://hooks.example.test/osiris"
    return "x" * max(1, schema.get("minLength", 1))


def openapi_body(openapi: dict, case: Case) -> dict[str, Any]:
    op = openapi.get("paths", {}).get(case.endpoint.path, {}).get(case.endpoint.method.lower())
    content = ((op or {}).get("requestBody") or {}).get("content", {})
    components = openapi.get("components", {}).get("schemas", {})
    if "application/json" in content:
        return {"json": _minimal(content["application/json"]["schema"], components)}
    if content:
        schema = next(iter(content.values()))["schema"]
        return {"data": _minimal(schema, components)}
    return {}


def headers_for(world: World, case: Case) -> dict[str, str]:
    role, kind = case.role, case.endpoint.kind
    if role == "anonymous":
        cookie = world.creds.cookie["anonymous"][0]
        return {"Cookie": f"osiris_session={cookie}"} if kind == "portal" else {}
    bearer = {"Authorization": f"Bearer {world.creds.bearer[role]}"}
    if kind == "portal":  # people with their session; an agent with its token beside a signed-out session
        cookie = world.creds.cookie.get(role, world.creds.cookie["anonymous"])[0]
        return {"Cookie": f"osiris_session={cookie}", **({} if role in world.creds.cookie else bearer)}
    return bearer


def classify_http(case: Case, response: httpx.Response) -> str:
    status = response.status_code
    if case.endpoint.rule.roles == WEBHOOK:
        return "refused" if status in (401, 403) else f"status {status}"
    if status >= 500:
        return f"status {status}"
    location = response.headers.get("location", "")
    if status == 401 or (status in (302, 303, 307) and location.startswith("/login?next=")):
        return "unauthenticated"
    if status == 403:
        return "forbidden"
    if status == 404:
        code = response.json().get("code") if "json" in response.headers.get("content-type", "") else None
        if case.org == "other" or code == "task_not_found" or case.endpoint.kind == "portal":
            return "hidden"
        return "allowed"  # a missing part of our own task: no such version, nothing published yet
    return "allowed"


async def run_http(world: World, cases: list[Case], openapi: dict) -> list[tuple[Case, str, httpx.Response]]:
    limit = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, case: Case) -> tuple[Case, str, httpx.Response]:
        ep = case.endpoint
        sample = SAMPLES.get((ep.method, ep.path)) or SAMPLES.get(("*", ep.path))
        if sample is None and ep.kind == "portal" and ep.method == "POST":
            sample = _form  # a form with only its CSRF token
        spec = sample(world, case) if sample else openapi_body(openapi, case)
        headers = {**headers_for(world, case), **spec.pop("headers", {})}
        path = spec.pop("url", None) or ep.path.replace("{path:path}", "{path}").format(**case.params)
        method = spec.pop("method", ep.method)
        request = httpx.Request(method, world.base_url + path, headers=headers, **spec)
        async with limit:
            response = await client.send(request)  # not client.request: no cookie jar between cases
        return case, classify_http(case, response), response

    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(*(one(client, c) for c in cases))


def mismatches(results: list[tuple[Case, str, Any]], kind_of: Callable[[Case], str]) -> list[str]:
    bad = []
    for case, outcome, detail in results:
        if os.environ.get("OSIRIS_MATRIX_PRINT"):  # the whole matrix, for reading it
            print(f"{case.label}: {outcome} ({getattr(detail, 'status_code', detail)})")
        want = expected(case.endpoint.rule, kind_of(case), case.role, case.org)
        if case.endpoint.kind == "ws":
            want = {"allowed"} if want == {"allowed"} else {"refused"}
        if outcome not in want:
            shown = (
                f"{detail.status_code} {detail.text[:160]!r}"
                if isinstance(detail, httpx.Response)
                else str(detail)[:200]
            )
            bad.append(f"{case.label}: expected {'/'.join(sorted(want))}, got {outcome} — {shown}")
    return bad


def leaks(results: list[tuple[Case, str, Any]]) -> list[str]:
    """No answer to anyone of our organization mentions anything of the other organization."""
    out = []
    for case, _outcome, detail in results:
        body = detail.text if isinstance(detail, httpx.Response) else str(detail)
        if LEAK in body.lower() and case.org != "other":
            out.append(f"{case.label} shows the other organization's data")
    return out


async def plan(factory, world: World, eps: list[Endpoint], *, kinds: set[str]) -> list[Case]:
    cases: list[Case] = []
    max_bytes = world.settings.tasks.max_artifact_bytes
    async with db.transaction(factory.runtime.sessions) as session:
        for ep in eps:
            if ep.kind not in kinds:
                continue
            names = re.findall(r"{(\w+)(?::\w+)?}", ep.path)
            sample_knows_org = (ep.method, ep.path) in {
                ("POST", "/api/v1/tokens"),
                ("POST", "/admin/tokens"),
                ("POST", "/api/v1/oauth-clients"),
            }
            orgs = ("own", "other") if ep.rule.scoped and (names or sample_knows_org) else ("-",)
            extra = (("bystander",) if ep.rule.holder else ()) + tuple(sorted(ep.rule.roles & SUPERUSER))
            for role in ROLES + extra:
                for org in orgs if role != "bystander" else ("own",):
                    case = Case(ep, role, org)
                    await fill_params(session, world, case, names, max_bytes)
                    if ep.path in ("/login", "/api/v1/auth/token") and ep.method == "POST":
                        # a fresh person per attempt: the login rate limit counts per user name
                        user = User(
                            org_id=world.own_id,
                            username=_uniq("login"),
                            role=Role.REVIEWER.value,
                            password_hash=security.hash_password(PASSWORD),
                        )
                        session.add(user)
                        await session.flush()
                        case.params["_login"] = user.username
                    cases.append(case)
    return cases


async def stored_rows(factory) -> dict[str, int]:
    tables = ("tasks", "messages", "task_events", "deliveries", "channel_attachments", "pgqueuer")
    async with factory.runtime.sessions() as session:
        return {t: await session.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables}  # noqa: S608


# --- the tests -----------------------------------------------------------------------------------


def test_every_route_and_rule_match(live_app):
    """A new endpoint without a rule fails here; so does a rule whose route is gone."""
    found, missing = endpoints(live_app.app)
    assert not missing, "\n".join(missing)
    routed = {(e.method, e.path) for e in found} | {("*", e.path) for e in found}
    stale = [f"{m} {p}" for m, p in RULES if (m, p) not in routed]
    assert not stale, f"rules for routes that no longer exist: {stale}"


@pytest.fixture
async def world(factory, live_app) -> World:
    world = await build_world(factory, live_app)
    async with db.transaction(factory.runtime.sessions) as session:
        agent = await session.get(User, world.actors["agent"].user_id)
        new = await oauth.create_client(session, user=agent, name="matrix")
    world.oauth_basic = base64.b64encode(f"{new.client.client_id}:{new.secret}".encode()).decode()
    return world


async def test_rest_and_portal_matrix(world, factory, live_app, record_property):
    eps, missing = endpoints(live_app.app)
    assert not missing, "\n".join(missing)
    openapi = (await asyncio.to_thread(httpx.get, live_app.url + "/openapi.json")).json()

    webhooks = [e for e in eps if e.rule.roles == WEBHOOK]
    others = [e for e in eps if e.rule.roles != WEBHOOK and e.kind in ("rest", "portal")]
    hook_cases = await plan(factory, world, webhooks, kinds={"rest"})
    before = await stored_rows(factory)
    hook_results = await run_http(world, hook_cases, openapi)
    after = await stored_rows(factory)
    assert before == after, f"an unsigned webhook stored something: {before} → {after}"

    cases = await plan(factory, world, others, kinds={"rest", "portal"})
    results = await run_http(world, cases, openapi)
    all_results = hook_results + results
    record_property("cases", len(all_results))
    bad = mismatches(all_results, lambda c: c.endpoint.kind) + leaks(all_results)
    assert not bad, f"{len(bad)} of {len(all_results)} cases differ from the rules:\n" + "\n".join(bad)


# --- MCP tools -------------------------------------------------------------------------------------


async def test_mcp_tool_matrix(world, factory, live_app, record_property):
    async with mcp_over_http(live_app.url, world.creds.bearer["agent"]) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        tools += [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
    missing = [f"no rule for MCP tool or resource {name}" for name in tools if name not in MCP_RULES]
    assert not missing, "\n".join(missing)
    stale = sorted(set(MCP_RULES) - set(tools))
    assert not stale, f"rules for tools that no longer exist: {stale}"

    eps = [Endpoint("mcp", f"MCP:{name}", name, MCP_RULES[name]) for name in tools]
    cases: list[Case] = []
    async with db.transaction(factory.runtime.sessions) as session:
        for ep in eps:
            for role in ("agent", "reviewer", "admin") + (("bystander",) if ep.rule.holder else ()):
                orgs = ("own", "other") if ep.rule.scoped else ("-",)
                for org in orgs if role != "bystander" else ("own",):
                    case = Case(ep, role, org)
                    if ep.rule.scoped:
                        await fill_params(
                            session, world, case, ["task_id"], world.settings.tasks.max_artifact_bytes
                        )
                    cases.append(case)

    args: dict[str, Callable[[Case], dict[str, Any]]] = {
        "submit_artifact": lambda c: {"task_id": c.task_id, "content": "notes v2", "kind": "text"},
        "post_message": lambda c: {"task_id": c.task_id, "body": "a question"},
        "ask_requester": lambda c: {"task_id": c.task_id, "question": "which one?"},
        "get_artifact": lambda c: {"task_id": c.task_id, "version": 1},
    }

    async def as_role(role: str) -> list[tuple[Case, str, str]]:
        out = []
        async with mcp_over_http(live_app.url, world.creds.bearer[role]) as client:
            for case in (c for c in cases if c.role == role):
                name = case.endpoint.path
                arguments = (
                    args[name](case)
                    if name in args
                    else ({"task_id": case.task_id} if case.task_id is not None else {})
                )
                if name.startswith("osiris://"):
                    try:
                        read = await client.read_resource(name.format(task_id=case.task_id))
                        code, result = None, read
                    except MCPError as exc:
                        code, result = str(exc).split(":", 1)[0].strip(), None
                    text_out = str(result)
                else:
                    result = await client.call_tool(name, arguments)
                    code = (
                        (result.structured_content or {}).get("error", {}).get("code")
                        if result.is_error
                        else None
                    )
                    text_out = " ".join(getattr(c, "text", "") for c in result.content)
                outcome = {
                    "unauthenticated": "unauthenticated",
                    "forbidden": "forbidden",
                    "not_your_task": "forbidden",
                    "task_not_found": "hidden",
                }.get(code or "", "allowed")
                if code in ("unavailable", "error"):
                    outcome = f"error {code}"
                out.append((case, outcome, f"{code or 'ok'}: {text_out}"))
        return out

    results = [
        r
        for batch in await asyncio.gather(*(as_role(r) for r in ("agent", "reviewer", "admin", "bystander")))
        for r in batch
    ]
    # Without a token, the transport refuses before any tool runs.
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(
            live_app.url + "/mcp",
            json=MCP_REQUEST,
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert r.status_code == 401, r.text
    record_property("cases", len(results) + 1)
    bad = mismatches(results, lambda c: "mcp") + leaks(results)
    assert not bad, f"{len(bad)} of {len(results)} MCP cases differ from the rules:\n" + "\n".join(bad)


# --- WebSockets ------------------------------------------------------------------------------------


async def test_websocket_matrix(world, factory, live_app, record_property):
    eps, _ = endpoints(live_app.app)
    cases = await plan(factory, world, [e for e in eps if e.kind == "ws"], kinds={"ws"})
    assert len(cases) >= 12
    other_tasks = {world.other["task"]}

    async def one(case: Case) -> tuple[Case, str, str]:
        headers = headers_for(world, case)
        if case.role in ("reviewer", "admin"):  # people come with the portal's cookie
            headers = {"Cookie": f"osiris_session={world.creds.cookie[case.role][0]}"}
        url = (
            world.base_url.replace("http://", "ws://") + case.endpoint.path.format(**case.params) + "?after=0"
        )
        try:
            async with ws_connect(url, additional_headers=headers, open_timeout=10) as ws:
                seen = []
                while (msg := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "ready":
                    seen.append(msg)
        except InvalidStatus as exc:
            return case, "refused", f"HTTP {exc.response.status_code}"
        foreign = [m for m in seen if m.get("task_id") in other_tasks]
        return (
            case,
            "allowed" if not foreign else "leaked",
            f"{len(seen)} events replayed, foreign {foreign[:2]}",
        )

    results = await asyncio.gather(*(one(c) for c in cases))
    record_property("cases", len(results))
    bad = mismatches(list(results), lambda c: "ws")
    assert not bad, "\n".join(bad)

    # Live, not replayed: the board streams our organization's new events and never the other's.
    forget_events(live_app.runtime)  # ids restart with every test's tables
    url = world.base_url.replace("http://", "ws://") + "/ws/board"
    headers = {"Authorization": f"Bearer {world.creds.bearer['agent']}"}
    async with ws_connect(url, additional_headers=headers, open_timeout=10) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
        async with db.transaction(factory.runtime.sessions) as session:
            theirs = await session.get(Task, world.other["task"])
            await record_event(session, theirs, world.actors["admin"], "matrix_probe")
        async with db.transaction(factory.runtime.sessions) as session:
            ours = (await session.scalars(select(Task).where(Task.org_id == world.own_id).limit(1))).one()
            await record_event(session, ours, world.actors["admin"], "matrix_probe")
        streamed = []
        while not streamed or streamed[-1].get("task_id") != ours.id:
            streamed.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    assert all(m.get("task_id") != theirs.id for m in streamed), streamed


# --- OAuth scopes ----------------------------------------------------------------------------------
# The scope column: every route and tool an agent may reach, with the scope an OAuth access token
# (client credentials grant, osiris/app/oauth.py) needs for it. None: no OAuth token may use it (an
# `osr_` API token can). Stated here independently of the server's own table; the tests check every
# route an agent reaches is listed, that a token lacking the scope is refused (403
# insufficient_scope) and that a token with only that scope gets what the agent's role gets.
API_SCOPES: dict[tuple[str, str], str | None] = {
    ("*", "/mcp"): "per tool",  # the transport: each tool's scope is in MCP_TOOL_SCOPES
    ("GET", "/api/v1/agent/me"): "tasks:read",
    ("GET", "/api/v1/repositories"): "tasks:read",
    ("POST", "/api/v1/tasks"): "tasks:create",
    ("GET", "/api/v1/tasks"): "tasks:read",
    ("GET", "/api/v1/tasks/pending"): "tasks:read",
    ("POST", "/api/v1/tasks/claim-next"): "tasks:claim",
    ("GET", "/api/v1/tasks/{task_id}"): "tasks:read",
    ("POST", "/api/v1/tasks/{task_id}/claim"): "tasks:claim",
    ("POST", "/api/v1/tasks/{task_id}/heartbeat"): "tasks:claim",
    ("POST", "/api/v1/tasks/{task_id}/release"): "tasks:claim",
    ("POST", "/api/v1/tasks/{task_id}/artifacts"): "tasks:submit",
    ("GET", "/api/v1/tasks/{task_id}/artifacts"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/artifacts/diff"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/artifacts/{version}"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/messages"): "tasks:read",
    ("POST", "/api/v1/tasks/{task_id}/messages"): "tasks:message",
    ("GET", "/api/v1/tasks/{task_id}/events"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/checks"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/change-request"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/changes"): "tasks:read",
    ("POST", "/api/v1/tasks/{task_id}/feedback/read"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/review-comments"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/attachments"): "tasks:read",
    ("GET", "/api/v1/tasks/{task_id}/attachments/{attachment_id}"): "tasks:read",
    ("GET", "/git/{path:path}"): "repos:read",
    ("POST", "/git/{path:path}"): "repos:read",
    ("WS", "/ws/board"): None,  # the portal's live board: an `osr_` token, never an OAuth one
    ("WS", "/ws/tasks/{task_id}"): None,
}
MCP_TOOL_SCOPES: dict[str, str] = {
    "read_pending_tasks": "tasks:read",
    "list_my_tasks": "tasks:read",
    "get_task": "tasks:read",
    "get_artifact": "tasks:read",
    "read_feedback": "tasks:read",
    "post_message": "tasks:message",
    "ask_requester": "tasks:message",
    "claim_task": "tasks:claim",
    "submit_artifact": "tasks:submit",
    "release_task": "tasks:claim",
    "osiris://tasks/{task_id}": "tasks:read",
}


def _agent_reachable(ep: Endpoint) -> bool:
    return "agent" in ep.rule.roles and ep.rule.roles != PUBLIC


def test_every_agent_route_and_tool_states_its_scope(live_app):
    found, _ = endpoints(live_app.app)
    reachable = {(e.method, e.path) for e in found if _agent_reachable(e)}
    keyed = {("*", p) if ("*", p) in API_SCOPES else (m, p) for m, p in reachable}
    missing = sorted(f"{m} {p}" for m, p in keyed - set(API_SCOPES))
    assert not missing, f"agent-reachable routes without a scope: {missing}"
    stale = sorted(f"{m} {p}" for m, p in set(API_SCOPES) - keyed)
    assert not stale, f"scopes for routes agents no longer reach: {stale}"
    assert set(MCP_TOOL_SCOPES) == set(MCP_RULES)
    known = set(oauth.SCOPES) | {None, "per tool"}
    assert set(API_SCOPES.values()) <= known and set(MCP_TOOL_SCOPES.values()) <= set(oauth.SCOPES)


async def _oauth_tokens(factory, world: World, audience: str) -> Callable[[frozenset[str]], Any]:
    """Access tokens of our agent for `audience`, one per scope set asked for (cached)."""
    async with db.transaction(factory.runtime.sessions) as session:
        agent = await session.get(User, world.actors["agent"].user_id)
        client = (
            await oauth.create_client(session, user=agent, name="scopes", scopes=oauth.ALL_SCOPES)
        ).client
    made: dict[frozenset[str], str] = {}

    async def token(scopes: frozenset[str]) -> str:
        if scopes not in made:
            async with db.transaction(factory.runtime.sessions) as session:
                user = await session.get(User, agent.id)
                row = await session.get(models.OAuthClient, client.id)
                issued = await oauth.issue_token(
                    session,
                    row,
                    user,
                    scope=" ".join(sorted(scopes)),
                    resources=[audience],
                    public_url=world.base_url,
                    ttl_seconds=600,
                )
            made[scopes] = issued.access_token
        return made[scopes]

    return token


async def test_rest_scope_matrix(world, factory, live_app, record_property):
    """For each agent route: a token with every scope but the one it needs is refused (403); a
    token with that scope alone gets the agent's outcome; a route no scope opens refuses them all."""
    eps, _ = endpoints(live_app.app)
    openapi = (await asyncio.to_thread(httpx.get, live_app.url + "/openapi.json")).json()
    rest_eps = [e for e in eps if _agent_reachable(e) and e.kind == "rest" and e.path != "/mcp"]
    token = await _oauth_tokens(factory, world, world.base_url + "/api/v1")
    everything = frozenset(oauth.SCOPES)
    results: list[tuple[Case, str, Any]] = []
    for variant in ("lacking", "only"):
        cases: list[Case] = []
        async with db.transaction(factory.runtime.sessions) as session:
            for ep in rest_eps:
                case = Case(ep, "agent", "own" if ep.rule.scoped else "-")
                names = re.findall(r"{(\w+)(?::\w+)?}", ep.path)
                await fill_params(session, world, case, names, world.settings.tasks.max_artifact_bytes)
                cases.append(case)
        for case in cases:
            needed = API_SCOPES[(case.endpoint.method, case.endpoint.path)]
            scopes = everything - {needed} if variant == "lacking" else frozenset({needed})
            world.creds.bearer[f"oauth-{case.endpoint.label}"] = await token(scopes)
        for case in cases:
            case.role = f"oauth-{case.endpoint.label}"  # headers_for takes the bearer of that name
        for case, outcome, response in await run_http(world, cases, openapi):
            case.role = "agent"
            needed = API_SCOPES[(case.endpoint.method, case.endpoint.path)]
            if variant == "lacking":
                refused = response.status_code == 403 and (
                    "insufficient_scope" in response.text or case.endpoint.path.startswith("/git/")
                )
                results.append((case, "refused" if refused else outcome, response))
            else:
                results.append((case, outcome, response))
            if variant == "lacking" and not (response.status_code == 403 and needed in response.text):
                results[-1] = (case, f"not refused for lacking {needed}", response)
    record_property("cases", len(results))
    bad = []
    for case, outcome, response in results:
        lacking = "refused" if outcome == "refused" or outcome.startswith("not refused") else None
        if lacking is not None:
            if outcome != "refused":
                bad.append(f"{case.label}: {outcome} — {response.status_code} {response.text[:160]!r}")
            continue
        want = expected(case.endpoint.rule, "rest", "agent", case.org)
        if outcome not in want:
            bad.append(
                f"{case.label} with its scope alone: expected {want}, got {outcome} — {response.text[:160]!r}"
            )
    assert not bad, "\n".join(bad)


async def test_websockets_refuse_oauth_tokens(world, factory):
    token = await (await _oauth_tokens(factory, world, world.base_url + "/api/v1"))(frozenset(oauth.SCOPES))
    url = world.base_url.replace("http://", "ws://") + "/ws/board?after=0"
    with pytest.raises(InvalidStatus):
        async with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10):
            pass


async def test_mcp_scope_matrix(world, factory, live_app, record_property):
    """Each tool: refused (insufficient_scope) without its scope, the agent's outcome with it alone."""
    token = await _oauth_tokens(factory, world, world.base_url + "/mcp")
    everything = frozenset(oauth.SCOPES)
    args: dict[str, Callable[[int], dict[str, Any]]] = {
        "submit_artifact": lambda t: {"task_id": t, "content": "notes v2", "kind": "text"},
        "post_message": lambda t: {"task_id": t, "body": "a question"},
        "ask_requester": lambda t: {"task_id": t, "question": "which one?"},
        "get_artifact": lambda t: {"task_id": t, "version": 1},
    }
    bad, count = [], 0
    for name, needed in MCP_TOOL_SCOPES.items():
        for variant, scopes in (("lacking", everything - {needed}), ("only", frozenset({needed}))):
            async with db.transaction(factory.runtime.sessions) as session:
                case = Case(Endpoint("mcp", f"MCP:{name}", name, MCP_RULES[name]), "agent", "own")
                await fill_params(session, world, case, ["task_id"], world.settings.tasks.max_artifact_bytes)
            task_id = case.task_id
            assert task_id is not None
            async with mcp_over_http(live_app.url, await token(scopes)) as client:
                if name.startswith("osiris://"):
                    try:
                        await client.read_resource(name.format(task_id=task_id))
                        code = None
                    except MCPError as exc:
                        code = str(exc).split(":", 1)[0].strip()
                else:
                    arguments = args[name](task_id) if name in args else {"task_id": task_id}
                    if name in ("read_pending_tasks", "list_my_tasks"):
                        arguments = {}
                    result = await client.call_tool(name, arguments)
                    code = (
                        (result.structured_content or {}).get("error", {}).get("code")
                        if result.is_error
                        else None
                    )
            count += 1
            if variant == "lacking" and code != "insufficient_scope":
                bad.append(f"{name} without {needed}: expected insufficient_scope, got {code or 'ok'}")
            # with its scope alone, nothing about who is asking may refuse it (an API task's
            # ask_requester is 422: no chat to ask in)
            if variant == "only" and code in ("insufficient_scope", "unauthenticated", "forbidden"):
                bad.append(f"{name} with {needed} alone: expected the agent's outcome, got {code}")
    record_property("cases", count)
    assert not bad, "\n".join(bad)
