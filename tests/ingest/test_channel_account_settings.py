"""Channel settings per channel account: an organization's own allowed senders, repository, priority and
skill keywords override the deployment's for messages sent to that account (intake.policy_for). Set
with PATCH /api/v1/channel-accounts/{id} by the operator or the owning organization's admin; checked on
write (schemas.ChannelAccountSettings), nothing written when refused. Requests are signed with the
providers' own SDKs."""

from __future__ import annotations

from sqlalchemy import select

from osiris.app import db, repositories
from osiris.app.models import ChannelAccount, ChannelReceipt, Delivery, Task
from osiris.app.schemas import PRIORITIES

from .ingest_helpers import BETA_NUMBER, BETA_TEAM, beta_org, mention, number, operator, rows, said, whatsapp


async def account(runtime, channel: str, org_id: int) -> ChannelAccount:
    async with runtime.sessions() as session:
        return await session.scalar(
            select(ChannelAccount).where(ChannelAccount.channel == channel, ChannelAccount.org_id == org_id)
        )


async def register(runtime, org_id: int, name: str) -> None:
    async with db.transaction(runtime.sessions) as session:
        await repositories.create_repository(session, org_id=org_id, name=name)


async def test_an_accounts_allowed_senders_and_repository_apply_to_messages_sent_to_it(
    channels, client, factory, runtime, settings
):
    beta = await beta_org(factory, client)  # its first repository: beta-app
    await register(runtime, beta.id, "beta-ops")
    _, op = await operator(factory)
    row = await account(runtime, "whatsapp", beta.id)
    allowed = number()
    r = await client.patch(
        f"/api/v1/channel-accounts/{row.id}",
        json={"settings": {"allowed_senders": [f"whatsapp:{allowed}"], "repo": "beta-ops"}},
        headers=op,
    )
    assert r.status_code == 200, r.text
    assert r.json()["settings"] == {"allowed_senders": [f"whatsapp:{allowed}"], "repo": "beta-ops"}
    assert settings.twilio.allowed_numbers == []  # the deployment lets everyone in

    stranger = number()
    reply = said(await channels.twilio(whatsapp("Delete production", stranger, To=f"whatsapp:{BETA_NUMBER}")))
    assert reply.startswith("Sorry")
    for model in (Task, Delivery, ChannelReceipt):
        assert await rows(runtime, model) == [], model.__name__

    reply = said(
        await channels.twilio(whatsapp("Fix the beta invoice", allowed, To=f"whatsapp:{BETA_NUMBER}"))
    )
    [task] = await rows(runtime, Task)
    assert reply == f"Task #{task.id} created: Fix the beta invoice"
    assert (task.org_id, task.repo, task.requester) == (beta.id, "beta-ops", f"whatsapp:{allowed}")

    # The stranger writing to a number without settings: the deployment's (empty) allowlist.
    said(await channels.twilio(whatsapp("Home request", stranger, To="whatsapp:+14155238886")))
    home = await rows(runtime, Task, Task.requester == f"whatsapp:{stranger}")
    assert [(t.title, t.org_id) for t in home] == [("Home request", (await factory.org()).id)]


async def test_a_slack_teams_keywords_label_and_prioritize_its_tasks(
    channels, client, factory, runtime, count
):
    beta = await beta_org(factory, client)
    _, beta_admin = await factory.member("admin", org=beta)  # an admin tunes their own channel
    row = await account(runtime, "slack", beta.id)
    own = {
        "skill_keywords": {"Invoice": "Billing"},
        "priority_keywords": {"urgent": "low", "p0": "urgent"},
    }
    r = await client.patch(f"/api/v1/channel-accounts/{row.id}", json={"settings": own}, headers=beta_admin)
    assert r.status_code == 200, r.text
    assert r.json()["settings"] == {
        "skill_keywords": {"invoice": "billing"},
        "priority_keywords": {"urgent": "low", "p0": "urgent"},
    }
    listed = (await client.get("/api/v1/channel-accounts", headers=beta_admin)).json()
    assert {a["id"]: a["settings"] for a in listed}[row.id] == r.json()["settings"]

    for text in ("urgent: the invoice total is wrong", "p0 the login page is down"):
        assert (await channels.slack_event(mention(text, team=BETA_TEAM))).status_code == 200
    # The same words to a workspace without settings: the deployment's keywords only.
    assert (
        await channels.slack_event(mention("urgent: the invoice again", team="THOME0001"))
    ).status_code == 200
    found = {t.title: (t.org_id, t.priority, t.skills) for t in await rows(runtime, Task)}
    home = (await factory.org()).id
    assert found == {
        "urgent: the invoice total is wrong": (beta.id, PRIORITIES["low"], ["billing"]),  # the account wins
        "p0 the login page is down": (beta.id, PRIORITIES["urgent"], []),
        "urgent: the invoice again": (home, PRIORITIES["urgent"], []),
    }

    # Slack user ids as allowed senders: another member of the workspace is refused.
    own = {"allowed_senders": ["UALLOWED1"]}
    r = await client.patch(f"/api/v1/channel-accounts/{row.id}", json={"settings": own}, headers=beta_admin)
    assert r.status_code == 200 and r.json()["settings"] == own  # replaced: the keywords are gone
    before = (await count(Task), await count(Delivery))
    await channels.slack_event(mention("A request from a stranger", team=BETA_TEAM, user="USTRANGER"))
    assert (await count(Task), await count(Delivery)) == before
    await channels.slack_event(mention("A request from the allowed one", team=BETA_TEAM, user="UALLOWED1"))
    [task] = await rows(runtime, Task, Task.title == "A request from the allowed one")
    assert task.org_id == beta.id and task.requester == f"{BETA_TEAM}:UALLOWED1"


async def test_only_the_operator_or_the_owning_admin_changes_settings(client, factory, runtime):
    beta = await beta_org(factory, client)
    row = await account(runtime, "whatsapp", beta.id)
    url = f"/api/v1/channel-accounts/{row.id}"
    body = {"settings": {"allowed_senders": ["+15550000001"]}}
    _, home_admin = await factory.member("admin")  # an admin of another organization
    r = await client.patch(url, json=body, headers=home_admin)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    for role in ("agent", "reviewer"):
        _, member = await factory.member(role, org=beta)
        assert (await client.patch(url, json=body, headers=member)).status_code == 403
    assert (await client.patch(url, json=body)).status_code == 401
    assert (await account(runtime, "whatsapp", beta.id)).settings == {}
    _, beta_admin = await factory.member("admin", org=beta)
    assert (await client.patch(url, json=body, headers=beta_admin)).status_code == 200
    _, op = await operator(factory)
    r = await client.patch(url, json={"settings": {}}, headers=op)  # back to the deployment's
    assert r.status_code == 200 and r.json()["settings"] == {}
    assert (
        await client.patch("/api/v1/channel-accounts/999999999", json=body, headers=op)
    ).status_code == 404


async def test_invalid_settings_are_refused_and_nothing_is_written(client, factory, runtime):
    beta = await beta_org(factory, client)
    home = await factory.org()
    await register(runtime, home.id, "home-only")
    row = await account(runtime, "whatsapp", beta.id)
    url = f"/api/v1/channel-accounts/{row.id}"
    _, beta_admin = await factory.member("admin", org=beta)
    good = {"allowed_senders": ["+15550000001"], "repo": "beta-app"}
    assert (await client.patch(url, json={"settings": good}, headers=beta_admin)).status_code == 200
    for bad, code in (
        ({"allowed_numbers": ["+1555"]}, "invalid_input"),  # unknown key
        ({"repo": "home-only"}, "unknown_repository"),  # another organization's
        ({"repo": "nobody-has-this"}, "unknown_repository"),  # not registered at all
        ({"repo": "../etc"}, "invalid_input"),
        ({"priority_keywords": {"asap": "critical"}}, "invalid_input"),
        ({"skill_keywords": {"db": "Data Base!"}}, "invalid_input"),
        ({"allowed_senders": [" "]}, "invalid_input"),
        ({"allowed_senders": "+15550000001"}, "invalid_input"),
    ):
        r = await client.patch(url, json={"settings": bad}, headers=beta_admin)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["code"] == code, (bad, r.json())
    r = await client.patch(url, json={"settings": good, "account": "+1999"}, headers=beta_admin)
    assert r.status_code == 422  # only settings change here; mapping is the operator's POST
    stored = await account(runtime, "whatsapp", beta.id)
    assert (stored.settings, stored.account) == (good, BETA_NUMBER)
