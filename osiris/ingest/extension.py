"""Chat channels as an OSIRIS extension: webhooks and the SMTP listener in, the notifier out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from osiris.app.config import Settings
from osiris.app.ratelimit import RateLimiter
from osiris.app.runtime import Runtime
from osiris.ingest import attachments, channel_webhooks, notify, slack_actions, smtp
from osiris.ingest.email import EmailSender
from osiris.ingest.github_issues import GitHubIssueSender
from osiris.ingest.notify import ChannelNotifier, Sender
from osiris.ingest.reviewer_messages import ReviewerMessages
from osiris.ingest.slack import SlackSender
from osiris.ingest.telegram import TelegramSender
from osiris.ingest.twilio import WhatsAppSender

assert notify  # imported for its job handler


def install(app: FastAPI, settings: Settings) -> None:
    app.include_router(channel_webhooks.router)
    app.include_router(attachments.router)
    app.include_router(slack_actions.router)


@asynccontextmanager
async def lifespan(app: FastAPI, runtime: Runtime) -> AsyncIterator[None]:
    """Part of the app's lifespan: the SMTP listener, when email comes in directly."""
    if runtime.settings.smtp.listen_port is None:
        yield
        return
    async with smtp.listener(app, runtime):
        yield


def senders(
    settings: Settings, *, twilio_transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, Sender]:
    """A sender for each channel whose outbound settings are complete; others stay silent."""
    found: dict[str, Sender] = {}
    if settings.twilio.account_sid and settings.twilio.auth_token and settings.twilio.whatsapp_from:
        found["whatsapp"] = WhatsAppSender(
            account_sid=settings.twilio.account_sid,
            auth_token=settings.twilio.auth_token.get_secret_value(),
            from_=settings.twilio.whatsapp_from,
            transport=twilio_transport,
            retry_seconds=settings.channel.retry_seconds,
        )
    if settings.slack.bot_token or settings.slack.bot_tokens:
        found["slack"] = SlackSender(
            token=settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None,
            team_tokens={team: t.get_secret_value() for team, t in settings.slack.bot_tokens.items()},
            base_url=settings.slack.api_url,
            retry_seconds=settings.channel.retry_seconds,
        )
    if settings.email.address and settings.smtp.relay_host:
        password = settings.smtp.relay_password
        found["email"] = EmailSender(
            our_address=settings.email.address,
            host=settings.smtp.relay_host,
            port=settings.smtp.relay_port,
            username=settings.smtp.relay_username,
            password=password.get_secret_value() if password else None,
            starttls=settings.smtp.relay_starttls,
        )
    if settings.telegram.bot_token:
        found["telegram"] = TelegramSender(
            token=settings.telegram.bot_token.get_secret_value(), api_url=settings.telegram.api_url
        )
    return found


async def services(runtime: Runtime, **overrides: Any) -> None:
    runtime.services.channel_limiter = RateLimiter(runtime.settings.channel.rate_per_minute)
    found = senders(runtime.settings, **overrides)
    # Issue comments go through the code host's GitHub client, found when sending (GitHub may not be
    # the code host; then no task ever has the "github" channel).
    found["github"] = GitHubIssueSender(runtime.services)
    runtime.services.notifier = ChannelNotifier(runtime.sessions, found)
    runtime.services.reviewer_notifier = ReviewerMessages(runtime.sessions, found)
