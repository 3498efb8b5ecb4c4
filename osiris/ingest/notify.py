"""Replies to requesters, in the channel and thread they asked from.

`ChannelNotifier` is the Notifier port that effects.py's jobs call after commit. Each outgoing message
has a key — the task and the TaskEvent (or Message) it reports — and a row in `channel_notifications`
under that key, locked while the provider call runs: a retried or duplicated job finds it sent and
stops. Providers' busy answers (429, 5xx, network errors) raise `jobs.Retry` so the queue retries
with backoff; a permanent refusal is recorded and returned, so it shows up as a TaskEvent and never
blocks the task.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from osiris.app import jobs
from osiris.app.actors import system_actor
from osiris.app.events import record_event
from osiris.app.models import ChannelAccount, ChannelNotification, Message, Task, TaskEvent
from osiris.app.retry_after import retry_after_seconds
from osiris.ingest.intake import STATUS_WORDS, pr_url

log = logging.getLogger(__name__)

CHANNEL_REPLY = "channel_reply"
DEFAULT_BACKOFF = 30.0
RECENT = 20  # how far back a notification job looks for events the requester has not heard of


@dataclass(frozen=True)
class Target:
    """Where a message goes: a WhatsApp number, a Slack channel (+ thread), an email address."""

    channel: str
    to: str
    thread: str | None = None  # Slack thread_ts; the email Message-ID to reply to
    subject: str | None = None  # email
    task_id: int | None = None
    fallback_to: str | None = None  # Slack: the requester's DM when the bot is not in the channel
    account: str | None = None  # Slack: the workspace (team id); WhatsApp: the number replies come from


class SendFailed(Exception):
    """The provider refused for good (bad number, channel gone): retrying would not help."""


class Sender(Protocol):
    async def send(self, target: Target, text: str, key: str) -> dict[str, Any]: ...


def retry_after(headers: Mapping[str, str] | None, default: float = DEFAULT_BACKOFF) -> float:
    """The channels' wait: the provider's Retry-After (seconds or an HTTP date), at least 1 s; else
    the default."""
    seconds = retry_after_seconds(headers)
    return default if seconds is None else max(1.0, seconds)


def target_for(task: Task) -> Target:
    if task.channel == "slack":
        channel, _, ts = (task.channel_thread or "").partition(":")
        team = (task.requester or "").partition(":")[0]  # requesters are "<team>:<user>"
        return Target("slack", channel, ts or None, task_id=task.id, account=team or None)
    if task.channel == "email":
        return Target(
            "email",
            task.requester or "",
            task.channel_thread,
            subject=f"[OSIRIS #{task.id}] {task.title}",
            task_id=task.id,
        )
    if task.channel == "telegram":  # thread: "<chat id>:<the request's message id>"
        chat, _, message_id = (task.channel_thread or "").partition(":")
        return Target("telegram", chat, message_id or None, task_id=task.id)
    if task.channel == "github":  # thread: "owner/repo#<issue number>"
        return Target("github", task.channel_thread or "", task_id=task.id)
    return Target(task.channel, task.requester or "", task_id=task.id)


async def deliver_once(
    sessions: async_sessionmaker[AsyncSession],
    *,
    key: str,
    target: Target,
    send: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Send under `key` at most once; concurrent holders of the same key wait on the row lock.

    A crash after the provider accepted and before the commit sends again on retry: at least once
    at that one point, exactly once everywhere else.
    """
    async with sessions() as session, session.begin():
        await session.execute(
            pg_insert(ChannelNotification)
            .values(key=key, channel=target.channel, task_id=target.task_id)
            .on_conflict_do_nothing(constraint="uq_channel_notifications_key")
        )
        row = await session.scalar(
            select(ChannelNotification).where(ChannelNotification.key == key).with_for_update()
        )
        assert row is not None
        if row.state != "sending":
            return {
                **row.detail,
                "key": key,
                "skipped": f"already {row.state}",
                "provider_id": row.provider_id,
            }
        try:
            result = await send()
        except SendFailed as exc:
            row.state, row.detail = "failed", {"error": str(exc)}
            log.warning("channel message refused", extra={"channel": target.channel, "key": key})
            return {"key": key, "ok": False, "channel": target.channel, "error": str(exc)}
        row.state, row.sent_at = "sent", func.now()
        row.provider_id = str(result.get("provider_id") or "")[:300] or None
        row.detail = result
        return {"key": key, "ok": True, "channel": target.channel, **result}


class ChannelNotifier:
    """The Notifier port: dispatches by `task.channel` to the configured senders."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], senders: Mapping[str, Sender]) -> None:
        self.sessions = sessions
        self.senders = dict(senders)

    async def notify(self, task: Task, kind: str, text: str) -> dict[str, Any]:
        """Tell the requester everything about `kind` they have not heard yet, oldest first.

        A job may run late, after further transitions: each pending event still gets its own
        message, in order, and the job for the later one finds them sent.
        """
        sender = self.senders.get(task.channel)
        if sender is None:
            return {"skipped": f"replies on {task.channel} are not configured"}
        target = target_for(task)
        async with self.sessions() as session:
            pending = await (
                self._messages(session, task) if kind == "message" else self._transitions(session, task)
            )
            if pending and task.channel == "whatsapp":
                # replies come from the organization's own number, if the operator mapped one
                number = await session.scalar(
                    select(ChannelAccount.account)
                    .where(ChannelAccount.org_id == task.org_id, ChannelAccount.channel == "whatsapp")
                    .order_by(ChannelAccount.id)
                    .limit(1)
                )
                target = dataclasses.replace(target, account=number)
        if not pending:
            return {"skipped": "nothing new to tell"}
        results = []
        for key, words in pending:
            results.append(
                await deliver_once(
                    self.sessions,
                    key=key,
                    target=target,
                    send=lambda k=key, w=words: sender.send(target, w, k),
                )
            )
        return results[0] if len(results) == 1 else {"sent": results}

    async def reply(self, target: Target, text: str, key: str) -> dict[str, Any]:
        """Answer an inbound message (created, refused, status …) outside any status change."""
        sender = self.senders.get(target.channel)
        if sender is None:
            return {"skipped": f"replies on {target.channel} are not configured"}
        return await deliver_once(
            self.sessions, key=key, target=target, send=lambda: sender.send(target, text, key)
        )

    async def _sent_keys(self, session: AsyncSession, task: Task) -> set[str]:
        rows = await session.execute(
            select(ChannelNotification.key).where(ChannelNotification.task_id == task.id)
        )
        return set(rows.scalars())

    async def _transitions(self, session: AsyncSession, task: Task) -> list[tuple[str, str]]:
        events = (
            await session.execute(
                select(TaskEvent)
                .where(
                    TaskEvent.task_id == task.id,
                    TaskEvent.to_status.is_not(None),
                    TaskEvent.kind != "created",
                )
                .order_by(TaskEvent.id.desc())
                .limit(RECENT)
            )
        ).scalars()
        done = await self._sent_keys(session, task)
        pending = []
        for event in reversed(list(events)):
            key = f"task-{task.id}-event-{event.id}"
            if key in done or (event.kind == "cancel" and event.actor_name == task.requester):
                continue  # sent already; or they cancelled it themselves and were answered on the spot
            pending.append((key, await _status_words(session, task, event)))
        return pending

    async def _messages(self, session: AsyncSession, task: Task) -> list[tuple[str, str]]:
        messages = (
            await session.execute(
                select(Message)
                .where(Message.task_id == task.id, Message.direction == "from_agent")
                .order_by(Message.id.desc())
                .limit(RECENT)
            )
        ).scalars()
        done = await self._sent_keys(session, task)
        return [
            (key, f"Task #{task.id}: the agent asks:\n{m.body}")
            for m in reversed(list(messages))
            if (key := f"task-{task.id}-message-{m.id}") not in done
        ]


async def _status_words(session: AsyncSession, task: Task, event: TaskEvent) -> str:
    name = f"Task #{task.id} ({task.title})"
    url = await pr_url(session, task)
    if event.kind == "claim":
        return f"{name} was picked up by an agent and is being worked on."
    if event.kind in ("release", "expire"):
        return f"{name} is back in the queue, waiting for an agent."
    if event.kind == "submit":
        if url is None:
            await _wait_for_link(session, task, event)
        return f"{name} is ready for review." + (f" {url}" if url else "")
    if event.kind == "request_changes":
        return f"{name}: the reviewer asked for changes; the agent is on it."
    if event.kind == "approve":
        return f"{name} is done and merged." + (f" {url}" if url else "")
    if event.kind == "cancel":
        reason = (event.data or {}).get("reason")
        return f"{name} was {STATUS_WORDS['REJECTED']}." + (f" Reason: {reason}" if reason else "")
    status = event.to_status or task.status
    return f"{name} is {STATUS_WORDS.get(status, status)}."


PUBLISH_OUTCOMES = ("published", "publish_failed", "publish_skipped")
LINK_WAIT = timedelta(minutes=10)


async def _wait_for_link(session: AsyncSession, task: Task, event: TaskEvent) -> None:
    """An issue's "ready for review" names its PR: wait (a while) for the publish job to open it.

    The submit's notification and the publish are separate jobs; on GitHub the answer on the issue
    is worth little without the link. A publish that failed, or one that takes too long, stops the wait.
    """
    if task.channel != "github" or event.created_at < datetime.now(UTC) - LINK_WAIT:
        return
    outcome = await session.scalar(
        select(TaskEvent.id)
        .where(TaskEvent.task_id == task.id, TaskEvent.id > event.id, TaskEvent.kind.in_(PUBLISH_OUTCOMES))
        .limit(1)
    )
    if outcome is None:
        raise jobs.Retry(3.0, "waiting for the pull request before telling the issue")


# --- replies to inbound messages, as jobs ------------------------------------------------------


async def enqueue_reply(
    session: AsyncSession, target: Target, text: str, *, key: str, anchor_task_id: int | None = None
) -> None:
    """Queue an answer in the transaction that recorded the message: both commit, or neither."""
    payload = {"target": asdict(target), "text": text, "key": key, "anchor_task_id": anchor_task_id}
    await jobs.enqueue(session, CHANNEL_REPLY, payload, dedupe_key=key)


@jobs.job_handler(CHANNEL_REPLY)
async def channel_reply(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    notifier: ChannelNotifier | None = ctx.services.notifier
    if notifier is None:
        return
    target = Target(**payload["target"])
    result = await notifier.reply(target, payload["text"], payload["key"])
    anchor = payload.get("anchor_task_id")
    if target.task_id is None and anchor is None:
        return
    async with ctx.sessions() as session, session.begin():
        task = await session.get(Task, anchor or target.task_id)
        if task is None:
            return
        if anchor and result.get("ts"):
            # A slash command has no message to thread under: the confirmation we posted becomes
            # the thread, so every later notification lands beside it.
            await session.execute(
                update(Task)
                .where(Task.id == task.id, Task.channel_thread.not_like("%:%.%"))
                .values(channel_thread=f"{result['channel']}:{result['ts']}")
            )
        await record_event(
            session, task, system_actor(task.org_id, "channel"), "requester_replied", data=result
        )
