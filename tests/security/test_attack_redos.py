"""Regular-expression denial of service: one chat message must not hold the event loop.

The old command pattern (`^\\s*(status|cancel|help)\\s*(?:#\\s*(\\d+))?\\s*[.!?]*\\s*$`) took ~18 s on
"status" + 2,000 spaces + "x"; Slack's mention pattern ~10 s on "<@A|" x 25,000; html.parser ~60 s
on "<a " x 33,000. Here ~100 kB of adversarial whitespace (spaces, tabs, newlines, NBSP, mixed with
the command words, `#`, digits, punctuation, mrkdwn and HTML) goes through each channel's real
webhook, signed as the provider signs it, and must cost at most RATIO x a plain message measured in
the same run (plus a small constant for moving 100 kB through JSON, forms and an INSERT): no
absolute timings. Each message's outcome is checked too: a task with the whole text, or the clear
answer to a command, never half of either. With the default `chat_max_chars` the same message is
refused with a reply saying why, and nothing else is written.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from itertools import count

import httpx
import pytest
from asgi_lifespan import LifespanManager
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from osiris.app.models import ChannelReceipt, Delivery, Message, Task
from osiris.github_bridge import github_events
from osiris.ingest import telegram
from osiris.server import create_app
from tests.support.settings import make_settings

PUBLIC_URL = "https://osiris.example.com"
TWILIO_TOKEN = "twilio-" + secrets.token_hex(8)
SLACK_SECRET = "slack-" + secrets.token_hex(8)
EMAIL_SECRET = "email-" + secrets.token_hex(8)
TELEGRAM_SECRET = "tg-" + secrets.token_hex(8)
SIZE = 100_000
RATIO = 20
SLACK = 0.5  # seconds: parsing, storing and answering 100 kB where a plain message is 30 bytes
WHITESPACE = {"space": " ", "tab": "\t", "newline": "\n", "nbsp": "\u00a0", "mixed": " \t\n\u00a0\r\f\v"}
_ids = count(1)


def _fill(template: str, ws: str) -> str:
    """`template` with each `_` replaced by whitespace, repeated so the whole is about SIZE chars."""
    gaps = template.count("_")
    return template.replace("_", ws * (SIZE // max(1, gaps) // len(ws)))


def adversarial() -> list[tuple[str, str, str]]:
    """(name, text, the outcome it must have) — none a command but the last of each whitespace."""
    cases = []
    for label, ws in WHITESPACE.items():
        for template in (
            "status_x",  # the original report
            "status_#_12_x",
            "cancel_#_7_!_?_._x",
            "help_._!_?_#",
            "_#_1_:_-_,x",
            "new_:_-_x",
            "status#_#_#_#x",
        ):
            cases.append((f"{label}:{template}", _fill(template, ws), "created"))
        cases.append((f"{label}:{'cancel_#_999_!'}", _fill("cancel_#_999_!", ws), "not_found"))
    cases.append(("digits", "status #" + "9" * SIZE, "created"))
    cases.append(("hash-runs", ("# 1 " * (SIZE // 4)) + "x", "created"))
    cases.append(("slack-mentions", "<@U1|" * (SIZE // 5), "created"))
    cases.append(("slack-links", "<http://a|" * (SIZE // 10), "created"))
    cases.append(("quote-heads", "On " * (SIZE // 3) + "\n-- original message", "created"))
    return cases


@pytest.fixture(scope="module")
async def app(database_url, tmp_root) -> AsyncIterator:
    settings = make_settings(
        database_url,
        tmp_root / "redos-data",
        server={"public_url": PUBLIC_URL},
        twilio={"auth_token": TWILIO_TOKEN},
        slack={"signing_secret": SLACK_SECRET},
        email={"webhook_secret": EMAIL_SECRET, "address": "osiris@osiris.example.com"},
        telegram={"webhook_secret": TELEGRAM_SECRET},
        channel={
            "rate_per_minute": 1_000_000,
            "max_chars": 1_000_000,
        },  # let 100 kB reach every pattern; the default cap is tested below
    )
    application = create_app(settings, run_background=False)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=30):
        yield application


# --- one signed message per channel, as each provider sends it ---------------------------------


async def twilio(c: httpx.AsyncClient, text: str) -> httpx.Response:
    n = next(_ids)
    form = {
        "From": f"whatsapp:+1555{n:07d}",
        "To": "whatsapp:+14155238886",
        "Body": text,
        "MessageSid": f"SM{n}",
    }
    path = "/api/v1/webhooks/twilio"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, form)
    return await c.post(path, data=form, headers={"X-Twilio-Signature": signature})


def _slack_headers(body: bytes, content_type: str) -> dict[str, str]:
    ts = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=ts, body=body)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature or "",
    }


async def slack_event(c: httpx.AsyncClient, text: str) -> httpx.Response:
    n = next(_ids)
    payload = {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": f"Ev{n}",
        "event": {
            "type": "message",
            "channel_type": "im",
            "user": f"U{n}",
            "channel": "D1",
            "ts": f"{n}.0",
            "text": text,
        },
    }
    body = json.dumps(payload).encode()
    return await c.post(
        "/api/v1/webhooks/slack/events", content=body, headers=_slack_headers(body, "application/json")
    )


async def slack_command(c: httpx.AsyncClient, text: str) -> httpx.Response:
    n = next(_ids)
    form = {
        "team_id": "T1",
        "user_id": f"U{n}",
        "channel_id": "C1",
        "command": "/osiris",
        "text": text,
        "trigger_id": f"t{n}",
    }
    body = str(httpx.QueryParams(form)).encode()
    headers = _slack_headers(body, "application/x-www-form-urlencoded")
    return await c.post("/api/v1/webhooks/slack/commands", content=body, headers=headers)


async def email_plain(c: httpx.AsyncClient, text: str) -> httpx.Response:
    return await _email(c, text, html=False)


async def email_html(c: httpx.AsyncClient, text: str) -> httpx.Response:
    return await _email(c, text, html=True)


async def _email(c: httpx.AsyncClient, text: str, *, html: bool) -> httpx.Response:
    n = next(_ids)
    msg = EmailMessage()
    msg["From"] = f"person{n}@example.org"
    msg["To"] = "osiris@osiris.example.com"
    msg["Subject"] = "Re: " * 1000 + "request"
    msg["Message-ID"] = f"<m{n}@example.org>"
    if html:
        msg.set_content(text, subtype="html")
    else:
        msg.set_content(text)
    headers = {"Content-Type": "message/rfc822", "X-Osiris-Email-Secret": EMAIL_SECRET}
    return await c.post("/api/v1/webhooks/email", content=msg.as_bytes(), headers=headers)


async def telegram_update(c: httpx.AsyncClient, text: str) -> httpx.Response:
    n = next(_ids)
    update = {
        "update_id": n,
        "message": {
            "message_id": n,
            "date": int(time.time()),
            "chat": {"id": 100 + n, "type": "private"},
            "from": {"id": 100 + n, "is_bot": False, "first_name": "P"},
            "text": text,
        },
    }
    return await c.post(
        "/api/v1/webhooks/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    )


CHANNELS = {
    "whatsapp": twilio,
    "slack-event": slack_event,
    "slack-command": slack_command,
    "email": email_plain,
    "email-html": email_html,
    "telegram": telegram_update,
}


async def _timed(send, c: httpx.AsyncClient, text: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    r = await send(c, text)
    return time.perf_counter() - started, r


async def _last_receipt(app) -> ChannelReceipt:
    async with app.state.runtime.sessions() as session:
        return await session.scalar(select(ChannelReceipt).order_by(ChannelReceipt.id.desc()).limit(1))


@pytest.mark.parametrize("channel", list(CHANNELS))
async def test_adversarial_whitespace_costs_what_a_plain_message_costs(app, client, channel, capsys):
    send = CHANNELS[channel]
    plain = []
    for i in range(5):
        seconds, r = await _timed(send, client, f"Please fix the login page, take {i}")
        assert r.status_code == 200, r.text
        plain.append(seconds)
    baseline = statistics.median(plain)
    worst = (0.0, "")
    for name, text, expected in adversarial():
        if channel == "email-html":  # the words in HTML, then html.parser's quadratic cases, unterminated
            text = "<p>" + text.replace("<", "&lt;") + "</p>" + "<!-- -->" + "<a " * (SIZE // 3) + "<!--"
        seconds, r = await _timed(send, client, text)
        assert r.status_code == 200, (name, r.status_code, r.text[:300])
        worst = max(worst, (seconds, name))
        receipt = await _last_receipt(app)
        assert receipt.outcome == expected, (name, receipt.outcome, receipt.reply)
        async with app.state.runtime.sessions() as session:
            if expected == "created":
                task = await session.get(Task, receipt.task_id)
                assert task is not None and task.description.strip()
                if channel != "email-html":  # the whole text (after a leading "new:"), not a part
                    assert " ".join(text.split()).endswith(" ".join(task.description.split())), name
            else:
                assert receipt.task_id is None and "can't find task #999" in receipt.reply
    with capsys.disabled():
        print(
            f"\n  redos {channel}: plain {baseline * 1000:.1f} ms, worst {worst[0] * 1000:.1f} ms ({worst[1]}), ratio {worst[0] / baseline:.1f}"
        )
    assert worst[0] <= RATIO * baseline + SLACK, (channel, worst, baseline)


async def test_a_message_over_the_limit_is_refused_with_a_reply_and_nothing_else_written(
    app, client, monkeypatch
):
    monkeypatch.setattr(app.state.runtime.settings.channel, "max_chars", 20_000)
    async with app.state.runtime.sessions() as session:
        tasks = await session.scalar(select(func.count()).select_from(Task))
        messages = await session.scalar(select(func.count()).select_from(Message))
    for send in CHANNELS.values():
        r = await send(client, "status\u00a0#\t1 " * 3000)  # 30,000 characters, in HTML too
        assert r.status_code == 200
        receipt = await _last_receipt(app)
        assert receipt.outcome == "too_long" and receipt.task_id is None, send.__name__
        assert "characters long and the limit is 20,000" in receipt.reply
    r = await twilio(client, "cancel # 2 " * 3000)
    assert "the limit is 20,000" in r.text  # WhatsApp gets the answer in the TwiML
    async with app.state.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Task)) == tasks
        assert await session.scalar(select(func.count()).select_from(Message)) == messages
        # The refusal itself is recorded once per provider message, so a redelivery is not answered twice.
        assert await session.scalar(select(func.count()).select_from(Delivery)) >= len(CHANNELS)


def test_the_other_patterns_on_chat_text_are_linear():
    """GitHub's PR comment commands and Telegram's bot commands, on the same inputs (no endpoint of
    their own here: GitHub's runs in a job, Telegram's before intake): each well under a second."""
    for name, text, _ in adversarial():
        for parse in (
            lambda t: github_events._COMMAND.match("/approve" + t),
            lambda t: telegram._as_command("/status" + t),
            lambda t: telegram._as_command("/cancel@osiris_bot" + t),
        ):
            started = time.perf_counter()
            parse(text)
            assert time.perf_counter() - started < 0.5, name
