"""Reviews from chat, and everything an attacker could try: a forged Slack payload, a replayed one, the
agent or the requester sending `approve #12`, a number that is not registered (or not verified), a
version that is not the newest, another organization's task. Each goes through the signed webhook."""

from __future__ import annotations

import json
import re
import secrets

import httpx
import pytest
from sqlalchemy import func, select

from osiris.app import reminders, reviewer_channels
from osiris.app.models import Delivery, Message, Role, UserChannel
from osiris.app.ratelimit import RateLimiter
from osiris.ingest import review_replies

from .ingest_helpers import mail, said, update, whatsapp
from .review_helpers import (
    event_kinds,
    fresh_task_ids,
    in_review,
    phone,
    scan,
    set_org,
    slack_address,
    submit,
    task,
    verified,
)


@pytest.fixture(autouse=True)
def _fresh_rate_limit(request, monkeypatch):
    if "runtime" in request.fixturenames:
        runtime = request.getfixturevalue("runtime")
        monkeypatch.setattr(runtime.services, "channel_limiter", RateLimiter(1000))


@pytest.fixture(autouse=True)
async def _fresh_task_ids(runtime):
    await fresh_task_ids(runtime)


async def _reminded(client, factory, runtime, drain, agent) -> int:
    task_id = await in_review(client, agent)
    await drain()
    assert len(await scan(runtime, hours=5)) == 1
    await drain()
    return task_id


def _interaction(task_id: int, version: int, head: str, user: str, *, changes: str | None = None) -> dict:
    team, _, uid = user.partition(":")
    if changes is None:
        action = {
            "type": "button",
            "action_id": "osiris_approve",
            "block_id": f"osiris_review:{task_id}:{version}",
            "value": json.dumps({"task": task_id, "version": version, "head": head}),
            "action_ts": "1700000001.000100",
        }
    else:
        action = {
            "type": "plain_text_input",
            "action_id": "osiris_changes",
            "block_id": f"osiris_changes:{task_id}:{version}:{head}",
            "value": changes,
            "action_ts": "1700000001.000200",
        }
    return {
        "type": "block_actions",
        "team": {"id": team, "domain": "acme"},
        "user": {"id": uid, "username": "rita", "team_id": team},
        "api_app_id": "A0001",
        "trigger_id": f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}",
        "channel": {"id": "D0REVIEW", "name": "directmessage"},
        "message": {"type": "message", "ts": "1700000000.000001", "text": "Review waiting"},
        "actions": [action],
    }


def _form(payload: dict) -> bytes:
    return str(httpx.QueryParams({"payload": json.dumps(payload)})).encode()


async def _head(runtime, task_id: int) -> str:
    async with runtime.sessions() as session:
        from osiris.app.reminders import pinned_reminder

        return (await pinned_reminder(session, task_id)).head_sha


# --- WhatsApp, Telegram, email --------------------------------------------------------------------


async def test_a_verified_reviewer_approves_on_whatsapp_pinned_to_the_reminder(
    client, factory, runtime, drain, channels
):
    _, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    number = phone()
    await verified(runtime, reviewer, "whatsapp", f"whatsapp:{number}")
    task_id = await _reminded(client, factory, runtime, drain, agent)

    answer = said(await channels.twilio(whatsapp(f"approve #{task_id}", number)))
    assert answer.startswith(f"Approved task #{task_id} (version 1)")
    assert (await task(runtime, task_id)).status == "DONE"
    async with runtime.sessions() as session:
        from osiris.app.models import TaskEvent

        approve = await session.scalar(
            select(TaskEvent).where(TaskEvent.task_id == task_id, TaskEvent.kind == "approve")
        )
        assert approve.actor_id == reviewer.id and approve.data["version"] == 1


async def test_a_newer_version_since_the_reminder_is_refused(client, factory, runtime, drain, channels):
    _, agent = await factory.member(Role.AGENT)
    reviewer, reviewer_h = await factory.member(Role.REVIEWER)
    number = phone()
    await verified(runtime, reviewer, "whatsapp", f"whatsapp:{number}")
    task_id = await _reminded(client, factory, runtime, drain, agent)
    # another reviewer asks for changes, the agent submits version 2: the reminder showed version 1
    r = await client.post(
        f"/api/v1/tasks/{task_id}/request-changes", json={"feedback": "more"}, headers=reviewer_h
    )
    assert r.status_code == 200
    await submit(client, agent, task_id, {"README.md": "# v2\n"})
    await drain()

    answer = said(await channels.twilio(whatsapp(f"approve #{task_id}", number)))
    assert "newer version (2)" in answer and "version 1" in answer
    assert (await task(runtime, task_id)).status == "REVIEW"
    answer = said(await channels.twilio(whatsapp(f"changes #{task_id} rename it", number)))
    assert "newer version" in answer
    assert (await task(runtime, task_id)).status == "REVIEW"


async def test_an_unregistered_or_unverified_number_acts_as_nobody(client, factory, runtime, drain, channels):
    _, agent = await factory.member(Role.AGENT)
    reviewer, reviewer_h = await factory.member(Role.REVIEWER)
    task_id = await _reminded(client, factory, runtime, drain, agent)
    stranger = phone()
    assert "not registered" in said(await channels.twilio(whatsapp(f"approve #{task_id}", stranger)))
    # registered but never verified: still nobody
    r = await client.post(
        "/api/v1/me/channels", json={"channel": "whatsapp", "address": stranger}, headers=reviewer_h
    )
    assert r.status_code == 201 and len(r.json()["code"]) == 8
    assert "not registered" in said(await channels.twilio(whatsapp(f"approve #{task_id}", stranger)))
    # a wrong code verifies nothing; the right one, from that number, does
    assert "does not match" in said(await channels.twilio(whatsapp("verify 00000000", stranger)))
    assert "does not match" in said(await channels.twilio(whatsapp(f"verify {r.json()['code']}", phone())))
    assert "now verified" in said(await channels.twilio(whatsapp(f"verify {r.json()['code']}", stranger)))
    assert said(await channels.twilio(whatsapp(f"approve #{task_id}", stranger))).startswith("Approved")


async def test_the_requester_never_approves_their_own_request(client, factory, runtime, drain, channels):
    agent_user, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    number = phone()
    await verified(runtime, reviewer, "whatsapp", f"whatsapp:{number}")
    # the reviewer asked for it on WhatsApp themselves
    created = said(await channels.twilio(whatsapp("the export button crashes", number)))
    task_id = int(re.search(r"#(\d+)", created).group(1))
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
    await submit(client, agent, task_id, {"fix.py": "ok = True\n"})
    await drain()
    await scan(runtime, hours=5)
    await drain()
    answer = said(await channels.twilio(whatsapp(f"approve #{task_id}", number)))
    assert "You asked for" in answer
    assert (await task(runtime, task_id)).status == "REVIEW"


async def test_an_agent_cannot_approve_from_chat(client, factory, runtime, drain, channels, fake_telegram):
    agent_user, agent = await factory.member(Role.AGENT)
    # an agent cannot register an address …
    r = await client.post(
        "/api/v1/me/channels", json={"channel": "telegram", "address": "123"}, headers=agent
    )
    assert r.status_code == 403
    # … and one written straight into the table (or a reviewer demoted to agent) still acts as nobody
    await verified(runtime, agent_user, "telegram", "telegram:555000111")
    task_id = await _reminded(client, factory, runtime, drain, agent)
    user = {"id": 555000111, "is_bot": False, "first_name": "Bot", "username": "agent"}
    r = await channels.telegram(update(f"approve #{task_id}", user=user))
    assert r.status_code == 200
    await drain()
    assert "Only reviewers" in fake_telegram.sent[-1]["text"]
    assert (await task(runtime, task_id)).status == "REVIEW"


async def test_a_verified_reviewer_approves_on_telegram_once(
    client, factory, runtime, drain, channels, fake_telegram
):
    _, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    await verified(runtime, reviewer, "telegram", "telegram:333444555")
    task_id = await _reminded(client, factory, runtime, drain, agent)
    user = {"id": 333444555, "is_bot": False, "first_name": "Rita", "username": "rita"}
    sent = update(f"approve #{task_id}", user=user)
    # without the webhook's secret (anyone can POST a Telegram-shaped body) nothing happens
    assert (await channels.telegram(sent, secret="not-the-secret")).status_code in (401, 403)
    assert (await channels.telegram(sent, secret=None)).status_code in (401, 403)
    assert (await task(runtime, task_id)).status == "REVIEW"

    assert (await channels.telegram(sent)).status_code == 200
    await drain()
    assert fake_telegram.sent[-1]["text"].startswith(f"Approved task #{task_id} (version 1)")
    assert int(fake_telegram.sent[-1]["chat_id"]) == 333444555
    assert (await task(runtime, task_id)).status == "DONE"
    async with runtime.sessions() as session:
        from osiris.app.models import TaskEvent

        approve = await session.scalar(
            select(TaskEvent).where(TaskEvent.task_id == task_id, TaskEvent.kind == "approve")
        )
        assert approve.actor_id == reviewer.id and approve.data["version"] == 1
    # Telegram redelivers the same update: one approval, one answer
    replies = len(fake_telegram.sent)
    assert (await channels.telegram(sent)).status_code == 200
    await drain()
    assert len(fake_telegram.sent) == replies
    assert (await event_kinds(runtime, task_id)).count("approve") == 1


async def test_the_requesters_telegram_account_never_approves_their_request(
    client, factory, runtime, drain, channels, fake_telegram
):
    """A reviewer who asked for the change on Telegram, from the very account they verified: their
    `approve #N` there is refused, as on every edge (separation of duties)."""
    _, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    await verified(runtime, reviewer, "telegram", "telegram:222333444")
    user = {"id": 222333444, "is_bot": False, "first_name": "Req", "username": "req"}
    assert (await channels.telegram(update("the export button crashes", user=user))).status_code == 200
    await drain()
    task_id = int(re.search(r"#(\d+)", fake_telegram.sent[-1]["text"]).group(1))
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
    await submit(client, agent, task_id, {"fix.py": "ok = True\n"})
    await drain()
    await scan(runtime, hours=5)
    await drain()
    assert (await channels.telegram(update(f"approve #{task_id}", user=user))).status_code == 200
    await drain()
    assert "You asked for" in fake_telegram.sent[-1]["text"]
    assert (await task(runtime, task_id)).status == "REVIEW"
    assert "approve" not in await event_kinds(runtime, task_id)


async def test_another_organizations_task_is_not_found(
    client, factory, runtime, drain, channels, fake_telegram
):
    _, agent = await factory.member(Role.AGENT)
    other = await factory.org("zz-other")
    outsider = await factory.user(Role.REVIEWER, org=other)
    await verified(runtime, outsider, "telegram", "telegram:444555666")
    task_id = await _reminded(client, factory, runtime, drain, agent)
    user = {"id": 444555666, "is_bot": False, "first_name": "Bob", "username": "bob"}
    assert (await channels.telegram(update(f"approve #{task_id}", user=user))).status_code == 200
    await drain()
    assert fake_telegram.sent[-1]["text"] == f"I can't find task #{task_id}."
    assert (await task(runtime, task_id)).status == "REVIEW"


async def test_changes_by_email_reach_the_agent(client, factory, runtime, drain, channels):
    _, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    await verified(runtime, reviewer, "email", "rita@example.org")
    task_id = await _reminded(client, factory, runtime, drain, agent)
    async with runtime.sessions() as session:
        [code] = await reminders.reply_codes(session, task_id, 1)
    quoted = f"\n\n> Review waiting: task #{task_id}\n> {review_replies.code_line(code)}\n"
    r = await channels.email(
        mail(
            "Re: review", f"changes #{task_id} please add a test{quoted}", sender="rita@example.org"
        ).as_bytes()
    )
    assert r.status_code == 200 and r.json()["outcome"] == "changes_requested", r.text
    assert (await task(runtime, task_id)).status == "IN_PROGRESS"
    async with runtime.sessions() as session:
        body = await session.scalar(
            select(Message.body).where(Message.task_id == task_id).order_by(Message.id.desc())
        )
        assert body == "please add a test"


# --- Slack buttons ---------------------------------------------------------------------------------


async def test_slack_approve_button_forged_replayed_and_genuine(
    client, factory, runtime, drain, channels, count
):
    _, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    address = await verified(runtime, reviewer, "slack", slack_address())
    task_id = await _reminded(client, factory, runtime, drain, agent)
    body = _form(_interaction(task_id, 1, await _head(runtime, task_id), address))
    path = "/api/v1/webhooks/slack/interactions"
    ctype = "application/x-www-form-urlencoded"

    forged = await channels.slack(path, body, ctype, secret="not-the-signing-secret")
    assert forged.status_code == 401
    stale = await channels.slack(path, body, ctype, age=600)  # a capture replayed after five minutes
    assert stale.status_code == 401
    assert await count(Delivery, Delivery.provider == "slack-action") == 0
    assert (await task(runtime, task_id)).status == "REVIEW"

    ok = await channels.slack(path, body, ctype)
    assert ok.status_code == 200 and ok.json()["outcome"] == "approved", ok.text
    again = await channels.slack(path, body, ctype)  # replayed within the five minutes
    assert again.json().get("duplicate") is True
    assert (await event_kinds(runtime, task_id)).count("approve") == 1
    assert (await task(runtime, task_id)).status == "DONE"


async def test_slack_controls_are_pinned_and_need_a_verified_reviewer(
    client, factory, runtime, drain, channels
):
    _, agent = await factory.member(Role.AGENT)
    reviewer, reviewer_h = await factory.member(Role.REVIEWER)
    address = await verified(runtime, reviewer, "slack", slack_address())
    task_id = await _reminded(client, factory, runtime, drain, agent)
    head = await _head(runtime, task_id)
    path, ctype = "/api/v1/webhooks/slack/interactions", "application/x-www-form-urlencoded"

    # someone else in the workspace presses the button
    r = await channels.slack(path, _form(_interaction(task_id, 1, head, slack_address())), ctype)
    assert r.json()["outcome"] == "refused"
    # a commit other than the one shown
    r = await channels.slack(path, _form(_interaction(task_id, 1, "0" * 40, address)), ctype)
    assert r.json()["outcome"] == "stale"
    # request changes from the field
    r = await channels.slack(
        path, _form(_interaction(task_id, 1, head, address, changes="split the function")), ctype
    )
    assert r.json()["outcome"] == "changes_requested"
    assert (await task(runtime, task_id)).status == "IN_PROGRESS"
    await submit(client, agent, task_id, {"README.md": "# v2\n"})
    await drain()
    r = await channels.slack(
        path, _form(_interaction(task_id, 1, head, address)), ctype
    )  # the old message's button
    assert r.json()["outcome"] == "stale"
    assert (await task(runtime, task_id)).status == "REVIEW"


async def test_the_review_channels_button_acts_only_for_a_verified_reviewer(
    client, factory, runtime, drain, channels, fake_slack
):
    """Everyone in a review channel sees its Approve button; pressing it counts only for a verified
    reviewer: not for the task's agent (even with a verified address), not for any other member."""
    agent_user, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    address = await verified(runtime, reviewer, "slack", slack_address())
    agent_slack = await verified(runtime, agent_user, "slack", slack_address())
    await set_org(runtime, reviewer.org_id, review_slack_channel="T0001:C0REVIEWS")
    task_id = await _reminded(client, factory, runtime, drain, agent)
    [post] = [p for p in fake_slack.posts if p["channel"] == "C0REVIEWS"]
    blocks = post["blocks"] if isinstance(post["blocks"], list) else json.loads(post["blocks"])
    shown = json.loads(blocks[1]["elements"][0]["value"])
    path, ctype = "/api/v1/webhooks/slack/interactions", "application/x-www-form-urlencoded"

    def pressed(user: str) -> dict:
        payload = _interaction(task_id, shown["version"], shown["head"], user)
        payload["channel"] = {"id": "C0REVIEWS", "name": "reviews"}
        return payload

    for who in (agent_slack, slack_address()):
        r = await channels.slack(path, _form(pressed(who)), ctype)
        assert r.json()["outcome"] == "refused", who
        assert (await task(runtime, task_id)).status == "REVIEW"
    r = await channels.slack(path, _form(pressed(address)), ctype)
    assert r.json()["outcome"] == "approved"
    assert (await task(runtime, task_id)).status == "DONE"


async def test_addresses_are_normalized_and_one_verified_owner_each(client, factory, runtime):
    _, a = await factory.member(Role.REVIEWER)
    b = await factory.user(Role.REVIEWER)
    assert reviewer_channels.normalize("whatsapp", "+1 555 000 1111") == "whatsapp:+15550001111"
    assert reviewer_channels.normalize("email", "Ann@Example.COM") == "ann@example.com"
    for bad in (("slack", "U123"), ("whatsapp", "5551234"), ("telegram", "@ann"), ("sms", "+15550001111")):
        r = await client.post("/api/v1/me/channels", json={"channel": bad[0], "address": bad[1]}, headers=a)
        assert r.status_code == 422, bad
    await verified(runtime, b, "email", "shared@example.com")
    r = await client.post(
        "/api/v1/me/channels", json={"channel": "email", "address": "shared@example.com"}, headers=a
    )
    assert r.status_code == 409
    r = await client.post(
        "/api/v1/me/channels", json={"channel": "email", "address": "mine@example.com"}, headers=a
    )
    assert r.status_code == 201
    listed = (await client.get("/api/v1/me/channels", headers=a)).json()
    assert [(x["address"], x["verified_at"]) for x in listed] == [("mine@example.com", None)]
    r = await client.delete(
        "/api/v1/me/channels", params={"channel": "email", "address": "mine@example.com"}, headers=a
    )
    assert r.status_code == 204
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(UserChannel)) == 1


async def test_an_email_with_a_reviewers_address_but_no_reminder_code_approves_nothing(
    client, factory, runtime, drain, channels
):
    """Anyone can put a reviewer's address in From (a hostile agent too): by email, only an answer
    quoting the code that went to that inbox with the reminder counts."""
    _, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    await verified(runtime, reviewer, "email", "rita@example.org")
    task_id = await _reminded(client, factory, runtime, drain, agent)
    forged = [
        f"approve #{task_id}\n",
        f"approve #{task_id}\n> {review_replies.code_line('0' * 32)}\n",  # a guessed code
        f"approve #{task_id} {review_replies.code_line('')}\n",
    ]
    for body in forged:
        r = await channels.email(mail("Re: review", body, sender="rita@example.org").as_bytes())
        assert r.status_code == 200 and r.json()["outcome"] == "refused", r.text
        assert "osiris-review-code" in r.json()["reply"]
    assert (await task(runtime, task_id)).status == "REVIEW"
    async with runtime.sessions() as session:
        [code] = await reminders.reply_codes(session, task_id, 1)
    r = await channels.email(
        mail(
            "Re: review",
            f"approve #{task_id}\n> {review_replies.code_line(code)}\n",
            sender="rita@example.org",
        ).as_bytes()
    )
    assert r.json()["outcome"] == "approved", r.text
    assert (await task(runtime, task_id)).status == "DONE"
