"""Administration of organizations: each organization's repositories, the channel accounts that route
chat messages to it, and the operator's list of organizations with their first admins.

Who may do what is REST's rule (api/organizations.py) and every change goes through the same service
functions: any member lists repositories, an admin adds and removes them; an admin lists their
organization's channel accounts and edits their settings, the operator (a superuser) all of them and
maps or unmaps them; the operator alone lists and creates organizations. Every change is a CSRF-checked
POST.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import Response

from osiris.app import accounts, db, organizations, repositories
from osiris.app.errors import InvalidInput
from osiris.app.models import ChannelAccount, Role
from osiris.app.schemas import ChannelAccountSettings, valid_username
from osiris.portal.access import AdminDep, FormDep, SuperuserDep, ViewerDep, runtime_of, text_field
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

# The channel select: the service's own list; the label says which provider carries it.
CHANNEL_LABELS = {"whatsapp": "WhatsApp (Twilio number)", "slack": "Slack (team id)"}


# --- repositories --------------------------------------------------------------------------------


@router.get("/admin/repositories")
async def repositories_page(request: Request, viewer: ViewerDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        repos = await repositories.list_repositories(session, viewer.actor)
    github = runtime_of(request).settings.github.enabled
    return render(request, "admin/repositories.html", {"repositories": repos, "github": github})


@router.post("/admin/repositories")
async def create_repository(request: Request, viewer: AdminDep, form: FormDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        repo = await repositories.create_repository(
            session,
            org_id=viewer.actor.org_id,
            name=text_field(form, "name"),
            github_repo=text_field(form, "github_repo") or None,
        )
    published = f", published to GitHub {repo.github_repo}" if repo.github_repo else ""
    viewer.session.flash("ok", f"Repository {repo.name} registered{published}.")
    return redirect("/admin/repositories")


@router.post("/admin/repositories/{repository_id}/delete")
async def delete_repository(
    request: Request, repository_id: int, viewer: AdminDep, form: FormDep
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        repo = await repositories.delete_repository(session, viewer.actor, repository_id)
    viewer.session.flash("ok", f"Repository {repo.name} unregistered (its tasks and git data stay).")
    return redirect("/admin/repositories")


# --- channel accounts ----------------------------------------------------------------------------


@router.get("/admin/channel-accounts")
async def channel_accounts_page(request: Request, viewer: AdminDep) -> Response:
    operator = viewer.actor.superuser
    async with db.transaction(runtime_of(request).sessions) as session:
        rows = await organizations.list_channel_accounts(
            session, org_id=None if operator else viewer.actor.org_id
        )
        orgs = await organizations.list_organizations(session) if operator else []
    context = {
        "accounts": rows,
        "settings_form": {a.id: _settings_form(a) for a in rows},
        "operator": operator,
        "organizations": orgs,
        "org_slugs": {o.id: o.slug for o in orgs},
        "channels": [(c, CHANNEL_LABELS.get(c, c)) for c in organizations.CHANNELS],
    }
    return render(request, "admin/channel_accounts.html", context)


@router.post("/admin/channel-accounts")
async def add_channel_account(request: Request, viewer: SuperuserDep, form: FormDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        org = await organizations.organization_by_slug(session, text_field(form, "organization"))
        row = await organizations.add_channel_account(
            session, org_id=org.id, channel=text_field(form, "channel"), account=text_field(form, "account")
        )
    viewer.session.flash("ok", f"{row.channel} account {row.account} now routes to {org.slug}.")
    return redirect("/admin/channel-accounts")


def _settings_form(account: ChannelAccount) -> dict[str, str]:
    """An account's settings as the edit form shows them: a sender per line, `word = value` lines."""
    own = account.settings or {}
    return {
        "allowed_senders": "\n".join(own.get("allowed_senders") or []),
        "repo": own.get("repo") or "",
        "priority_keywords": "\n".join(f"{w} = {p}" for w, p in (own.get("priority_keywords") or {}).items()),
        "skill_keywords": "\n".join(f"{w} = {k}" for w, k in (own.get("skill_keywords") or {}).items()),
    }


def _pairs(text: str, field: str) -> dict[str, str] | None:
    pairs = {}
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        word, sep, value = line.partition("=")
        if not sep:
            raise InvalidInput(f"{field}: one 'word = value' a line ({line!r} has no '=')")
        pairs[word.strip()] = value.strip()
    return pairs or None


def _settings_from_form(form: FormData) -> ChannelAccountSettings:
    """The edit form's fields, checked by the same model as REST's body; an empty field is unset."""
    senders = [s.strip() for s in text_field(form, "allowed_senders").replace(",", "\n").splitlines()]
    data: dict[str, Any] = {
        "allowed_senders": [s for s in senders if s] or None,
        "repo": text_field(form, "repo").strip() or None,
        "priority_keywords": _pairs(text_field(form, "priority_keywords"), "priority keywords"),
        "skill_keywords": _pairs(text_field(form, "skill_keywords"), "skill keywords"),
    }
    try:
        return ChannelAccountSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(problems) from None


@router.post("/admin/channel-accounts/{account_id}/settings")
async def update_channel_account(
    request: Request, account_id: int, viewer: AdminDep, form: FormDep
) -> Response:
    settings = _settings_from_form(form)
    async with db.transaction(runtime_of(request).sessions) as session:
        row = await organizations.update_channel_account_settings(session, viewer.actor, account_id, settings)
    viewer.session.flash("ok", f"Settings of {row.channel} account {row.account} saved.")
    return redirect("/admin/channel-accounts")


@router.post("/admin/channel-accounts/{account_id}/delete")
async def remove_channel_account(
    request: Request, account_id: int, viewer: SuperuserDep, form: FormDep
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        row = await organizations.remove_channel_account(session, account_id)
    viewer.session.flash("ok", f"{row.channel} account {row.account} unmapped.")
    return redirect("/admin/channel-accounts")


# --- organizations (the operator) ----------------------------------------------------------------


def _first_admin(form: FormData) -> tuple[str, str] | None:
    """The optional first admin of the form: a user name and a password, both or neither."""
    username = text_field(form, "admin_username")
    password = text_field(form, "admin_password")
    if not username and not password:
        return None
    valid_username(username)  # the core's rule, as REST and the CLI
    if len(password) < 8:
        raise InvalidInput("an admin signs in to the portal: give a password of 8 characters or more")
    return username, password


@router.get("/operator/organizations")
async def organizations_page(request: Request, viewer: SuperuserDep) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        orgs = await organizations.list_organizations(session)
    return render(request, "admin/organizations.html", {"organizations": orgs})


@router.post("/operator/organizations")
async def create_organization(request: Request, viewer: SuperuserDep, form: FormDep) -> Response:
    admin = _first_admin(form)
    async with db.transaction(runtime_of(request).sessions) as session:  # both or neither
        org = await organizations.create_organization(
            session, slug=text_field(form, "slug"), name=text_field(form, "name") or None
        )
        if admin is not None:
            await accounts.create_user(
                session, org_id=org.id, username=admin[0], role=Role.ADMIN, password=admin[1]
            )
    with_admin = f" with its admin {admin[0]}" if admin else ""
    viewer.session.flash("ok", f"Organization {org.slug} created{with_admin}.")
    return redirect("/operator/organizations")


@router.post("/operator/organizations/{slug}/admins")
async def create_organization_admin(
    request: Request, slug: str, viewer: SuperuserDep, form: FormDep
) -> Response:
    admin = _first_admin(form)
    if admin is None:
        raise InvalidInput("give the new admin a user name and a password")
    async with db.transaction(runtime_of(request).sessions) as session:
        org = await organizations.organization_by_slug(session, slug)
        await accounts.create_user(
            session, org_id=org.id, username=admin[0], role=Role.ADMIN, password=admin[1]
        )
    viewer.session.flash("ok", f"{admin[0]} is now an admin of {org.slug}.")
    return redirect("/operator/organizations")
