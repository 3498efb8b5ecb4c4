"""The one intake path: a normalized chat message in, a task, a follow-up or a command answer out.

Every channel adapter (Twilio, Slack, email) turns its provider's request into an `Inbound` and calls
`receive` inside the edge's transaction. The rules live here once: allowlist, per-sender rate limit,
exactly-once per provider message id, threads, `#<id>` references, the short commands, and priority
keywords. Services flush, never commit; the edge owns the transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import accounts, lifecycle, organizations, repositories, reviewer_channels, routing
from osiris.app.actors import requester_actor
from osiris.app.errors import IllegalTransition, RateLimited, UnknownRepository
from osiris.app.models import (
    OPEN_STATUSES,
    Artifact,
    ChannelAccount,
    ChannelAttachment,
    ChannelReceipt,
    Delivery,
    Task,
    TaskStatus,
)
from osiris.app.ratelimit import RateLimiter
from osiris.app.schemas import PRIORITIES
from osiris.app.status_labels import status_label
from osiris.ingest import review_replies

log = logging.getLogger(__name__)
OPEN = [s.value for s in OPEN_STATUSES]
HELP = "Send me a change request and I will open a task. Commands: status, status #<id>, cancel #<id>."
REFUSAL = (
    "Sorry, this address is not set up to send requests to OSIRIS. Please ask your administrator to add you."
)
NO_REPOSITORY = (
    "Sorry, there is no repository set up to take requests from here yet. Please ask your administrator."
)
SLOW_DOWN = "You are sending requests faster than we can take them; please wait a minute and try again."
TOO_LONG = (
    "Sorry, your message is {length:,} characters long and the limit is {limit:,}. Nothing was "
    "recorded: please shorten it (put long logs in an attachment or a link) and send it again."
)
# A status in a chat sentence ("Task #3 is …"). The closed states are the portal's own words
# (status_labels): a person reads "Cancelled" for REJECTED in chat as on the board.
STATUS_WORDS = {
    "PENDING": "waiting for an agent",
    "IN_PROGRESS": "being worked on",
    "REVIEW": "in review",
    "DONE": status_label(TaskStatus.DONE).lower(),
    "REJECTED": status_label(TaskStatus.REJECTED).lower(),
}
TITLE_MAX = 120
# Outcomes not worth a message of their own: a follow-up is acknowledged in the thread by silence,
# and answering a flood would only feed it.
QUIET = frozenset({"followup", "ignored", "rate_limited"})


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes | None = None  # kept (email)
    url: str | None = None  # a provider's reference, never fetched (WhatsApp media)
    size: int = 0


class MalformedMessage(ValueError):
    """A provider's message (a form, a MIME message) that cannot be read: 400, nothing stored."""


@dataclass(frozen=True)
class Inbound:
    """One chat message, whatever channel it came from."""

    channel: str  # whatsapp | slack | email: the value stored in Task.channel
    provider: str  # Delivery.provider
    delivery_id: str  # the provider's id for this message: a redelivery carries the same one
    sender: str  # the requester's address on this channel
    text: str
    new_thread: str  # the thread key a task created from this message gets
    thread_keys: tuple[str, ...] = ()  # thread keys this message replies in
    thread_task_id: int | None = None  # a task the channel's own headers point at (email plus address)
    allow_keys: tuple[str, ...] = ()  # what the channel's allowlist is matched against
    subject: str | None = None  # a title the channel gives (email subject)
    followup_text: str | None = None  # the text without quoted history, for follow-ups and commands
    may_create: bool = True  # False: only follow-ups (a Slack thread reply in some channel)
    display_name: str | None = None
    attachments: tuple[Attachment, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    # The channel account the message was sent to, most specific first (organizations.
    # normalize_account's form): the Twilio number, the Slack team, the recipients' email domains,
    # the GitHub repository and installation, the Telegram bot. It decides the organization.
    accounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    kind: str  # created | followup | status | cancelled | not_found | help | refused | too_long | rate_limited | ignored
    reply: str
    task_id: int | None = None
    duplicate: bool = False  # the same provider message came before; this is its first answer

    @property
    def worth_a_reply(self) -> bool:
        """Whether a channel without a synchronous answer should send `reply` as a message."""
        return bool(self.reply) and not self.duplicate and self.kind not in QUIET


@dataclass(frozen=True)
class Policy:
    repo: str
    base_branch: str
    keywords: Mapping[str, int]
    allowlists: Mapping[str, frozenset[str]]  # channel → allowed keys; empty or absent: everyone
    skill_keywords: Mapping[str, str] = field(default_factory=dict)  # word → skill (routing)
    auto_register: bool = True  # settings.repositories_auto_register
    unmapped: str = "default"  # settings.channel_unmapped: "default" | "refuse"
    repo_named: bool = False  # `repo` was chosen for this message (a GitHub repository's), not the default
    max_chars: int = 10_000  # settings.chat_max_chars: a longer message is refused with TOO_LONG
    lease_seconds: int = 600  # settings.lease_seconds: a reviewer's `changes #<id>` renews the agent's claim

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        return cls(
            repo=settings.repos.default_repo,
            base_branch=settings.repos.default_base_branch,
            keywords={w.lower(): PRIORITIES[p] for w, p in settings.channel.priority_keywords.items()},
            allowlists={
                channel: frozenset(_allow_key(channel, str(v)) for v in values)
                for channel, values in (
                    ("whatsapp", settings.twilio.allowed_numbers),
                    ("slack", settings.slack.allowed_teams),
                    ("email", settings.email.allowed_domains),
                    ("telegram", settings.telegram.allowed_chats),
                )
            },
            skill_keywords=dict(settings.routing.skill_keywords),
            auto_register=settings.repos.repositories_auto_register,
            unmapped=settings.channel.unmapped,
            max_chars=settings.channel.max_chars,
            lease_seconds=settings.tasks.lease_seconds,
        )

    def allows(self, inbound: Inbound) -> bool:
        allowed = self.allowlists.get(inbound.channel)
        return not allowed or any(k in allowed for k in inbound.allow_keys)

    def priority(self, text: str) -> int:
        lowered = text.lower()
        found = [p for word, p in self.keywords.items() if re.search(rf"\b{re.escape(word)}\b", lowered)]
        return max(found, default=PRIORITIES["normal"])


def _number(value: str) -> str:
    return value.removeprefix("whatsapp:").strip()


def _allow_key(channel: str, value: str) -> str:
    """An allowlist entry in the form adapters put on Inbound.allow_keys."""
    if channel == "whatsapp":
        return _number(value)
    return value.strip().lower() if channel == "email" else value.strip()


def policy_for(base: Policy, channel: str, account: ChannelAccount | None) -> Policy:
    """The effective policy of one message: the deployment's, overridden by its channel account's.

    The account's `allowed_senders` (when non-empty) replace the deployment's allowlist for this
    channel; its priority and skill keywords are merged in, the account's winning; its `repo`
    replaces the default repository unless the message already names one (a GitHub repository's).
    The settings were checked on write (schemas.ChannelAccountSettings).
    """
    own = account.settings if account is not None else None
    if not own:
        return base
    changes: dict[str, Any] = {}
    if senders := own.get("allowed_senders"):
        allowed = frozenset(_allow_key(channel, str(s)) for s in senders)
        changes["allowlists"] = {**base.allowlists, channel: allowed}
    if words := own.get("priority_keywords"):
        changes["keywords"] = {**base.keywords, **{w.lower(): PRIORITIES[p] for w, p in words.items()}}
    if words := own.get("skill_keywords"):
        merged = {w.lower(): s for w, s in base.skill_keywords.items()}
        changes["skill_keywords"] = {**merged, **{w.lower(): s for w, s in words.items()}}
    if (repo := own.get("repo")) and not base.repo_named:
        changes.update(repo=repo, repo_named=True)
    return dataclasses.replace(base, **changes)


# --- text --------------------------------------------------------------------------------------

# Every pattern here runs on a sender's text on the event loop, so none may backtrack more than
# linearly: no two adjacent quantifiers that can match the same characters (the old command pattern,
# `^\s*(status|cancel|help)\s*(?:#\s*(\d+))?\s*[.!?]*\s*$`, took ~18 s on "status" + 2,000
# spaces + "x"). Commands are matched on whitespace-collapsed text of at most COMMAND_MAX characters;
# tests/security/test_attack_redos.py holds each channel to it.
COMMAND_MAX = 64
_COMMAND = re.compile(r"(status|cancel|help)(?: ?# ?(\d+))?", re.IGNORECASE)
_LEADING_REF = re.compile(r"\s*#(\d{1,18})\b[\s:,.-]*")  # a longer number names no task: a request
_NEW = re.compile(r"\s*new(?:\s*[:\-])?\s+", re.IGNORECASE)
MAX_TASK_ID = 2**63 - 1  # a bigint: a larger number names no task


@dataclass(frozen=True)
class Command:
    name: str  # status | cancel | help
    task_id: int | None


def parse_command(text: str) -> Command | None:
    """Only a message that is nothing but a command is one: "cancel the export" is a request.

    Whitespace of any kind and length counts as one space, trailing `.!?` are dropped; the pattern
    then only ever sees a short string with single spaces (linear whatever the sender sends).
    """
    short = " ".join(text.split()).rstrip(".!?").rstrip()
    if len(short) > COMMAND_MAX:
        return None
    m = _COMMAND.fullmatch(short)
    if m is None:
        return None
    return Command(m.group(1).lower(), int(m.group(2)) if m.group(2) else None)


def title_from(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) <= TITLE_MAX:
        return first
    cut = first[:TITLE_MAX].rsplit(" ", 1)[0]
    return (cut or first[:TITLE_MAX]).rstrip(" ,.;:") + "…"


def redact(address: str) -> str:
    """For logs: enough to tell senders apart, not enough to contact them: the last four characters,
    after a channel prefix such as `whatsapp:+` (an email address keeps neither name nor domain)."""
    if len(address) <= 8:
        return "…"
    if "@" in address:
        return "…" + address[-4:]
    return address[:-4].rstrip("0123456789") + "…" + address[-4:]


# --- the organization --------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """The organization a message is for, and the channel account row that said so (if one did)."""

    org_id: int
    account: ChannelAccount | None = None  # None: a GitHub repository's registration, or unmapped


async def organization_for(
    session: AsyncSession, inbound: Inbound, *, unmapped: str = "default"
) -> Destination | None:
    """Which organization a channel message belongs to; None: nobody's, refuse it.

    The one place: the `channel_accounts` row of the account the message was sent to (a GitHub
    repository also by the `repositories.github_repo` an organization registered); an account
    nobody mapped belongs to the default organization, unless `unmapped` is "refuse". The row comes
    back too, for its settings (policy_for): look it up once per message.
    """
    row = await organizations.account_for_inbound(session, inbound.channel, inbound.accounts)
    if row is not None:
        return Destination(row.org_id, row)
    if inbound.channel == "github":
        for account in inbound.accounts:
            if "/" in account and (org_id := await repositories.org_for_github_repo(session, account)):
                return Destination(org_id)
    if unmapped == "refuse":
        return None
    return Destination((await accounts.default_org(session)).id)


# --- the service -------------------------------------------------------------------------------


async def receive(
    session: AsyncSession,
    inbound: Inbound,
    *,
    policy: Policy,
    limiter: RateLimiter | None,
    destination: Destination | None = None,
) -> Outcome:
    """`policy` is the deployment's (with a repository the message names); `destination`: the
    caller's own organization_for answer, when it needed it first (GitHub issues)."""
    if destination is None:
        destination = await organization_for(session, inbound, unmapped=policy.unmapped)
    if destination is None:
        log.info("channel account not mapped to an organization", extra={"channel": inbound.channel})
        return Outcome("ignored", "")  # nothing stored; the provider gets its usual answer
    org_id = destination.org_id
    policy = policy_for(policy, inbound.channel, destination.account)
    if not policy.allows(inbound):
        log.info(
            "sender not on the allowlist",
            extra={"channel": inbound.channel, "sender": redact(inbound.sender)},
        )
        return Outcome("refused", REFUSAL)
    if limiter is not None:
        try:
            limiter.hit(inbound.channel, inbound.sender)
        except RateLimited:
            log.info(
                "sender rate limited", extra={"channel": inbound.channel, "sender": redact(inbound.sender)}
            )
            return Outcome("rate_limited", SLOW_DOWN)
    if not inbound.may_create and await _thread_task(session, org_id, inbound) is None:
        return Outcome("ignored", "")  # chatter in a thread that is not ours: not even recorded
    delivery_id = await _record_delivery(session, org_id, inbound)
    if delivery_id is None:
        return await _first_answer(session, inbound)
    outcome = await _act(session, org_id, inbound, policy)
    session.add(
        ChannelReceipt(
            org_id=org_id,
            delivery_id=delivery_id,
            channel=inbound.channel,
            sender=inbound.sender,
            task_id=outcome.task_id,
            outcome=outcome.kind,
            reply=outcome.reply,
        )
    )
    await session.flush()
    return outcome


async def _record_delivery(session: AsyncSession, org_id: int, inbound: Inbound) -> int | None:
    """Insert the delivery once; a concurrent twin waits on the unique index, then sees a conflict."""
    stmt = (
        pg_insert(Delivery)
        .values(org_id=org_id, provider=inbound.provider, delivery_id=inbound.delivery_id[:200])
        .on_conflict_do_nothing(constraint="uq_deliveries_provider_delivery")
        .returning(Delivery.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def _first_answer(session: AsyncSession, inbound: Inbound) -> Outcome:
    receipt = await session.scalar(
        select(ChannelReceipt)
        .join(Delivery, Delivery.id == ChannelReceipt.delivery_id)
        .where(Delivery.provider == inbound.provider, Delivery.delivery_id == inbound.delivery_id[:200])
    )
    if receipt is None:
        return Outcome("ignored", "", duplicate=True)
    return Outcome(receipt.outcome, receipt.reply, receipt.task_id, duplicate=True)


def _too_long(length: int, policy: Policy) -> Outcome:
    return Outcome("too_long", TOO_LONG.format(length=length, limit=policy.max_chars))


async def _act(session: AsyncSession, org_id: int, inbound: Inbound, policy: Policy) -> Outcome:
    short = inbound.followup_text if inbound.followup_text is not None else inbound.text
    # Before any pattern sees it. `short` is what a follow-up or a command keeps (an email reply
    # without its quoted history); a new task keeps `text`, checked in _create.
    if len(short) > policy.max_chars:
        return _too_long(len(short), policy)
    if (review := review_replies.parse(short)) is not None:  # a reviewer: approve #12, changes #12 …
        answer = await review_replies.act(
            session,
            channel=inbound.channel,
            sender=inbound.sender,
            reply=review,
            lease_seconds=policy.lease_seconds,
            provider_id=inbound.delivery_id,
            proof=f"{inbound.subject or ''}\n{inbound.text}",  # the quoted reminder, with its code
        )
        return Outcome(answer.kind, answer.reply, answer.task_id)
    if (code := reviewer_channels.verify_code_in(short)) is not None:  # verify <code>
        answer = await review_replies.verify(
            session, channel=inbound.channel, sender=inbound.sender, code=code
        )
        return Outcome(answer.kind, answer.reply)
    command = parse_command(short)
    in_thread = await _thread_task(session, org_id, inbound)
    if command is not None:
        return await _command(session, org_id, inbound, command, in_thread)
    text = inbound.text
    ref = _LEADING_REF.match(short)
    task = await _own_task(session, org_id, inbound, int(ref.group(1))) if ref else None
    if ref is not None and task is not None:  # "#1 priority: …" from someone without task 1 is a request
        if task.status not in OPEN:
            return Outcome(
                "not_found",
                f"Task #{task.id} is already {STATUS_WORDS[task.status]}; send a new message for a new request.",
                task.id,
            )
        return await _follow_up(session, task, inbound, short[ref.end() :])
    forced_new = _NEW.match(text)
    if in_thread is not None and in_thread.status in OPEN and forced_new is None:
        return await _follow_up(session, in_thread, inbound, short)
    if not inbound.may_create:
        return Outcome("ignored", "")
    if forced_new is not None:
        text = text[forced_new.end() :]
    return await _create(session, org_id, inbound, text, policy)


async def _thread_task(session: AsyncSession, org_id: int, inbound: Inbound) -> Task | None:
    """The task this message's thread belongs to: the newest open one, else the newest closed one."""
    stmt = select(Task).where(Task.org_id == org_id, Task.channel == inbound.channel)
    if inbound.thread_task_id is not None:
        return await session.scalar(stmt.where(Task.id == inbound.thread_task_id))
    if not inbound.thread_keys:
        return None
    stmt = (
        stmt.where(Task.channel_thread.in_(inbound.thread_keys))
        .order_by(case((Task.status.in_(OPEN), 0), else_=1), Task.id.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


async def _own_task(session: AsyncSession, org_id: int, inbound: Inbound, task_id: int) -> Task | None:
    """A task named by number counts only if this sender asked for it on this channel."""
    return await session.scalar(
        select(Task).where(
            Task.id == task_id,
            Task.org_id == org_id,
            Task.channel == inbound.channel,
            Task.requester == inbound.sender,
        )
    )


def _is_theirs(task: Task, inbound: Inbound) -> bool:
    return task.channel == inbound.channel and task.requester == inbound.sender


async def _command(
    session: AsyncSession, org_id: int, inbound: Inbound, command: Command, in_thread: Task | None
) -> Outcome:
    if command.name == "help":
        return Outcome("help", HELP)
    task = in_thread
    if command.task_id is not None:
        too_big = command.task_id > MAX_TASK_ID
        task = None if too_big else await _own_task(session, org_id, inbound, command.task_id)
        if task is None:
            return Outcome("not_found", f"I can't find task #{command.task_id} among your requests.")
    if command.name == "status":
        if task is None:
            return Outcome("status", await _open_tasks_summary(session, org_id, inbound))
        return Outcome("status", await status_line(session, task), task.id)
    if task is None:
        return Outcome("help", "Which one? Say cancel #<id>.")
    if not _is_theirs(task, inbound):
        return Outcome("not_found", f"Only the person who asked for task #{task.id} can cancel it.", task.id)
    try:
        await lifecycle.cancel_task(
            session,
            requester_actor(org_id, inbound.sender),
            task.id,
            reason=f"cancelled by the requester on {inbound.channel}",
        )
    except IllegalTransition:
        return Outcome("status", f"Task #{task.id} is already {STATUS_WORDS[task.status]}.", task.id)
    return Outcome("cancelled", f"Task #{task.id} cancelled: {task.title}", task.id)


async def status_line(session: AsyncSession, task: Task) -> str:
    line = f"Task #{task.id} ({task.title}) is {STATUS_WORDS.get(task.status, task.status)}."
    url = await pr_url(session, task)
    return f"{line} {url}" if url and task.status in ("REVIEW", "DONE") else line


async def pr_url(session: AsyncSession, task: Task) -> str | None:
    return await session.scalar(
        select(Artifact.pr_url)
        .where(Artifact.task_id == task.id, Artifact.pr_url.is_not(None))
        .order_by(Artifact.version.desc())
        .limit(1)
    )


async def _open_tasks_summary(session: AsyncSession, org_id: int, inbound: Inbound) -> str:
    tasks = (
        await session.execute(
            select(Task)
            .where(
                Task.org_id == org_id,
                Task.channel == inbound.channel,
                Task.requester == inbound.sender,
                Task.status.in_(OPEN),
            )
            .order_by(Task.id.desc())
            .limit(10)
        )
    ).scalars()
    lines = [f"#{t.id} {t.title}: {STATUS_WORDS[t.status]}" for t in tasks]
    if not lines:
        return "You have no open requests."
    return "Your open requests:\n" + "\n".join(lines)


async def _follow_up(session: AsyncSession, task: Task, inbound: Inbound, body: str) -> Outcome:
    body = body.strip() or ("(attachments)" if inbound.attachments else "")
    if not body:
        return Outcome("help", HELP, task.id)
    message = await lifecycle.add_message(
        session,
        task,
        requester_actor(task.org_id, inbound.sender),
        body=body,
        source=inbound.channel,
        provider_id=inbound.delivery_id[:200],
        meta={"sender": inbound.sender, "display_name": inbound.display_name, **inbound.meta},
        author_name=(inbound.display_name or inbound.sender)[:200],
    )
    if message is not None:
        await _store_attachments(session, task, inbound, message_id=message.id)
    return Outcome("followup", f"Added to task #{task.id}.", task.id)


async def _create(session: AsyncSession, org_id: int, inbound: Inbound, text: str, policy: Policy) -> Outcome:
    if len(text) > policy.max_chars:
        return _too_long(len(text), policy)
    title = title_from(inbound.subject or "") or title_from(text)
    if not title and inbound.attachments:
        title = f"Request with {len(inbound.attachments)} attachment(s)"
    if not title:
        return Outcome("help", HELP)
    description = text.strip()
    if inbound.attachments:
        listed = "\n".join(f"- {a.filename} ({a.content_type}, {a.size} bytes)" for a in inbound.attachments)
        description = f"{description}\n\nAttachments:\n{listed}".strip()
    try:
        repo = await repositories.repository_for_task(
            session,
            org_id=org_id,
            name=policy.repo if policy.repo_named else None,
            default_repo=policy.repo,
            auto_register=policy.auto_register,
        )
    except UnknownRepository:
        log.info("no repository for a channel request", extra={"channel": inbound.channel, "org_id": org_id})
        return Outcome("refused", NO_REPOSITORY)
    task = await lifecycle.create_task(
        session,
        requester_actor(org_id, inbound.sender),
        title=title,
        description=description,
        priority=policy.priority(f"{inbound.subject or ''}\n{text}"),
        repo=repo,
        base_branch=policy.base_branch,
        requester=inbound.sender,
        channel=inbound.channel,
        channel_thread=inbound.new_thread[:300],
        skills=routing.skills_from_text(dict(policy.skill_keywords), f"{inbound.subject or ''}\n{text}"),
    )
    await _store_attachments(session, task, inbound, message_id=None)
    return Outcome("created", f"Task #{task.id} created: {task.title}", task.id)


async def _store_attachments(
    session: AsyncSession, task: Task, inbound: Inbound, *, message_id: int | None
) -> None:
    for a in inbound.attachments:
        session.add(
            ChannelAttachment(
                org_id=task.org_id,
                task_id=task.id,
                message_id=message_id,
                filename=a.filename[:300],
                content_type=a.content_type[:200],
                size_bytes=a.size,
                content=a.content,
                url=a.url,
            )
        )
    if inbound.attachments:
        await session.flush()
