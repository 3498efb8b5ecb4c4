"""Reviews from chat: `approve #12`, `changes #12 <what to change>` (WhatsApp, Telegram, email, a Slack
direct message) and Slack's Approve button and changes field (`slack_actions.py`); `verify <code>`
proves a registered address (`app/reviewer_channels.py`).

The same rules as the portal, through the same service (`lifecycle.approve_task`, `request_changes`):
- the sender is a user only through a *verified* address of theirs (`user_channels`): an unknown
  address, an unverified one, or a deactivated user acts as nobody;
- only reviewers and admins, of the task's organization (another organization's task is not found);
- never the person who asked for it (their account filed it, or it came from their chat address);
- pinned: a text reply approves the version the latest reminder showed, a Slack control the version
  and commit its message carried; anything but the latest version (and its published commit) is
  refused with a reply that says so, and nothing moves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import lifecycle, reminders, reviewer_channels, task_queries
from osiris.app.auth import actor_for
from osiris.app.errors import OsirisError, StaleApproval, TaskNotFound
from osiris.app.models import UserChannel

# Anchored at the start, one literal between the two whitespace runs: linear on any input.
_REVIEW = re.compile(r"\s*(approve|changes)\s*#\s*(\d{1,18})(?!\d)", re.IGNORECASE)
MAX_TASK_ID = 2**63 - 1
# Channels whose provider does not prove who sent a message: anyone can write an email with a
# reviewer's address in From. There an answer counts only with the code its reminder carried.
SENDER_NOT_PROVEN = frozenset({"email"})
NO_CODE = (
    "Nothing done: by email, answer by replying to the reminder itself and keep its "
    "osiris-review-code line (an email's sender alone proves nothing). Or review it in OSIRIS."
)


def code_line(code: str) -> str:
    return f"osiris-review-code: {code}"


NOT_REGISTERED = (
    "Sorry, this address is not registered to an OSIRIS reviewer. Register it in OSIRIS "
    "(POST /api/v1/me/channels) and send the code you get from here as `verify <code>`."
)


@dataclass(frozen=True)
class ReviewReply:
    verb: str  # approve | changes
    task_id: int
    comment: str


@dataclass(frozen=True)
class Answer:
    kind: str  # approved | changes_requested | stale | refused | not_found | verified | help
    reply: str
    task_id: int | None = None


def parse(text: str) -> ReviewReply | None:
    m = _REVIEW.match(text)
    if m is None:
        return None
    comment = text[m.end() :].strip().lstrip(":-").strip()
    return ReviewReply(m.group(1).lower(), int(m.group(2)), comment)


async def verify(session: AsyncSession, *, channel: str, sender: str, code: str) -> Answer:
    row = await reviewer_channels.verify(session, channel=channel, sender=sender, code=code)
    if row is None:
        return Answer("refused", "That code does not match a registration of this address.")
    return Answer("verified", f"This {channel} address is now verified: review reminders will come here.")


async def act(  # noqa: C901 - guard clauses in the order a reviewer must hear them, each its own answer
    session: AsyncSession,
    *,
    channel: str,
    sender: str,
    reply: ReviewReply,
    lease_seconds: int,
    provider_id: str | None = None,
    pinned: tuple[int, str] | None = None,
    proof: str = "",
) -> Answer:
    """Approve or request changes as the user this verified address belongs to, or say why not."""
    user = await reviewer_channels.user_for(session, channel=channel, sender=sender)
    if user is None:
        return Answer("refused", NOT_REGISTERED)
    actor = actor_for(user)
    name = f"task #{reply.task_id}"
    if not actor.is_human:
        return Answer("refused", "Only reviewers and admins approve or request changes.")
    try:
        if reply.task_id > MAX_TASK_ID:
            raise TaskNotFound(name)
        task = await task_queries.get_task(session, actor, reply.task_id, for_update=True)
    except TaskNotFound:
        return Answer("not_found", f"I can't find {name}.")
    if await _is_requester(session, task, user.id, channel, sender):
        return Answer("refused", f"You asked for {name}: someone else has to review it.", task.id)
    if pinned is None:
        shown = await reminders.pinned_reminder(session, task.id)
        if shown is None:
            return Answer(
                "refused", f"No review reminder for {name} was sent yet; review it in OSIRIS.", task.id
            )
        pinned = (shown.version, shown.head_sha)
    version, head_sha = pinned
    if channel in SENDER_NOT_PROVEN:
        codes = await reminders.reply_codes(session, task.id, version)
        if not any(code and code_line(code) in proof for code in codes):
            return Answer("refused", NO_CODE, task.id)
    if version != task.artifact_count:
        return Answer(
            "stale",
            f"Nothing done: {name} has a newer version ({task.artifact_count}) than the one you were shown "
            f"(version {version}). Look at version {task.artifact_count} first.",
            task.id,
        )
    try:
        if reply.verb == "approve":
            await lifecycle.approve_task(
                session,
                actor,
                task.id,
                comment=reply.comment or f"approved on {channel}",
                version=version,
                head_sha=head_sha or None,
            )
            return Answer("approved", f"Approved {name} (version {version}); it will be merged.", task.id)
        if not reply.comment:
            return Answer("help", f"Say what to change: changes #{task.id} <what to change>", task.id)
        await lifecycle.request_changes(
            session,
            actor,
            task.id,
            feedback=reply.comment,
            lease_seconds=lease_seconds,
            source=channel,
            provider_id=provider_id[:200] if provider_id else None,
            meta={"version": version, "via": channel},
        )
        return Answer("changes_requested", f"Changes requested on {name}; the agent is told.", task.id)
    except StaleApproval as exc:
        return Answer("stale", f"Nothing done: {exc.detail}", task.id)
    except OsirisError as exc:
        return Answer("refused", f"Nothing done on {name}: {exc.detail}", task.id)


async def _is_requester(session: AsyncSession, task, user_id: int, channel: str, sender: str) -> bool:
    """Who asked never reviews: the account that filed it, or any verified address of theirs that
    is the task's requester (they may write from another channel than they asked on)."""
    if task.created_by_id == user_id or (task.channel == channel and task.requester == sender):
        return True
    theirs = await session.scalar(
        select(UserChannel.id).where(
            UserChannel.user_id == user_id,
            UserChannel.channel == task.channel,
            UserChannel.address == (task.requester or ""),
            UserChannel.verified_at.is_not(None),
        )
    )
    return theirs is not None
