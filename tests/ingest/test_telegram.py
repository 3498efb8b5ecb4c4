"""Telegram: Bot API updates in (secret token first), replies out through python-telegram-bot, checked
at the HTTP boundary (a fake Bot API server): chat id, reply-to message id, text."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import select

from osiris.app.models import ChannelNotification, Delivery, Message, Task
from osiris.app.ratelimit import RateLimiter
from osiris.cli import main as cli_main
from osiris.ingest import telegram

from .conftest import PUBLIC_URL, TELEGRAM_SECRET, TELEGRAM_TOKEN
from .ingest_helpers import ANN, BOB, GROUP, ours, update


@pytest.fixture(autouse=True)
def _fresh_rate_limit(request, monkeypatch):
    """The same two people write in every test: each test starts with their per-minute budget."""
    if "runtime" in request.fixturenames or "channels" in request.fixturenames:
        runtime = request.getfixturevalue("runtime")
        monkeypatch.setattr(
            runtime.services, "channel_limiter", RateLimiter(runtime.settings.channel.rate_per_minute)
        )


async def tasks(runtime) -> list[Task]:
    async with runtime.sessions() as session:
        return list((await session.execute(select(Task).order_by(Task.id))).scalars())


async def test_a_private_message_becomes_a_task_and_the_answer_replies_to_it(
    channels, runtime, drain, fake_telegram, count
):
    u = update("The export button is broken, urgent")
    r = await channels.telegram(u)
    assert r.status_code == 200 and r.json() == {"ok": True}
    [task] = await tasks(runtime)
    msg = u["message"]
    assert task.channel == "telegram" and task.requester == f"telegram:{ANN['id']}"
    assert task.channel_thread == f"{ANN['id']}:{msg['message_id']}"
    assert task.title == "The export button is broken, urgent" and task.priority == 3
    assert await count(Delivery, Delivery.provider == "telegram") == 1
    await drain()
    assert fake_telegram.sent == [
        {
            "chat_id": ANN["id"],
            "text": f"Task #{task.id} created: {task.title}",
            "reply_parameters": {"message_id": msg["message_id"], "allow_sending_without_reply": True},
        }
    ]


async def test_wrong_or_missing_secret_is_401_and_nothing_is_stored(channels, count, fake_telegram):
    u = update("Please add dark mode")
    for secret in ("wrong-secret", None, TELEGRAM_SECRET + "x", ""):
        r = await channels.telegram(u, secret=secret)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "bad_signature"
    assert await count(Task) == 0 and await count(Delivery) == 0
    assert fake_telegram.calls == []


async def test_not_configured_is_403(channels, runtime, monkeypatch, count):
    monkeypatch.setattr(runtime.settings.telegram, "webhook_secret", None)
    r = await channels.telegram(update("hello"))
    assert r.status_code == 403 and r.json()["code"] == "channel_not_configured"
    assert await count(Task) == 0


async def test_a_redelivered_update_has_one_effect(channels, drain, fake_telegram, count):
    u = update("Rotate the logs nightly")
    for _ in range(3):
        assert (await channels.telegram(u)).status_code == 200
    assert await count(Task) == 1 and await count(Delivery) == 1
    await drain()
    assert len(fake_telegram.sent) == 1


async def test_replies_to_our_messages_thread_into_the_task_and_notifications_follow(
    channels, runtime, drain, fake_telegram, factory
):
    from osiris.app.models import Role

    first = update("Add a CSV export")
    await channels.telegram(first)
    await drain()
    [task] = await tasks(runtime)
    [created] = fake_telegram.sent
    async with runtime.sessions() as session:
        note = await session.scalar(select(ChannelNotification).where(ChannelNotification.task_id == task.id))
    our_message_id = int(note.provider_id.split(":")[1])
    assert note.provider_id == f"{ANN['id']}:{our_message_id}" and created["chat_id"] == ANN["id"]

    # A reply to OSIRIS's confirmation is a follow-up on the task, not a new request.
    chat = first["message"]["chat"]
    r = await channels.telegram(update("with a header row please", reply_to=ours(our_message_id, chat)))
    assert r.status_code == 200
    assert len(await tasks(runtime)) == 1
    async with runtime.sessions() as session:
        [msg] = (await session.execute(select(Message).where(Message.task_id == task.id))).scalars()
    assert msg.body == "with a header row please" and msg.source == "telegram" and msg.direction == "to_agent"

    # An agent claims it: the requester hears about it, as a reply to their request.
    _, agent_h = await factory.member(Role.AGENT)
    r = await channels.client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent_h)
    assert r.status_code == 200, r.text
    fake_telegram.calls.clear()
    await drain()
    [claimed] = fake_telegram.sent
    assert claimed["chat_id"] == ANN["id"]
    assert claimed["reply_parameters"]["message_id"] == first["message"]["message_id"]
    assert (
        claimed["text"] == f"Task #{task.id} ({task.title}) was picked up by an agent and is being worked on."
    )


async def test_status_and_cancel_commands(channels, runtime, drain, fake_telegram):
    first = update("Make the logo bigger")
    await channels.telegram(first)
    [task] = await tasks(runtime)
    await drain()
    fake_telegram.calls.clear()

    await channels.telegram(update("/status"))
    await channels.telegram(update(f"/cancel@osiris_bot {task.id}", user=BOB))  # not Bob's to cancel
    await drain()
    by_chat = {m["chat_id"]: m for m in fake_telegram.sent}  # two jobs: either may send first
    status, refused = by_chat[ANN["id"]], by_chat[BOB["id"]]
    assert status["chat_id"] == ANN["id"]
    assert status["text"] == f"Your open requests:\n#{task.id} {task.title}: waiting for an agent"
    assert refused["chat_id"] == BOB["id"] and "can't find task" in refused["text"]
    assert (await tasks(runtime))[0].status == "PENDING"

    fake_telegram.calls.clear()
    cancel = update(f"/cancel {task.id}")
    await channels.telegram(cancel)
    await drain()
    [task] = await tasks(runtime)
    assert task.status == "REJECTED"
    [answer] = fake_telegram.sent
    assert answer == {
        "chat_id": ANN["id"],
        "text": f"Task #{task.id} cancelled: {task.title}",
        "reply_parameters": {
            "message_id": cancel["message"]["message_id"],
            "allow_sending_without_reply": True,
        },
    }


async def test_groups_mentions_ask_and_chatter_is_ignored(channels, runtime, drain, fake_telegram, count):
    assert (await channels.telegram(update("lunch anyone?", chat=GROUP))).status_code == 200
    assert await count(Task) == 0 and await count(Delivery) == 0
    ask = update("@osiris_bot the dashboard times out", chat=GROUP, user=BOB)
    await channels.telegram(ask)
    [task] = await tasks(runtime)
    assert task.title == "the dashboard times out" and task.requester == f"telegram:{BOB['id']}"
    assert task.channel_thread == f"{GROUP['id']}:{ask['message']['message_id']}"
    await drain()
    [created] = fake_telegram.sent
    assert created["chat_id"] == GROUP["id"]
    assert created["reply_parameters"]["message_id"] == ask["message"]["message_id"]
    # Someone replying to the request in the group follows up on it.
    reply = update("it started after Tuesday's deploy", chat=GROUP, user=ANN, reply_to=ask["message"])
    await channels.telegram(reply)
    assert await count(Task) == 1 and await count(Message, Message.task_id == task.id) == 1


async def test_a_refused_send_is_recorded_and_not_retried(channels, runtime, drain, fake_telegram):
    fake_telegram.fail_with = (
        403,
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked"},
    )
    await channels.telegram(update("Add SSO"))
    await drain()
    async with runtime.sessions() as session:
        note = await session.scalar(select(ChannelNotification))
    assert note.state == "failed" and "Forbidden" in note.detail["error"]


async def test_set_webhook_registers_url_and_secret(fake_telegram, monkeypatch, caplog):
    for name, value in {
        "OSIRIS_TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "OSIRIS_TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "OSIRIS_TELEGRAM_API_URL": fake_telegram.url,
        "OSIRIS_PUBLIC_URL": PUBLIC_URL,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    fake_telegram.calls.clear()
    fake_telegram.fail_with = None
    with caplog.at_level(logging.DEBUG):
        code = await asyncio.to_thread(cli_main, ["telegram", "set-webhook"])
    assert code == 0
    [call] = fake_telegram.calls
    assert call["method"] == "setWebhook"
    assert call["params"]["url"] == PUBLIC_URL + telegram.PATH
    assert call["params"]["secret_token"] == TELEGRAM_SECRET
    assert TELEGRAM_TOKEN.split(":")[1] not in caplog.text and TELEGRAM_SECRET not in caplog.text


def test_tokens_and_secrets_never_reach_a_log(caplog):
    with caplog.at_level(logging.DEBUG, logger="telegram.Bot"):
        logging.getLogger("telegram.Bot").debug("Set Bot API URL: %s", f"https://x/bot{TELEGRAM_TOKEN}")
        logging.getLogger("telegram.Bot").debug("params %s", {"secret_token": TELEGRAM_SECRET})
        logging.getLogger("httpx").info("HTTP Request: POST %s", f"https://x/bot{TELEGRAM_TOKEN}/sendMessage")
    assert caplog.records, "the records are kept, redacted"
    assert TELEGRAM_TOKEN.split(":")[1] not in caplog.text and TELEGRAM_SECRET not in caplog.text


def test_commands_are_translated():
    assert telegram._as_command("/start") == "help"
    assert telegram._as_command("/cancel@osiris_bot #12") == "cancel #12"
    assert telegram._as_command("/status 7") == "status #7"
    assert telegram._as_command("/deploy now") == "/deploy now"
