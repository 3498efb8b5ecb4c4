from __future__ import annotations

import copy
import secrets
import time

from sqlalchemy import select

from osiris.app.models import Delivery, Message, Task, TaskEvent
from osiris.ingest.notify import ChannelNotifier
from tests.support.channel_fakes import fixture

from .ingest_helpers import command, mention, only_task, thread_reply


async def test_url_verification_echoes_the_challenge(channels):
    payload = fixture("slack_url_verification.json")
    r = await channels.slack_event(payload)
    assert r.status_code == 200 and r.json() == {"challenge": payload["challenge"]}


async def test_a_mention_becomes_a_task_and_the_answer_goes_into_its_thread(
    channels, runtime, drain, fake_slack
):
    payload = mention("the search page is slow, asap please")
    r = await channels.slack_event(payload)
    assert r.status_code == 200
    task = await only_task(runtime)
    event = payload["event"]
    assert task.title == "the search page is slow, asap please" and task.priority == 3
    assert task.channel == "slack" and task.channel_thread == f"{event['channel']}:{event['ts']}"
    assert task.requester == f"{payload['team_id']}:{event['user']}"
    await drain()
    assert fake_slack.posts == [
        {
            "channel": event["channel"],
            "thread_ts": event["ts"],
            "text": f"Task #{task.id} created: {task.title}",
        }
    ]


async def test_thread_replies_follow_up_and_strangers_threads_are_ignored(channels, runtime, count):
    parent = mention("Add a health check")
    await channels.slack_event(parent)
    task = await only_task(runtime)
    reply = thread_reply(parent, "with the DB ping, &lt;please&gt;")
    assert (await channels.slack_event(reply)).status_code == 200
    async with runtime.sessions() as session:
        msg = (await session.execute(select(Message))).scalar_one()
    assert msg.task_id == task.id and msg.body == "with the DB ping, <please>" and msg.source == "slack"
    # A thread we have nothing to do with: no task, no message.
    other = thread_reply(mention("unrelated"), "chatter")
    other["event"]["thread_ts"] = "1111.2222"
    await channels.slack_event(other)
    assert await count(Task) == 1 and await count(Message) == 1


async def test_a_retried_event_has_one_effect(channels, runtime, drain, fake_slack, count):
    payload = mention("Add pagination")
    assert (await channels.slack_event(payload)).status_code == 200
    retry = copy.deepcopy(payload)
    assert (await channels.slack_event(retry)).status_code == 200
    # The same words arriving as a `message` event too (both subscriptions on) count once as well.
    twin = copy.deepcopy(payload)
    twin["event_id"] = "Ev-other"
    twin["event"]["type"] = "message"
    assert (await channels.slack_event(twin)).status_code == 200
    assert await count(Task) == 1 and await count(Delivery) == 1
    await drain()
    assert len(fake_slack.posts) == 1


async def test_bad_and_replayed_signatures_are_refused_and_nothing_is_stored(channels, count):
    payload = mention("Ship it")
    r = await channels.slack_event(payload, secret="wrong-secret")
    assert r.status_code == 401 and r.json()["code"] == "bad_signature"
    r = await channels.slack_event(payload, age=6 * 60)  # correctly signed, but six minutes old
    assert r.status_code == 401
    r = await channels.client.post("/api/v1/webhooks/slack/events", json=payload)
    assert r.status_code == 401
    assert await count(Task) == 0 and await count(Delivery) == 0


async def test_bot_messages_are_not_requests(channels, count):
    payload = mention("I am a bot")
    payload["event"]["bot_id"] = "B123"
    await channels.slack_event(payload)
    assert await count(Task) == 0


async def test_a_slash_command_answers_at_once_and_anchors_a_thread(
    channels, runtime, factory, client, drain, fake_slack
):
    form = command("Fix the login page redirect")
    started = time.perf_counter()
    r = await channels.slack_command(form)
    assert time.perf_counter() - started < 3.0
    assert r.status_code == 200
    task = await only_task(runtime)
    assert r.json() == {
        "response_type": "ephemeral",
        "text": f"Task #{task.id} created: Fix the login page redirect",
    }
    await drain()
    anchor = fake_slack.posts[0]
    assert anchor["channel"] == form["channel_id"] and "thread_ts" not in anchor
    assert anchor["text"].startswith(f"Task #{task.id} created") and f"<@{form['user_id']}>" in anchor["text"]
    task = await only_task(runtime)
    assert task.channel_thread == f"{form['channel_id']}:1700000000.000001"
    _, agent = await factory.member("agent")
    await client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent)
    await drain()
    assert len(fake_slack.posts) == 2
    assert fake_slack.posts[1]["thread_ts"] == "1700000000.000001"
    assert fake_slack.posts[1]["channel"] == form["channel_id"]


async def test_a_slash_command_where_the_bot_is_not_invited_falls_back_to_a_dm(
    channels, runtime, drain, fake_slack
):
    form = command("Make the logo bigger")
    fake_slack.unreachable_channels.add(form["channel_id"])
    await channels.slack_command(form)
    await drain()
    assert [p["channel"] for p in fake_slack.posts] == [form["user_id"]]
    task = await only_task(runtime)
    assert task.channel_thread == f"{form['user_id']}:1700000000.000001"


async def test_slash_command_status_cancel_and_help(channels, runtime):
    user = "U" + secrets.token_hex(4).upper()
    assert "Commands" in (await channels.slack_command(command("", user=user))).json()["text"]
    await channels.slack_command(command("Write the changelog", user=user))
    task = await only_task(runtime)
    text = (await channels.slack_command(command("status", user=user))).json()["text"]
    assert text == f"Your open requests:\n#{task.id} Write the changelog: waiting for an agent"
    text = (await channels.slack_command(command(f"cancel #{task.id}", user=user))).json()["text"]
    assert text == f"Task #{task.id} cancelled: Write the changelog"
    assert (await only_task(runtime)).status == "REJECTED"


async def test_a_workspace_not_on_the_allowlist_is_refused(channels, settings, monkeypatch, count):
    monkeypatch.setattr(settings.slack, "allowed_teams", ["T0001"])
    r = await channels.slack_command(command("Let me in", team="T9999"))
    assert r.json()["text"].startswith("Sorry") and await count(Task) == 0
    r = await channels.slack_command(command("I am welcome", team="T0001"))
    assert r.json()["text"].startswith("Task #")


async def test_slack_rate_limits_are_retried_and_refusals_recorded(
    channels, runtime, factory, client, fake_slack
):
    import pytest

    from osiris.app import jobs

    await channels.slack_event(mention("Rate me"))
    task = await only_task(runtime)
    _, agent = await factory.member("agent")
    await client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent)
    notifier: ChannelNotifier = runtime.services.notifier
    fake_slack.fail_with = (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "11"})
    with pytest.raises(jobs.Retry) as raised:
        await notifier.notify(task, "PENDING", "pending")
    assert raised.value.after == 11
    fake_slack.fail_with = (200, {"ok": False, "error": "channel_not_found"}, {})
    result = await notifier.notify(task, "PENDING", "pending")
    assert result["ok"] is False and "channel_not_found" in result["error"]


async def test_end_to_end_every_step_lands_in_the_originating_thread(
    channels, runtime, factory, client, drain, fake_slack
):
    payload = mention("Add a README")
    await channels.slack_event(payload)
    task = await only_task(runtime)
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    await client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent)
    r = await client.post(
        f"/api/v1/tasks/{task.id}/artifacts", json={"content": {"README.md": "# hi\n"}}, headers=agent
    )
    assert r.status_code == 201, r.text
    await drain()
    r = await client.post(f"/api/v1/tasks/{task.id}/reject", json={"feedback": "say more"}, headers=reviewer)
    await drain()
    texts = [p["text"] for p in fake_slack.posts]
    assert {(p["channel"], p["thread_ts"]) for p in fake_slack.posts} == {
        (payload["event"]["channel"], payload["event"]["ts"])
    }
    assert texts[0].startswith(f"Task #{task.id} created")
    assert len(texts) == 4, texts
    # The worker ran only after both moves: each still gets its own message, in order.
    assert "picked up" in texts[1] and "ready for review" in texts[2] and "asked for changes" in texts[3]
    async with runtime.sessions() as session:
        kinds = (
            (
                await session.execute(
                    select(TaskEvent.kind).where(TaskEvent.task_id == task.id).order_by(TaskEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert "requester_replied" in kinds and "requester_notified" in kinds


async def test_channel_chatter_is_not_recorded(channels, count):
    payload = mention("just chatting")
    payload["event"].update(type="message", channel_type="channel", text="just chatting")
    await channels.slack_event(payload)
    stray = thread_reply(payload, "a reply in someone's thread")
    await channels.slack_event(stray)
    assert await count(Task) == 0 and await count(Delivery) == 0


async def test_each_workspace_is_answered_with_its_own_bot_token(
    channels, runtime, drain, fake_slack, monkeypatch, factory
):
    """An app installed in several workspaces: replies go out with the requester's workspace token."""
    sender = runtime.services.notifier.senders["slack"]
    monkeypatch.setitem(sender.team_tokens, "TBETA", "xoxb-beta-workspace")
    monkeypatch.setitem(fake_slack.workspace_tokens, "xoxb-beta-workspace", "TBETA")
    monkeypatch.setattr(fake_slack, "teams", [])
    payload = mention("Add a dark mode", team="TBETA")
    assert (await channels.slack_event(payload)).status_code == 200
    await drain()
    task = await only_task(runtime)
    _, admin = await factory.member("admin")
    r = await channels.client.post(
        f"/api/v1/tasks/{task.id}/cancel", json={"reason": "not now"}, headers=admin
    )
    assert r.status_code == 200, r.text
    await drain()
    # the creation reply (intake) and the cancellation notice (notifier) both as TBETA's bot
    assert fake_slack.teams == ["TBETA", "TBETA"]
    assert sender.token_for("T-elsewhere") == sender.token  # other workspaces: the default token
