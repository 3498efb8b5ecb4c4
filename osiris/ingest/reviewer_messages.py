"""Review reminders out, to reviewers' own verified addresses: the `ports.ReviewerNotifier` adapter.

Slack gets a direct message with an Approve button and a "request changes" field (block kit; the
button and the field carry the task, version and commit the message showed, so acting on it is
pinned to that version); email, WhatsApp and Telegram get the text, which says how to answer
(`approve #12`, `changes #12 …`: `review_replies.py`). Each send goes through `deliver_once` under the
reminder's key, so a retried job sends nothing twice. Reminder messages name no task thread: a
reviewer's reply is never mistaken for the requester's follow-up.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from osiris.app import jobs
from osiris.app.models import ChannelAccount, User, UserChannel
from osiris.app.ports import ReviewPrompt
from osiris.ingest import review_replies
from osiris.ingest.notify import Sender, SendFailed, Target, deliver_once, retry_after
from osiris.ingest.slack import SlackSender

APPROVE_ACTION = "osiris_approve"
CHANGES_ACTION = "osiris_changes"


def pin(prompt: ReviewPrompt) -> str:
    """What a Slack control carries back: the task, and the version and commit it was shown."""
    return json.dumps({"task": prompt.task_id, "version": prompt.version, "head": prompt.head_sha})


def slack_text(text: str) -> str:
    """A reminder's words as Slack text: `&`, `<` and `>` escaped, as Slack asks, so that a task
    title (a requester's words) cannot mention `<!channel>`, a user or a disguised link, in a
    review channel least of all."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blocks(prompt: ReviewPrompt) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": slack_text(prompt.text.split("\n", 1)[0])}},
        {
            "type": "actions",
            "block_id": f"osiris_review:{prompt.task_id}:{prompt.version}",
            "elements": [
                {
                    "type": "button",
                    "style": "primary",
                    "action_id": APPROVE_ACTION,
                    "text": {"type": "plain_text", "text": f"Approve version {prompt.version}"},
                    "value": pin(prompt),
                },
                {
                    "type": "button",
                    "action_id": "osiris_open",
                    "text": {"type": "plain_text", "text": "Open in OSIRIS"},
                    "url": prompt.url,
                },
            ],
        },
        {
            "type": "input",
            "block_id": f"osiris_changes:{prompt.task_id}:{prompt.version}:{prompt.head_sha}",
            "dispatch_action": True,
            "label": {"type": "plain_text", "text": "Request changes (say what, then press Enter)"},
            "element": {"type": "plain_text_input", "action_id": CHANGES_ACTION, "multiline": False},
        },
    ]


def target_for_address(channel: str, address: str) -> Target:
    if channel == "slack":  # "<team>:<user>": a direct message from the bot
        team, _, user = address.partition(":")
        return Target("slack", user, account=team)
    if channel == "email":
        return Target("email", address, subject="OSIRIS: a review is waiting for you")
    if channel == "telegram":  # a private chat's id is the user's id
        return Target("telegram", address.removeprefix("telegram:"))
    return Target(channel, address)


async def _post_blocks(sender: SlackSender, target: Target, prompt: ReviewPrompt) -> dict[str, Any]:
    # the SDK (and aiohttp) only once Slack is in use: not at every start (issue 17)
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=sender.token_for(target.account), base_url=sender.base_url, timeout=15)
    try:
        resp = await client.chat_postMessage(
            channel=target.to, text=slack_text(prompt.text), blocks=blocks(prompt)
        )
    except SlackApiError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status == 429 or status >= 500:
            raise jobs.Retry(retry_after(exc.response.headers), f"slack answered {status}") from exc
        error = exc.response.get("error") if exc.response is not None else "unknown"
        raise SendFailed(f"slack refused: {error}") from exc
    except (OSError, TimeoutError) as exc:
        raise jobs.Retry(sender.retry_seconds, f"slack unreachable: {type(exc).__name__}") from exc
    return {"provider_id": resp.get("ts"), "channel": resp.get("channel"), "ts": resp.get("ts")}


class ReviewerMessages:
    """The ReviewerNotifier port over the channels' senders."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], senders: Mapping[str, Sender]) -> None:
        self.sessions = sessions
        self.senders = dict(senders)

    async def remind(self, channel: str, address: str, prompt: ReviewPrompt, key: str) -> dict[str, Any]:
        sender = self.senders.get(channel)
        if sender is None:
            return {"skipped": f"messages on {channel} are not configured"}
        target = target_for_address(channel, address)
        if channel == "whatsapp":  # from the organization's own number, if the operator mapped one
            async with self.sessions() as session:
                number = await session.scalar(
                    select(ChannelAccount.account)
                    .join(User, User.org_id == ChannelAccount.org_id)
                    .join(UserChannel, UserChannel.user_id == User.id)
                    .where(
                        ChannelAccount.channel == "whatsapp",
                        UserChannel.channel == "whatsapp",
                        UserChannel.address == address,
                    )
                    .order_by(ChannelAccount.id)
                    .limit(1)
                )
            target = dataclasses.replace(target, account=number)
        if channel == "slack" and isinstance(sender, SlackSender):
            slack = sender
            return await deliver_once(
                self.sessions, key=key, target=target, send=lambda: _post_blocks(slack, target, prompt)
            )
        text = prompt.text
        if channel in review_replies.SENDER_NOT_PROVEN and prompt.reply_code:
            text += f"\n\nTo answer by email, reply to this message and keep this line:\n{review_replies.code_line(prompt.reply_code)}"
        return await deliver_once(
            self.sessions, key=key, target=target, send=lambda: sender.send(target, text, key)
        )
