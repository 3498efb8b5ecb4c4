"""Helpers shared by the channel tests: messages as each provider sends them (built from the providers'
own example payloads, tests/support/fixtures/), and organization Beta with its channel accounts."""

from __future__ import annotations

import email.utils
import itertools
import secrets
import time
from email.message import EmailMessage
from xml.etree import ElementTree

from sqlalchemy import select

from osiris.app import accounts, db, repositories
from osiris.app.models import Organization, Role, Task
from tests.support.channel_fakes import fixture
from tests.support.fake_github import example
from tests.support.github_harness import REPO

from .conftest import OUR_ADDRESS, TELEGRAM_BOT_ID

# --- WhatsApp (Twilio) ------------------------------------------------------------------------


def number() -> str:
    return "+1555" + "".join(secrets.choice("0123456789") for _ in range(7))


def whatsapp(body: str, sender: str, *, sid: str | None = None, **extra: str) -> dict[str, str]:
    form = fixture("twilio_whatsapp_inbound.json")
    sid = sid or "SM" + secrets.token_hex(16)
    form.update(Body=body, From=f"whatsapp:{sender}", WaId=sender.lstrip("+"), MessageSid=sid, SmsSid=sid)
    form["SmsMessageSid"] = sid
    form.update(extra)
    return form


def said(response) -> str:
    """The text of the TwiML <Message>, or '' for an empty <Response/>."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(response.text)
    assert root.tag == "Response"
    return "".join(m.text or "" for m in root.iter("Message"))


# --- Slack ------------------------------------------------------------------------------------


def mention(text: str, *, user: str | None = None, team: str = "T061EG9R6", ts: str | None = None) -> dict:
    payload = fixture("slack_app_mention.json")
    payload["team_id"] = team
    payload["event_id"] = "Ev" + secrets.token_hex(5)
    payload["event"].update(
        text=f"<@U0LAN0Z89> {text}",
        user=user or "U" + secrets.token_hex(4).upper(),
        ts=ts or f"{time.time():.6f}",
    )
    return payload


def thread_reply(parent: dict, text: str, *, user: str | None = None) -> dict:
    payload = fixture("slack_message_thread_reply.json")
    payload["team_id"] = parent["team_id"]
    payload["event_id"] = "Ev" + secrets.token_hex(5)
    payload["event"].update(
        channel=parent["event"]["channel"],
        thread_ts=parent["event"]["ts"],
        ts=f"{time.time():.6f}",
        text=text,
        user=user or parent["event"]["user"],
    )
    return payload


def command(text: str, *, user: str | None = None, team: str = "T0001") -> dict[str, str]:
    form = fixture("slack_slash_command.json")
    form.update(
        text=text,
        team_id=team,
        user_id=user or "U" + secrets.token_hex(4).upper(),
        trigger_id=f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**9)}.{secrets.token_hex(8)}",
    )
    return form


# --- email ------------------------------------------------------------------------------------


def mail(
    subject: str,
    text: str,
    *,
    sender: str | None = None,
    html: str | None = None,
    attach: tuple[str, str, bytes] | None = None,
    reply_to_id: str | None = None,
    to: str = OUR_ADDRESS,
    **headers: str,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr(
        ("Ada Lovelace", sender or f"ada.{secrets.token_hex(3)}@example.org")
    )
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
    if reply_to_id:
        msg["In-Reply-To"] = reply_to_id
        msg["References"] = reply_to_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attach is not None:
        name, ctype, data = attach
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


# --- Telegram ---------------------------------------------------------------------------------


_ids = itertools.count(900_000)
ANN = {"id": 111222333, "is_bot": False, "first_name": "Ann", "username": "ann_dev"}
BOB = {"id": 444555666, "is_bot": False, "first_name": "Bob", "username": "bob_ops"}
GROUP = {"id": -1001234567890, "type": "supergroup", "title": "Widgets team"}


def update(text: str, *, user: dict = ANN, chat: dict | None = None, reply_to: dict | None = None) -> dict:
    """An Update as the Bot API sends it to a webhook."""
    chat = chat or {"id": user["id"], "type": "private", "first_name": user["first_name"]}
    message: dict = {
        "message_id": next(_ids),
        "from": user,
        "chat": chat,
        "date": 1700000000,
        "text": text,
    }
    if "@" in text:
        at = text.index("@")
        length = len(text[at:].split()[0])
        message["entities"] = [{"type": "mention", "offset": at, "length": length}]
    if reply_to is not None:
        message["reply_to_message"] = reply_to
    return {"update_id": next(_ids), "message": message}


def ours(sent_message_id: int, chat: dict) -> dict:
    """The message of ours a person replies to, as Telegram embeds it in their reply."""
    return {
        "message_id": sent_message_id,
        "from": {"id": TELEGRAM_BOT_ID, "is_bot": True, "first_name": "OSIRIS", "username": "osiris_bot"},
        "chat": chat,
        "date": 1700000000,
        "text": "Task created",
    }


# --- GitHub issues ----------------------------------------------------------------------------


def issue_event(action: str, *, number: int, login: str, labels=("osiris",), body="", label=None) -> dict:
    """GitHub's example for the action, moved to the connected repository."""
    payload = example("issues", action)
    payload["repository"].update(full_name=REPO, name=REPO.split("/")[1])
    payload["issue"].update(
        number=number,
        title="Greeting should use an f-string",
        body=body,
        state="open",
        labels=[{"id": i, "name": n, "color": "ededed", "default": False} for i, n in enumerate(labels)],
    )
    payload["issue"]["user"]["login"] = login
    payload["issue"].pop("pull_request", None)
    payload["sender"]["login"] = login
    if label is not None:
        payload["label"] = {"id": 99, "name": label, "color": "ededed", "default": False}
    return payload


# --- the tasks a message made -----------------------------------------------------------------


async def only_task(runtime) -> Task:
    async with runtime.sessions() as session:
        return (await session.execute(select(Task))).scalar_one()


async def rows(runtime, model, *where) -> list:
    async with runtime.sessions() as session:
        return list((await session.execute(select(model).where(*where))).scalars())


# --- organization Beta and its channel accounts -----------------------------------------------


BETA_NUMBER = "+15550109999"
BETA_TEAM = "TBETA0001"
BETA_DOMAIN = "beta.example"


async def beta_org(factory, client, *, repo: str | None = "beta-app") -> Organization:
    """Organization Beta with a registered repository, and its channel accounts mapped."""
    org = await factory.org("beta")
    async with db.transaction(factory.runtime.sessions) as session:
        if repo is not None:
            await repositories.create_repository(session, org_id=org.id, name=repo)
    op, auth = await operator(factory)
    for channel, account in (
        ("whatsapp", f"whatsapp:{BETA_NUMBER}"),
        ("slack", BETA_TEAM),
        ("email", f"osiris@{BETA_DOMAIN}"),  # stored as the domain
        ("telegram", str(TELEGRAM_BOT_ID)),
    ):
        r = await client.post(
            "/api/v1/channel-accounts",
            json={"organization": "beta", "channel": channel, "account": account},
            headers=auth,
        )
        assert r.status_code == 201, r.text
    return org


async def operator(factory):
    org = await factory.org()
    async with db.transaction(factory.runtime.sessions) as session:
        user = await accounts.find_user(session, "op")
        if user is None:
            user = await accounts.create_user(
                session, org_id=org.id, username="op", role=Role.ADMIN, is_superuser=True
            )
    return user, {"Authorization": f"Bearer {await factory.token(user)}"}
