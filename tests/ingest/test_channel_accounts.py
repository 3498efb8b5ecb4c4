"""Channel accounts: a message to an organization's Twilio number, Slack team, email domain, Telegram bot
or GitHub repository lands in that organization (intake.organization_for, the one place); an unmapped
account goes to the default organization, or nowhere with OSIRIS_CHANNEL_UNMAPPED=refuse. Requests
are signed with the providers' own SDKs, as in the other channel tests."""

from __future__ import annotations

import itertools

from osiris.app import db, organizations, repositories
from osiris.app.models import ChannelReceipt, Delivery, Repository, Task
from tests.support.fake_github import Issue
from tests.support.github_harness import REPO, GitHubEnv, post_webhook

from .conftest import TELEGRAM_BOT_ID
from .ingest_helpers import (
    BETA_DOMAIN,
    BETA_NUMBER,
    BETA_TEAM,
    beta_org,
    command,
    issue_event,
    mail,
    mention,
    number,
    operator,
    rows,
    said,
    whatsapp,
)

_updates = itertools.count(7_000_000)


async def test_only_the_operator_maps_accounts_and_admins_see_their_own(client, factory, runtime):
    beta = await beta_org(factory, client)
    _, op = await operator(factory)
    listed = (await client.get("/api/v1/channel-accounts", headers=op)).json()
    assert sorted((a["channel"], a["account"], a["org_id"]) for a in listed) == [
        ("email", BETA_DOMAIN, beta.id),
        ("slack", BETA_TEAM, beta.id),
        ("telegram", str(TELEGRAM_BOT_ID), beta.id),
        ("whatsapp", BETA_NUMBER, beta.id),
    ]
    _, beta_admin = await factory.member("admin", org=beta)
    assert len((await client.get("/api/v1/channel-accounts", headers=beta_admin)).json()) == 4
    _, home_admin = await factory.member("admin")
    assert (await client.get("/api/v1/channel-accounts", headers=home_admin)).json() == []
    _, beta_agent = await factory.member("agent", org=beta)
    assert (await client.get("/api/v1/channel-accounts", headers=beta_agent)).status_code == 403

    mapping = {"organization": "default", "channel": "slack", "account": "TOTHER"}
    r = await client.post("/api/v1/channel-accounts", json=mapping, headers=beta_admin)
    assert r.status_code == 403
    account_id = listed[0]["id"]
    assert (
        await client.delete(f"/api/v1/channel-accounts/{account_id}", headers=beta_admin)
    ).status_code == 403
    # One account, one organization.
    r = await client.post("/api/v1/channel-accounts", json={**mapping, "account": BETA_TEAM}, headers=op)
    assert r.status_code == 409
    r = await client.post("/api/v1/channel-accounts", json={**mapping, "organization": "nope"}, headers=op)
    assert r.status_code == 404
    assert (await client.delete(f"/api/v1/channel-accounts/{account_id}", headers=op)).status_code == 200
    assert len((await client.get("/api/v1/channel-accounts", headers=op)).json()) == 3


async def test_whatsapp_to_an_organizations_number_lands_there(channels, client, factory, runtime):
    beta = await beta_org(factory, client)
    home = await factory.org()
    sender = number()
    reply = said(
        await channels.twilio(whatsapp("Fix the beta invoice", sender, To=f"whatsapp:{BETA_NUMBER}"))
    )
    [task] = await rows(runtime, Task)
    assert reply == f"Task #{task.id} created: Fix the beta invoice"
    assert (task.org_id, task.repo, task.channel) == (beta.id, "beta-app", "whatsapp")
    # The same sender to a number nobody mapped: the default organization, its default repository.
    said(await channels.twilio(whatsapp("new: Fix the home page", sender, To="whatsapp:+14155238886")))
    [home_task] = await rows(runtime, Task, Task.org_id == home.id)
    assert home_task.title == "Fix the home page" and home_task.repo == runtime.settings.repos.default_repo
    # A follow-up to Beta's number finds Beta's task, not the other one.
    reply = said(
        await channels.twilio(whatsapp(f"#{task.id} also the PDF", sender, To=f"whatsapp:{BETA_NUMBER}"))
    )
    assert reply == f"Added to task #{task.id}."


async def test_slack_events_and_commands_from_a_team_land_in_its_organization(
    channels, client, factory, runtime
):
    beta = await beta_org(factory, client)
    r = await channels.slack_event(mention("Add a dark mode", team=BETA_TEAM))
    assert r.status_code == 200
    r = await channels.slack_command(command("Write the changelog", team=BETA_TEAM))
    assert r.status_code == 200 and "created" in r.json()["text"]
    r = await channels.slack_event(mention("Home team request", team="THOME0001"))
    tasks = {t.title: t.org_id for t in await rows(runtime, Task)}
    assert tasks == {
        "Add a dark mode": beta.id,
        "Write the changelog": beta.id,
        "Home team request": (await factory.org()).id,
    }


async def test_email_to_an_organizations_domain_lands_there(channels, client, factory, runtime):
    beta = await beta_org(factory, client)
    r = await channels.email(
        mail("Broken export", "Please fix it.", to=f"OSIRIS <osiris@{BETA_DOMAIN}>").as_bytes()
    )
    assert r.status_code == 200 and r.json()["outcome"] == "created", r.text
    task = (await rows(runtime, Task, Task.id == r.json()["task_id"]))[0]
    assert (task.org_id, task.repo) == (beta.id, "beta-app")
    r = await channels.email(mail("Home request", "Please.").as_bytes())  # to our own, unmapped domain
    home_task = (await rows(runtime, Task, Task.id == r.json()["task_id"]))[0]
    assert home_task.org_id == (await factory.org()).id


async def test_telegram_bot_mapped_to_an_organization(channels, client, factory, runtime):
    beta = await beta_org(factory, client)
    user = {"id": 5550001, "is_bot": False, "first_name": "Tea", "username": "tea"}
    upd = {
        "update_id": next(_updates),
        "message": {
            "message_id": next(_updates),
            "from": user,
            "chat": {"id": user["id"], "type": "private", "first_name": "Tea"},
            "date": 1700000000,
            "text": "Rename the settings tab",
        },
    }
    assert (await channels.telegram(upd)).status_code == 200
    [task] = await rows(runtime, Task)
    assert (task.org_id, task.channel) == (beta.id, "telegram")


async def test_unmapped_accounts_refused_store_nothing(channels, client, factory, runtime, monkeypatch):
    await beta_org(factory, client)
    monkeypatch.setattr(runtime.settings.channel, "unmapped", "refuse")
    assert said(await channels.twilio(whatsapp("hello", number(), To="whatsapp:+14155238886"))) == ""
    r = await channels.slack_event(mention("Home team request", team="THOME0001"))
    assert r.status_code == 200 and r.json() == {"ok": True}
    r = await channels.slack_command(command("do a thing", team="THOME0001"))
    assert r.status_code == 200
    r = await channels.email(mail("Home request", "Please.").as_bytes())
    assert r.status_code == 200 and r.json()["outcome"] == "ignored"
    for model in (Task, Delivery, ChannelReceipt):
        assert await rows(runtime, model) == [], model.__name__
    # Mapped accounts still work.
    said(await channels.twilio(whatsapp("Beta still works", number(), To=f"whatsapp:{BETA_NUMBER}")))
    assert [t.title for t in await rows(runtime, Task)] == ["Beta still works"]


async def test_an_organization_without_a_repository_is_told_so(channels, client, factory, runtime):
    await beta_org(factory, client, repo=None)
    reply = said(await channels.twilio(whatsapp("Fix it", number(), To=f"whatsapp:{BETA_NUMBER}")))
    assert "no repository" in reply
    assert await rows(runtime, Task) == []


async def test_a_github_issue_in_an_organizations_repository_lands_there(github: GitHubEnv, factory):
    beta = await factory.org("beta")
    async with db.transaction(github.runtime.sessions) as session:
        await repositories.create_repository(session, org_id=beta.id, name="beta-web", github_repo=REPO)
    github.fake.issues[(REPO, 11)] = Issue(REPO, 11, "Greeting should use an f-string", "", "carol", 4243)
    payload = issue_event("opened", number=11, login="carol", body="Please.")
    r = await post_webhook(github, "issues", payload)
    assert r.status_code == 202, r.text
    await github.drain()
    [task] = await rows(github.runtime, Task)
    assert (task.org_id, task.repo, task.channel) == (beta.id, "beta-web", "github")
    assert [r.name for r in await rows(github.runtime, Repository, Repository.org_id != beta.id)] == []


async def test_a_github_app_installation_maps_its_issues_to_an_organization(github: GitHubEnv, factory):
    beta = await factory.org("beta")
    home = await factory.org()
    async with db.transaction(github.runtime.sessions) as session:
        await repositories.create_repository(session, org_id=beta.id, name="beta-svc")
        await organizations.add_channel_account(session, org_id=beta.id, channel="github", account="98765")
    for issue, installation in ((21, 98765), (22, 11111)):
        github.fake.issues[(REPO, issue)] = Issue(REPO, issue, "Use an f-string", "", "carol", 5000 + issue)
        payload = issue_event("opened", number=issue, login="carol", body="Please.")
        payload["installation"] = {"id": installation, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u"}
        assert (await post_webhook(github, "issues", payload)).status_code == 202
    await github.drain()
    found = {t.channel_thread: (t.org_id, t.repo) for t in await rows(github.runtime, Task)}
    assert found == {
        f"{REPO}#21": (beta.id, "beta-svc"),  # the installation is Beta's
        f"{REPO}#22": (home.id, github.runtime.settings.repos.default_repo),  # nobody mapped this one
    }


async def test_notifications_come_from_the_organizations_own_number(
    channels, client, factory, runtime, drain, fake_twilio, monkeypatch
):
    """Later notices (claimed, ready for review …) go out from the number the requester wrote to."""
    beta = await beta_org(factory, client)
    monkeypatch.setattr(fake_twilio, "calls", [])
    sender = number()
    said(await channels.twilio(whatsapp("Fix the beta invoice", sender, To=f"whatsapp:{BETA_NUMBER}")))
    [task] = await rows(runtime, Task)
    _, beta_admin = await factory.member("admin", org=beta)
    r = await client.post(f"/api/v1/tasks/{task.id}/cancel", json={"reason": "dup"}, headers=beta_admin)
    assert r.status_code == 200, r.text
    await drain()
    sent = [c["form"] for c in fake_twilio.calls]
    assert sent and all(
        f["From"] == f"whatsapp:{BETA_NUMBER}" and f["To"] == f"whatsapp:{sender}" for f in sent
    )
