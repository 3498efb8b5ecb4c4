"""The edge's side of intake: one transaction around a message, and the answer queued inside it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import db
from osiris.app.runtime import Runtime
from osiris.ingest import email as email_channel
from osiris.ingest import intake
from osiris.ingest.intake import Inbound, Outcome
from osiris.ingest.notify import Target, enqueue_reply

After = Callable[[AsyncSession, Outcome], Awaitable[None]]


def reply_in_thread(inbound: Inbound) -> After:
    """Queue the answer into the message's own thread (`<channel or chat>:<message ts or id>`)."""
    to, _, thread = inbound.new_thread.partition(":")

    async def reply(session: AsyncSession, outcome: Outcome) -> None:
        if outcome.worth_a_reply:
            account = inbound.accounts[0] if inbound.accounts else None
            target = Target(inbound.channel, to, thread or None, task_id=outcome.task_id, account=account)
            key = f"reply-{inbound.channel}-{inbound.delivery_id}"
            await enqueue_reply(session, target, outcome.reply, key=key)

    return reply


async def accept(runtime: Runtime, inbound: Inbound, *, after: After | None = None) -> Outcome:
    """Run intake and `after` (which queues replies) in one transaction: both commit, or neither."""
    policy = intake.Policy.from_settings(runtime.settings)
    async with db.transaction(runtime.sessions) as session:
        outcome = await intake.receive(
            session, inbound, policy=policy, limiter=runtime.services.channel_limiter
        )
        if after is not None:
            await after(session, outcome)
    return outcome


async def accept_email(runtime: Runtime, raw: bytes, *, recipients: tuple[str, ...] = ()) -> Outcome:
    """The webhook's and the SMTP listener's common path; the answer goes out by mail, as a job."""
    inbound = email_channel.parse_message(
        raw, our_address=runtime.settings.email.address, recipients=recipients
    )
    if inbound is None:
        return Outcome("ignored", "")

    async def reply(session: AsyncSession, outcome: Outcome) -> None:
        if outcome.worth_a_reply:
            target = replace(email_channel.reply_target(inbound), task_id=outcome.task_id)
            await enqueue_reply(session, target, outcome.reply, key=email_channel.reply_key(inbound))

    return await accept(runtime, inbound, after=reply)
