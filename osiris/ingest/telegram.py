"""Telegram: a bot's webhook updates in, Bot API replies out (python-telegram-bot for both).

Private chats: every message is a request, unless it replies to one of ours or to the request
itself, which follows up on that task. Groups: a message mentioning the bot is a request; replies
follow up; the rest of the chatter is not ours. The thread key is `<chat id>:<message id>` of the
request; our own messages are found again through `channel_notifications.provider_id`
(`<chat id>:<message id>`), so a reply to any of them lands on its task. Dedupe: the `update_id`.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import jobs
from osiris.app.models import ChannelNotification
from osiris.ingest.intake import Inbound
from osiris.ingest.notify import SendFailed, Target

# python-telegram-bot is imported where it is used, once Telegram is configured and in use: not every
# process pays for every channel's SDK at start (issue 17).
if TYPE_CHECKING:
    from telegram import Bot

CHANNEL = "telegram"
PATH = "/api/v1/webhooks/telegram"
MAX_TEXT = 4096  # the Bot API's limit for one message
_SECRETS = re.compile(r"(?<!\d)\d{3,}:[A-Za-z0-9_-]{20,}|(secret_token'?\"?\s*[:=]\s*'?\"?)[A-Za-z0-9_-]+")
_COMMAND = re.compile(r"^/(\w+)(?:@\w+)?\s*(.*)$", re.DOTALL)


class _RedactSecrets(logging.Filter):
    """The Bot API puts the token in every URL, and httpx and the library log URLs and parameters
    (the webhook secret among them): neither may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = _SECRETS.sub(lambda m: f"{m.group(1)}<redacted>" if m.group(1) else "<redacted>", text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


for _name in ("httpx", "httpcore", "telegram", "telegram.Bot", "telegram.request", "telegram.ext"):
    logging.getLogger(_name).addFilter(_RedactSecrets())
# The library logs every call's parameters at DEBUG: keep it at INFO even when the app debugs.
logging.getLogger("telegram").setLevel(logging.INFO)


def secret_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bot_id(token: str) -> int | None:
    """A bot token is `<bot id>:<secret>`: the id tells our own messages apart from people's."""
    head = token.partition(":")[0]
    return int(head) if head.isdigit() else None


def _as_command(text: str) -> str:
    """`/status`, `/cancel 12`, `/cancel@our_bot #12`, `/start` → the intake's plain commands."""
    m = _COMMAND.match(text.strip())
    if m is None:
        return text
    name, arg = m.group(1).lower(), m.group(2).strip().lstrip("#").strip()
    if name in ("start", "help"):
        return "help"
    if name in ("status", "cancel"):
        return f"{name} #{arg}" if arg.isdigit() else name
    return text


def _strip_mention(text: str, username: str | None) -> tuple[str, bool]:
    if not username:
        return text, False
    pattern = re.compile(rf"@{re.escape(username)}\b", re.IGNORECASE)
    return pattern.sub("", text).strip(), bool(pattern.search(text))


def parse_update(
    payload: Mapping[str, Any], *, our_id: int | None, username: str | None, replied_task: int | None = None
) -> Inbound | None:
    """An update → the normalized message; None for what is not a person writing to us."""
    from telegram import Update  # the SDK only once Telegram is in use (issue 17: start-up)

    update = Update.de_json(dict(payload), None)
    message = update.message if update is not None else None
    if message is None or message.from_user is None or message.from_user.is_bot:
        return None  # edits, channel posts, callbacks, other bots: not requests
    raw = message.text or message.caption or ""
    if not raw.strip():
        return None
    chat = message.chat
    private = chat.type == "private"
    text, mentioned = _strip_mention(raw, username)
    reply_to = message.reply_to_message
    thread_keys: tuple[str, ...] = ()
    if reply_to is not None:
        thread_keys = (f"{chat.id}:{reply_to.message_id}",)
    replies_to_us = (
        reply_to is not None and reply_to.from_user is not None and reply_to.from_user.id == our_id
    )
    if not private and not mentioned and not replies_to_us and not thread_keys:
        return None  # group chatter
    user = message.from_user
    text = _as_command(text)
    return Inbound(
        channel=CHANNEL,
        provider="telegram",
        delivery_id=str(update.update_id),
        sender=f"telegram:{user.id}",
        text=text,
        new_thread=f"{chat.id}:{message.message_id}",
        thread_keys=thread_keys,
        thread_task_id=replied_task,
        allow_keys=(str(chat.id), str(user.id)),
        # one bot per deployment: its id (and name) map it, else it is the default organization's
        accounts=tuple(a for a in (str(our_id) if our_id else "", (username or "").lower()) if a),
        # In a group only a mention asks for something; a reply may only follow up.
        may_create=private or mentioned,
        display_name=user.username or user.full_name or None,
        meta={"telegram_chat": chat.id, "telegram_message": message.message_id},
    )


def replied_message(payload: Mapping[str, Any]) -> str | None:
    """`<chat id>:<message id>` of the message this update replies to, if any (before full parsing)."""
    message = payload.get("message") if isinstance(payload, Mapping) else None
    if not isinstance(message, Mapping):
        return None
    reply = message.get("reply_to_message")
    chat = (message.get("chat") or {}).get("id")
    if not isinstance(reply, Mapping) or chat is None or reply.get("message_id") is None:
        return None
    return f"{chat}:{reply['message_id']}"


async def task_of_our_message(session: AsyncSession, key: str) -> int | None:
    """The task one of our sent messages (`<chat id>:<message id>`) was about."""
    return await session.scalar(
        select(ChannelNotification.task_id)
        .where(ChannelNotification.channel == CHANNEL, ChannelNotification.provider_id == key)
        .limit(1)
    )


# --- outbound ----------------------------------------------------------------------------------


def _bot(token: str, api_url: str) -> Bot:
    from telegram import Bot
    from telegram.request import HTTPXRequest

    request = HTTPXRequest(connect_timeout=10.0, read_timeout=15.0, write_timeout=15.0)
    return Bot(token, base_url=f"{api_url.rstrip('/')}/bot", request=request)


def _seconds(value: int | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramSender:
    def __init__(self, *, token: str, api_url: str = "https://api.telegram.org") -> None:
        self.token = token
        self.api_url = api_url

    async def send(self, target: Target, text: str, key: str) -> dict[str, Any]:
        from telegram import ReplyParameters
        from telegram.error import (
            BadRequest,
            Forbidden,
            InvalidToken,
            NetworkError,
            RetryAfter,
            TelegramError,
        )

        bot = _bot(self.token, self.api_url)
        reply = (
            ReplyParameters(message_id=int(target.thread), allow_sending_without_reply=True)
            if target.thread and target.thread.isdigit()
            else None
        )
        try:
            sent = await bot.send_message(
                chat_id=int(target.to), text=text[:MAX_TEXT], reply_parameters=reply
            )
        except RetryAfter as exc:
            raise jobs.Retry(max(1.0, _seconds(exc.retry_after)), "telegram asked us to slow down") from exc
        except (BadRequest, Forbidden, InvalidToken) as exc:  # chat gone, bot blocked, bad token
            raise SendFailed(f"telegram refused: {type(exc).__name__}") from exc
        except NetworkError as exc:  # timeouts, 5xx, connection errors
            raise jobs.Retry(15.0, f"telegram unreachable: {type(exc).__name__}") from exc
        except TelegramError as exc:
            raise SendFailed(f"telegram refused: {type(exc).__name__}") from exc
        finally:
            await bot.request.shutdown()
        return {
            "provider_id": f"{sent.chat_id}:{sent.message_id}",
            "chat_id": sent.chat_id,
            "message_id": sent.message_id,
        }


async def register_webhook(settings: Any) -> str:
    """`osiris telegram set-webhook`: tell the Bot API where to send updates, and with what secret."""
    if settings.telegram.bot_token is None or settings.telegram.webhook_secret is None:
        raise ValueError("set OSIRIS_TELEGRAM_BOT_TOKEN and OSIRIS_TELEGRAM_WEBHOOK_SECRET first")
    url = settings.server.public_url.rstrip("/") + PATH
    bot = _bot(settings.telegram.bot_token.get_secret_value(), settings.telegram.api_url)
    try:
        await bot.set_webhook(
            url=url,
            secret_token=settings.telegram.webhook_secret.get_secret_value(),
            allowed_updates=["message"],
        )
    finally:
        await bot.request.shutdown()
    return url
