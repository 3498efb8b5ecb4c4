"""Slack: Events API messages, the `/osiris` slash command, and replies into the originating thread.

Thread keys are `<channel>:<thread_ts>`; a message's delivery id is `<team>:<channel>:<ts>`, which a
retried event keeps and which an `app_mention` shares with the `message` event for the same words,
so either arriving twice has one effect.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from osiris.app import jobs
from osiris.ingest.intake import Inbound
from osiris.ingest.notify import SendFailed, Target, retry_after

# The SDK (and aiohttp under it) is imported where it is used, when Slack is configured and in use:
# not every process pays for every channel's SDK at start (issue 17).
if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

CHANNEL = "slack"
# Message subtypes that are a person writing; edits, joins and bot posts are not requests.
PERSON_SUBTYPES = {None, "file_share", "thread_broadcast"}
# Neither may run past another "<": Slack escapes a typed "<" as "&lt;", so a real mention or link
# never holds one, and without that bound "<@A|" repeated 25,000 times took ~10 s (each "<@" scanned
# to the end of the text for a ">").
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^<>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|<>]+)(?:\|([^<>]+))?>")


def signature_ok(signing_secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """Slack's v0 signature; the SDK also refuses timestamps more than five minutes away."""
    from slack_sdk.signature import SignatureVerifier

    try:
        return SignatureVerifier(signing_secret).is_valid_request(body, dict(headers))
    except ValueError:  # a timestamp that is not a number
        return False


def plain_text(text: str) -> str:
    """Slack mrkdwn → what the person typed: mentions dropped, links unwrapped, entities decoded."""
    text = _MENTION.sub("", text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text)
    return html.unescape(text).strip()


def parse_event(payload: Mapping[str, Any]) -> Inbound | None:
    """An event_callback → the normalized message, or None for events that are not a person's words."""
    event = payload.get("event") or {}
    kind = event.get("type")
    if kind not in ("app_mention", "message") or event.get("bot_id"):
        return None
    if event.get("subtype") not in PERSON_SUBTYPES or not event.get("user"):
        return None
    team = str(payload.get("team_id") or event.get("team") or "")
    channel, ts = str(event.get("channel") or ""), str(event.get("ts") or "")
    if not team or not channel or not ts:
        return None
    thread_ts = event.get("thread_ts")
    direct = event.get("channel_type") == "im"
    if kind == "message" and not direct and not thread_ts:
        return None  # channel chatter; a mention in it arrives as its own app_mention event
    return Inbound(
        channel=CHANNEL,
        provider="slack",
        delivery_id=f"{team}:{channel}:{ts}",
        sender=f"{team}:{event['user']}",
        text=plain_text(str(event.get("text") or "")),
        new_thread=f"{channel}:{thread_ts or ts}",
        thread_keys=(f"{channel}:{thread_ts}",) if thread_ts else (),
        allow_keys=(team, str(event["user"])),  # the workspace (deployment), or the user (account)
        accounts=(team,),
        # In a channel, only a mention asks for something; other thread replies only follow up.
        may_create=kind == "app_mention" or direct,
        meta={"slack_event_id": payload.get("event_id"), "slack_ts": ts},
    )


def parse_command(form: Mapping[str, str]) -> Inbound:
    team, user, channel = form.get("team_id", ""), form.get("user_id", ""), form.get("channel_id", "")
    if not team or not user or not channel:
        raise ValueError("a slash command needs team_id, user_id and channel_id")
    return Inbound(
        channel=CHANNEL,
        provider="slack-command",
        delivery_id=form.get("trigger_id") or f"{team}:{channel}:{user}:{form.get('text', '')}",
        sender=f"{team}:{user}",
        text=plain_text(form.get("text", "")),
        # No message to thread under yet: the confirmation we post becomes the thread (notify.py).
        new_thread=f"{channel}:",
        allow_keys=(team, user),
        accounts=(team,),
        display_name=form.get("user_name") or None,
        meta={"slack_command": form.get("command", "/osiris")},
    )


def user_of(sender: str) -> str:
    return sender.partition(":")[2]


class SlackSender:
    def __init__(
        self,
        *,
        token: str | None,
        team_tokens: Mapping[str, str] | None = None,
        base_url: str = "https://slack.com/api/",
        retry_seconds: float = 15.0,
    ) -> None:
        self.token = token
        self.team_tokens = dict(team_tokens or {})
        self.base_url = base_url
        self.retry_seconds = retry_seconds

    def token_for(self, team: str | None) -> str:
        """The workspace's own bot token when it has one (an app installed in several)."""
        token = self.team_tokens.get(team or "") or self.token
        if not token:
            raise SendFailed(f"no Slack bot token for workspace {team}")
        return token

    async def send(self, target: Target, text: str, key: str) -> dict[str, Any]:
        from slack_sdk.errors import SlackApiError
        from slack_sdk.web.async_client import AsyncWebClient

        client = AsyncWebClient(token=self.token_for(target.account), base_url=self.base_url, timeout=15)
        try:
            return await self._post(client, target.to, target.thread, text)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if not target.fallback_to:
                raise SendFailed(f"slack refused: {error}") from exc
            # The bot cannot post where the command was typed: tell the person directly.
            try:
                return await self._post(client, target.fallback_to, None, text)
            except SlackApiError as again:
                raise SendFailed(f"slack refused: {error}") from again

    async def _post(
        self, client: AsyncWebClient, channel: str, thread: str | None, text: str
    ) -> dict[str, Any]:
        import aiohttp
        from slack_sdk.errors import SlackApiError

        try:
            resp = await client.chat_postMessage(channel=channel, text=text, thread_ts=thread or None)
        except SlackApiError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status == 429 or status >= 500:
                raise jobs.Retry(retry_after(exc.response.headers), f"slack answered {status}") from exc
            error = exc.response.get("error") if exc.response is not None else "unknown"
            if error in ("not_in_channel", "channel_not_found"):
                raise
            raise SendFailed(f"slack refused: {error}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise jobs.Retry(self.retry_seconds, f"slack unreachable: {type(exc).__name__}") from exc
        return {"provider_id": resp.get("ts"), "channel": resp.get("channel"), "ts": resp.get("ts")}
