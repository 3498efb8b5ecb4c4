"""The portal's organization pages over HTTP (ASGI): repositories (members see, admins change),
channel accounts (admins see their own, the operator all and changes them), organizations (the
operator only). Every change is a CSRF-checked POST that writes nothing without its token, and
nothing of another organization's is shown or changed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy import func, select

from osiris.app import accounts, db, security
from osiris.app.models import ChannelAccount, Organization, Repository, Role, User
from tests.support.portal_helpers import PASSWORD, csrf_of, sign_in

pytestmark = pytest.mark.asyncio
REPO_DELETE = re.compile(r'action="/admin/repositories/(\d+)/delete"')
ACCOUNT_DELETE = re.compile(r'action="/admin/channel-accounts/(\d+)/delete"')

Browser = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]


@pytest.fixture
async def browser(app, factory) -> AsyncIterator[Browser]:
    """A signed-in browser of its own per person, so that two organizations can act side by side."""
    clients: list[httpx.AsyncClient] = []

    async def open_as(role: str = "admin", *, org=None, superuser: bool = False):
        org = org or await factory.org()
        async with db.transaction(factory.runtime.sessions) as s:
            user = await accounts.create_user(
                s,
                org_id=org.id,
                username=f"{role}-{len(clients)}-{org.slug}",
                role=Role(role),
                password=PASSWORD,
                is_superuser=superuser,
            )
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        clients.append(c)
        r = await sign_in(c, user.username)
        assert r.status_code == 303, r.text
        return c, user

    yield open_as
    for c in clients:
        await c.aclose()


async def _count(runtime, model, *where) -> int:
    async with runtime.sessions() as s:
        return await s.scalar(select(func.count()).select_from(model).where(*where))


# --- repositories --------------------------------------------------------------------------------


async def test_admin_adds_and_deletes_repositories(browser, runtime):
    admin, user = await browser("admin")
    page = await admin.get("/admin/repositories")
    assert page.status_code == 200 and 'action="/admin/repositories"' in page.text
    assert page.headers["cache-control"] == "no-store"
    token = csrf_of(page.text)

    r = await admin.post("/admin/repositories", data={"name": "portal-web", "github_repo": "acme/web"})
    assert r.status_code == 403  # no CSRF token
    assert await _count(runtime, Repository, Repository.name == "portal-web") == 0

    r = await admin.post(
        "/admin/repositories", data={"csrf_token": token, "name": "portal-web", "github_repo": "acme/web"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/repositories"
    async with runtime.sessions() as s:
        repo = await s.scalar(select(Repository).where(Repository.name == "portal-web"))
    assert repo is not None and repo.org_id == user.org_id and repo.github_repo == "acme/web"
    listing = await admin.get("/admin/repositories")
    assert "portal-web" in listing.text and "acme/web" in listing.text
    assert "Repository portal-web registered" in listing.text  # the flash, once
    assert "Repository portal-web registered" not in (await admin.get("/admin/repositories")).text

    # the service's rules, not the page's: a taken name is a 409, a bad one a 422
    r = await admin.post("/admin/repositories", data={"csrf_token": token, "name": "portal-web"})
    assert r.status_code == 409
    r = await admin.post("/admin/repositories", data={"csrf_token": token, "name": "../etc"})
    assert r.status_code == 422

    r = await admin.post(f"/admin/repositories/{repo.id}/delete", data={})
    assert r.status_code == 403
    assert await _count(runtime, Repository, Repository.id == repo.id) == 1
    r = await admin.post(f"/admin/repositories/{repo.id}/delete", data={"csrf_token": token})
    assert r.status_code == 303
    assert await _count(runtime, Repository, Repository.id == repo.id) == 0
    assert "portal-web" not in (await admin.get("/admin/repositories")).text.split("</h1>", 1)[1]


async def test_reviewers_see_repositories_but_cannot_change_them(browser, runtime, factory):
    admin, _ = await browser("admin")
    token = csrf_of((await admin.get("/admin/repositories")).text)
    await admin.post("/admin/repositories", data={"csrf_token": token, "name": "seen-by-reviewers"})
    repo_id = REPO_DELETE.search((await admin.get("/admin/repositories")).text).group(1)

    reviewer, _ = await browser("reviewer")
    page = await reviewer.get("/admin/repositories")
    assert page.status_code == 200 and "seen-by-reviewers" in page.text
    assert 'action="/admin/repositories"' not in page.text and not REPO_DELETE.search(page.text)
    assert 'href="/admin/users"' not in page.text  # the admin-only pages are not offered
    token = csrf_of(page.text)
    r = await reviewer.post("/admin/repositories", data={"csrf_token": token, "name": "by-reviewer"})
    assert r.status_code == 403
    r = await reviewer.post(f"/admin/repositories/{repo_id}/delete", data={"csrf_token": token})
    assert r.status_code == 403
    assert await _count(runtime, Repository, Repository.name == "by-reviewer") == 0
    assert await _count(runtime, Repository, Repository.id == int(repo_id)) == 1


async def test_another_organizations_repositories_are_hidden(browser, runtime, factory):
    alpha, _ = await browser("admin")
    token = csrf_of((await alpha.get("/admin/repositories")).text)
    await alpha.post("/admin/repositories", data={"csrf_token": token, "name": "alpha-secret"})
    repo_id = REPO_DELETE.search((await alpha.get("/admin/repositories")).text).group(1)

    beta, _ = await browser("admin", org=await factory.org("beta"))
    page = await beta.get("/admin/repositories")
    assert page.status_code == 200 and "alpha-secret" not in page.text
    r = await beta.post(f"/admin/repositories/{repo_id}/delete", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 404 and "alpha-secret" not in r.text
    assert await _count(runtime, Repository, Repository.id == int(repo_id)) == 1
    # and the name is the deployment's: beta cannot take it either
    r = await beta.post(
        "/admin/repositories", data={"csrf_token": csrf_of(page.text), "name": "alpha-secret"}
    )
    assert r.status_code == 409
    assert await _count(runtime, Repository, Repository.name == "alpha-secret") == 1


# --- channel accounts ----------------------------------------------------------------------------


async def test_operator_maps_and_unmaps_channel_accounts(browser, runtime, factory):
    beta = await factory.org("beta")
    operator, _ = await browser("admin", superuser=True)
    page = await operator.get("/admin/channel-accounts")
    assert page.status_code == 200 and 'action="/admin/channel-accounts"' in page.text
    for channel in ("whatsapp", "slack", "email", "github", "telegram"):
        assert f'<option value="{channel}">' in page.text
    assert '<option value="beta">' in page.text
    token = csrf_of(page.text)
    form = {"organization": "beta", "channel": "whatsapp", "account": "whatsapp:+1 555 0109"}

    r = await operator.post("/admin/channel-accounts", data=form)
    assert r.status_code == 403
    assert await _count(runtime, ChannelAccount) == 0

    r = await operator.post("/admin/channel-accounts", data={"csrf_token": token, **form})
    assert r.status_code == 303
    async with runtime.sessions() as s:
        row = await s.scalar(select(ChannelAccount))
    assert (row.org_id, row.channel, row.account) == (beta.id, "whatsapp", "+15550109")  # normalized
    listing = (await operator.get("/admin/channel-accounts")).text
    assert "+15550109" in listing and "<td>beta</td>" in listing  # the organization column

    r = await operator.post("/admin/channel-accounts", data={"csrf_token": token, **form})
    assert r.status_code == 409  # already mapped
    r = await operator.post("/admin/channel-accounts", data={"csrf_token": token, **form, "channel": "fax"})
    assert r.status_code == 422
    r = await operator.post(
        "/admin/channel-accounts", data={"csrf_token": token, **form, "organization": "nowhere"}
    )
    assert r.status_code == 404
    assert await _count(runtime, ChannelAccount) == 1

    r = await operator.post(f"/admin/channel-accounts/{row.id}/delete", data={})
    assert r.status_code == 403 and await _count(runtime, ChannelAccount) == 1
    r = await operator.post(f"/admin/channel-accounts/{row.id}/delete", data={"csrf_token": token})
    assert r.status_code == 303 and await _count(runtime, ChannelAccount) == 0


async def test_admins_see_only_their_own_channel_accounts_and_change_none(browser, runtime, factory):
    alpha_org, beta_org = await factory.org(), await factory.org("beta")
    async with db.transaction(runtime.sessions) as s:
        mine = ChannelAccount(org_id=beta_org.id, channel="slack", account="T0BETA")
        theirs = ChannelAccount(org_id=alpha_org.id, channel="slack", account="T0ALPHA")
        s.add_all([mine, theirs])
    beta, _ = await browser("admin", org=beta_org)
    page = await beta.get("/admin/channel-accounts")
    assert page.status_code == 200 and "T0BETA" in page.text and "T0ALPHA" not in page.text
    assert 'action="/admin/channel-accounts"' not in page.text and not ACCOUNT_DELETE.search(page.text)
    assert "/operator/organizations" not in page.text  # the operator's page is not offered
    token = csrf_of(page.text)
    for account_id in (mine.id, theirs.id):  # mapping is the operator's, even for their own
        r = await beta.post(f"/admin/channel-accounts/{account_id}/delete", data={"csrf_token": token})
        assert r.status_code == 403 and "T0ALPHA" not in r.text
    r = await beta.post(
        "/admin/channel-accounts",
        data={"csrf_token": token, "organization": "beta", "channel": "slack", "account": "T0NEW"},
    )
    assert r.status_code == 403
    assert await _count(runtime, ChannelAccount) == 2

    reviewer, _ = await browser("reviewer", org=beta_org)
    assert (await reviewer.get("/admin/channel-accounts")).status_code == 403


# --- organizations (the operator) ----------------------------------------------------------------


async def test_operator_creates_an_organization_and_its_first_admin(browser, runtime, app):
    operator, _ = await browser("admin", superuser=True)
    page = await operator.get("/operator/organizations")
    assert page.status_code == 200 and 'href="/operator/organizations"' in page.text
    token = csrf_of(page.text)
    secret = "gamma-admin-password-7"
    form = {
        "slug": "gamma",
        "name": "<b>Gamma</b> Ltd",
        "admin_username": "gamma-admin",
        "admin_password": secret,
    }

    r = await operator.post("/operator/organizations", data=form)
    assert r.status_code == 403
    assert await _count(runtime, Organization, Organization.slug == "gamma") == 0

    r = await operator.post("/operator/organizations", data={"csrf_token": token, **form})
    assert r.status_code == 303 and r.headers["location"] == "/operator/organizations"
    async with runtime.sessions() as s:
        org = await s.scalar(select(Organization).where(Organization.slug == "gamma"))
        admin = await s.scalar(select(User).where(User.username == "gamma-admin"))
    assert org is not None and org.name == "<b>Gamma</b> Ltd"
    assert admin.org_id == org.id and admin.role == "admin" and not admin.is_superuser
    assert security.verify_password(secret, admin.password_hash)
    listing = await operator.get("/operator/organizations")
    assert "&lt;b&gt;Gamma&lt;/b&gt; Ltd" in listing.text and "<b>Gamma</b>" not in listing.text
    assert "gamma-admin" in listing.text  # the flash names the admin…
    assert secret not in r.text + listing.text  # …never the password

    # the new admin signs in to their own, empty organization
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await sign_in(c, "gamma-admin", secret)).status_code == 303
        assert "No repositories registered yet" in (await c.get("/admin/repositories")).text

    # both or neither: a taken admin name leaves no organization behind
    r = await operator.post(
        "/operator/organizations", data={"csrf_token": token, **form, "slug": "delta", "name": ""}
    )
    assert r.status_code == 409
    assert await _count(runtime, Organization, Organization.slug == "delta") == 0
    r = await operator.post(
        "/operator/organizations",
        data={"csrf_token": token, "slug": "delta", "admin_username": "d", "admin_password": "short"},
    )
    assert r.status_code == 422 and "short" not in r.text
    r = await operator.post("/operator/organizations", data={"csrf_token": token, "slug": "gamma"})
    assert r.status_code == 409
    r = await operator.post("/operator/organizations", data={"csrf_token": token, "slug": "Bad Slug!"})
    assert r.status_code == 422
    r = await operator.post("/operator/organizations", data={"csrf_token": token, "slug": "delta"})
    assert r.status_code == 303  # without a first admin: added later, below
    assert await _count(runtime, User, User.org_id == org.id) == 1

    r = await operator.post(
        "/operator/organizations/delta/admins",
        data={"csrf_token": token, "admin_username": "delta-admin", "admin_password": secret},
    )
    assert r.status_code == 303
    async with runtime.sessions() as s:
        delta_admin = await s.scalar(select(User).where(User.username == "delta-admin"))
        delta = await s.scalar(select(Organization).where(Organization.slug == "delta"))
    assert delta_admin.org_id == delta.id and delta_admin.role == "admin"
    r = await operator.post(
        "/operator/organizations/nowhere/admins",
        data={"csrf_token": token, "admin_username": "lost-admin", "admin_password": secret},
    )
    assert r.status_code == 404
    r = await operator.post(
        "/operator/organizations/delta/admins",
        data={"admin_username": "no-token-admin", "admin_password": secret},
    )
    assert r.status_code == 403
    assert await _count(runtime, User, User.username.in_(["lost-admin", "no-token-admin"])) == 0


async def test_organizations_are_the_operators_alone(browser, browser_client, runtime):
    r = await browser_client.get("/operator/organizations")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")

    for role in ("admin", "reviewer"):
        client, _ = await browser(role)
        page = await client.get("/admin/repositories")
        assert "/operator/organizations" not in page.text  # hidden from the navigation
        assert (await client.get("/operator/organizations")).status_code == 403
        token = csrf_of(page.text)
        r = await client.post("/operator/organizations", data={"csrf_token": token, "slug": "sneaky"})
        assert r.status_code == 403
        r = await client.post(
            "/operator/organizations/default/admins",
            data={"csrf_token": token, "admin_username": f"sneaky-{role}", "admin_password": PASSWORD},
        )
        assert r.status_code == 403
    assert await _count(runtime, Organization, Organization.slug == "sneaky") == 0
    assert await _count(runtime, User, User.username.like("sneaky-%")) == 0


async def test_admins_edit_their_own_channel_settings_with_csrf(browser, runtime, factory):
    """The edit form calls the same service as REST: an admin's own accounts, the operator's any."""
    alpha_org, beta_org = await factory.org(), await factory.org("beta")
    async with db.transaction(runtime.sessions) as s:
        s.add(Repository(org_id=beta_org.id, name="beta-app"))
        s.add(Repository(org_id=alpha_org.id, name="alpha-app"))
        mine = ChannelAccount(org_id=beta_org.id, channel="whatsapp", account="+15550109999")
        theirs = ChannelAccount(org_id=alpha_org.id, channel="slack", account="T0ALPHA")
        s.add_all([mine, theirs])
    beta, _ = await browser("admin", org=beta_org)
    page = await beta.get("/admin/channel-accounts")
    assert page.status_code == 200 and "Edit settings" in page.text
    assert f'action="/admin/channel-accounts/{mine.id}/settings"' in page.text
    assert f'action="/admin/channel-accounts/{theirs.id}/settings"' not in page.text
    token = csrf_of(page.text)
    form = {
        "allowed_senders": "+15550000001\nwhatsapp:+15550000002",
        "repo": "beta-app",
        "priority_keywords": "p0 = urgent\nsomeday = low",
        "skill_keywords": "invoice = billing",
    }

    async def settings_of(row_id: int) -> dict:
        async with runtime.sessions() as s:
            return (await s.get(ChannelAccount, row_id)).settings

    r = await beta.post(f"/admin/channel-accounts/{mine.id}/settings", data=form)
    assert r.status_code == 403 and await settings_of(mine.id) == {}  # no CSRF token: nothing written
    r = await beta.post(f"/admin/channel-accounts/{mine.id}/settings", data={"csrf_token": token, **form})
    assert r.status_code == 303
    assert await settings_of(mine.id) == {
        "allowed_senders": ["+15550000001", "whatsapp:+15550000002"],
        "repo": "beta-app",
        "priority_keywords": {"p0": "urgent", "someday": "low"},
        "skill_keywords": {"invoice": "billing"},
    }
    listing = (await beta.get("/admin/channel-accounts")).text
    assert "p0 = urgent\nsomeday = low</textarea>" in listing and 'value="beta-app"' in listing
    assert "invoice → billing" in listing  # the current settings, shown in the row

    for bad in (
        {"repo": "alpha-app"},
        {"priority_keywords": "p0 = critical"},
        {"skill_keywords": "no equals"},
    ):
        r = await beta.post(
            f"/admin/channel-accounts/{mine.id}/settings", data={"csrf_token": token, **form, **bad}
        )
        assert r.status_code == 422, bad
    r = await beta.post(f"/admin/channel-accounts/{theirs.id}/settings", data={"csrf_token": token, **form})
    assert r.status_code == 404 and "T0ALPHA" not in r.text
    assert await settings_of(theirs.id) == {}
    assert (await settings_of(mine.id))["priority_keywords"] == {"p0": "urgent", "someday": "low"}

    reviewer, _ = await browser("reviewer", org=beta_org)
    own_token = csrf_of((await reviewer.get("/")).text)  # a valid token: the role is what refuses
    r = await reviewer.post(
        f"/admin/channel-accounts/{mine.id}/settings", data={"csrf_token": own_token, **form}
    )
    assert r.status_code == 403 and (await settings_of(mine.id))["repo"] == "beta-app"

    operator, _ = await browser("admin", superuser=True)
    token = csrf_of((await operator.get("/admin/channel-accounts")).text)
    r = await operator.post(
        f"/admin/channel-accounts/{mine.id}/settings", data={"csrf_token": token, "allowed_senders": ""}
    )
    assert r.status_code == 303 and await settings_of(mine.id) == {}  # empty form: the deployment's
