"""Reviews that never wait unseen: reminders to reviewers, escalation to admins.

A task in REVIEW waits since its latest *activity*: a transition, a message (a review, a comment, the
requester's or the agent's words), a review request, a thread resolved or reopened. Once it has
waited `every` seconds (the repository's `review_remind_after_seconds`, else the organization's,
else `OSIRIS_REVIEW_REMIND_AFTER`; 0 is off) interval n = floor(waited / every) is due: 1 goes to the
organization's reviewers (its admins when it has none), 2 and later to reviewers and admins
(escalated). Any activity moves the anchor, so reminders stop the moment anyone acts, and start
counting again from there.

`scan_due` is one statement for every organization's waiting reviews: it computes the due intervals
(outside the organization's quiet hours) and claims each by inserting its `review_reminders` row
(unique per task, anchor and interval), so replicas scanning at once send each interval once. In the
same transaction each claimed row gets a `remind_reviewers` job (dedupe key per task, anchor and
interval). The job re-checks that nobody acted in between, then sends through the ports: each
reviewer's verified chat addresses and the repository's (else the organization's) Slack review
channel, if one is set (`ports.ReviewerNotifier`), and, on a code host that can
(`ports.ReviewRequester`), a review request on the pull request.
"""

from __future__ import annotations

import json
import logging
import math
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import jobs, reviewer_channels
from osiris.app.actors import Actor, system_actor
from osiris.app.errors import Forbidden, InvalidInput, NotFound
from osiris.app.events import record_event
from osiris.app.models import (
    Artifact,
    ArtifactKind,
    Organization,
    Repository,
    ReviewReminder,
    Role,
    Task,
    TaskEvent,
    TaskStatus,
    User,
    UserChannel,
)
from osiris.app.ports import ReviewerNotifier, ReviewPrompt, ReviewRequester

log = logging.getLogger(__name__)

REMIND_REVIEWERS = "remind_reviewers"
REMINDED = "review_reminded"  # the TaskEvent a sent reminder writes (not an activity: no reset)
# Events that are someone acting on a task, besides every transition (to_status set).
ACTIVITY_KINDS = ("message", "review_requested", "review_thread_resolved", "review_thread_reopened")

# The latest activity of a task: newest first along ix_task_events_task_id_id, first match.
_ANCHOR = (
    "SELECT e.id, e.created_at FROM task_events e WHERE e.task_id = t.id"
    " AND (e.to_status IS NOT NULL OR e.kind = ANY(CAST(:activity AS text[]))) ORDER BY e.id DESC LIMIT 1"
)
_QUIET = (
    "(w.qs IS NOT NULL AND w.qe IS NOT NULL AND CASE WHEN w.qs <= w.qe"
    " THEN w.local_time >= w.qs AND w.local_time < w.qe"
    " ELSE w.local_time >= w.qs OR w.local_time < w.qe END)"
)
WAITING_SQL = (
    "SELECT t.id AS task_id, t.org_id, t.artifact_count AS version, a.commit_sha AS head_sha,"  # noqa: S608
    " anchor.id AS anchor_event_id, anchor.created_at AS since,"
    " COALESCE(r.review_remind_after_seconds, o.review_remind_after_seconds, :default_seconds) AS every,"
    " o.quiet_hours_start AS qs, o.quiet_hours_end AS qe,"
    " CAST(CAST(:now AS timestamptz) AT TIME ZONE o.timezone AS time) AS local_time"
    " FROM tasks t"
    " JOIN organizations o ON o.id = t.org_id"
    " JOIN artifacts a ON a.task_id = t.id AND a.version = t.artifact_count"
    " LEFT JOIN repositories r ON lower(r.name) = lower(t.repo) AND r.org_id = t.org_id"
    f" CROSS JOIN LATERAL ({_ANCHOR}) anchor"
    " WHERE t.status = 'REVIEW' AND a.commit_sha IS NOT NULL"
)
DUE_SQL = (
    f"WITH w AS ({WAITING_SQL}), due AS ("  # noqa: S608 - module constants only
    " SELECT w.*, CAST(floor(extract(epoch FROM CAST(:now AS timestamptz) - w.since) / w.every) AS int) AS n"
    f" FROM w WHERE w.every > 0 AND NOT {_QUIET})"
    " INSERT INTO review_reminders (org_id, task_id, anchor_event_id, interval_no, version, head_sha, escalated)"
    " SELECT org_id, task_id, anchor_event_id, n, version, head_sha, n >= 2 FROM due WHERE n >= 1"
    " ON CONFLICT ON CONSTRAINT uq_review_reminders_interval DO NOTHING"
    " RETURNING id, task_id, anchor_event_id, interval_no"
)
_DUE = text(DUE_SQL)
# The same computation without the claim (bench/reminders.py measures it against a bare SELECT).
_DUE_HEAD = DUE_SQL.split(" INSERT INTO")[0]
DUE_SELECT_SQL = f"{_DUE_HEAD} SELECT task_id, anchor_event_id, n FROM due WHERE n >= 1"  # noqa: S608


def _params(settings: Any, now: datetime | None) -> dict[str, Any]:
    return {
        "now": now or datetime.now(UTC),
        "default_seconds": int(settings.review.remind_after.total_seconds()),
        "activity": list(ACTIVITY_KINDS),
    }


async def scan_due(session: AsyncSession, settings: Any, *, now: datetime | None = None) -> list[int]:
    """Claim every due reminder in one statement and queue its job; returns the reminder ids.

    Safe on every replica at once: a concurrent scan's INSERT of the same (task, anchor, interval)
    waits on the unique index and then skips it, and the job's dedupe key covers a retry."""
    rows = (await session.execute(_DUE, _params(settings, now))).all()
    if not rows:
        return []
    conn = await jobs._raw_connection(session)
    from pgqueuer import AsyncpgDriver, Queries

    await Queries(AsyncpgDriver(conn)).enqueue(
        [REMIND_REVIEWERS] * len(rows),
        [json.dumps({"reminder_id": r.id}).encode() for r in rows],
        [0] * len(rows),
        [None] * len(rows),
        [f"remind-{r.task_id}-{r.anchor_event_id}-{r.interval_no}" for r in rows],
        on_conflict="skip",
    )
    return [r.id for r in rows]


# --- the policy: per organization and per repository -----------------------------------------


def _require_admin(actor: Actor) -> None:
    if actor.role is not Role.ADMIN:
        raise Forbidden("only an admin sets the review reminders")


async def set_org_policy(
    session: AsyncSession,
    actor: Actor,
    *,
    remind_after_seconds: int | None,
    quiet_hours: tuple[time, time] | None,
    timezone: str = "UTC",
    slack_channel: str | None = None,
) -> Organization:
    """An admin's organization: its own interval (None: the deployment's; 0: off), quiet hours and
    Slack review channel (`<team>:<channel>`: every reminder is also posted there; None: none)."""
    _require_admin(actor)
    channel = reviewer_channels.normalize_slack_channel(slack_channel)
    if remind_after_seconds is not None and remind_after_seconds < 0:
        raise InvalidInput("the interval is a number of seconds, 0 or more")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {timezone!r}") from None
    org = await session.get(Organization, actor.org_id, with_for_update=True)
    assert org is not None  # noqa: S101 - an actor's organization exists
    org.review_remind_after_seconds = remind_after_seconds
    org.quiet_hours_start, org.quiet_hours_end = quiet_hours or (None, None)
    org.timezone = timezone
    org.review_slack_channel = channel
    await session.flush()
    return org


async def set_repository_interval(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    remind_after_seconds: int | None,
    slack_channel: str | None = None,
) -> Repository:
    """A repository's interval and Slack review channel, over the organization's (None: theirs)."""
    _require_admin(actor)
    channel = reviewer_channels.normalize_slack_channel(slack_channel)
    if remind_after_seconds is not None and remind_after_seconds < 0:
        raise InvalidInput("the interval is a number of seconds, 0 or more")
    repo = await session.scalar(
        select(Repository).where(Repository.org_id == actor.org_id, Repository.name == name)
    )
    if repo is None:
        raise NotFound(f"no repository {name!r} in your organization")
    repo.review_remind_after_seconds = remind_after_seconds
    repo.review_slack_channel = channel
    await session.flush()
    return repo


async def review_channel(session: AsyncSession, task: Task) -> str | None:
    """The Slack channel a task's reminders are also posted to: its repository's, else its
    organization's; None when neither has one."""
    found = await session.scalar(
        select(Repository.review_slack_channel).where(
            Repository.org_id == task.org_id, func.lower(Repository.name) == task.repo.lower()
        )
    )
    if found:
        return found
    return await session.scalar(
        select(Organization.review_slack_channel).where(Organization.id == task.org_id)
    )


# --- what a reminder says ----------------------------------------------------------------------


@dataclass(frozen=True)
class DiffSize:
    files: int
    added: int
    removed: int

    def words(self) -> str:
        files = f"{self.files} file{'s' if self.files != 1 else ''}"
        return f"{files}, +{self.added} −{self.removed}"


def diff_size(artifact: Artifact) -> DiffSize:
    """Files and lines a version changes, from what the agent submitted (no code host call)."""
    if artifact.kind == ArtifactKind.PATCH.value:
        files = added = removed = 0
        for line in artifact.content.splitlines():
            if line.startswith("diff --git ") or (line.startswith("+++ ") and files == 0):
                files += 1
            elif line.startswith("+") and not line.startswith("+++ "):
                added += 1
            elif line.startswith("-") and not line.startswith("--- "):
                removed += 1
        return DiffSize(max(files, 1), added, removed)
    if artifact.kind == ArtifactKind.FILES.value:
        try:
            files = json.loads(artifact.content)
        except ValueError:
            files = {}
        lines = sum(len(str(v).splitlines()) for v in files.values()) if isinstance(files, dict) else 0
        return DiffSize(len(files) if isinstance(files, dict) else 1, lines, 0)
    return DiffSize(1, len(artifact.content.splitlines()), 0)


def _waited(since: datetime, now: datetime) -> str:
    hours = (now - since).total_seconds() / 3600
    if hours < 1:
        return f"{max(1, math.floor(hours * 60))} min"
    return f"{math.floor(hours)} h" if hours < 48 else f"{math.floor(hours / 24)} days"


def prompt_for(  # noqa: PLR0913 - the words of one reminder, each a separate fact
    task: Task,
    artifact: Artifact,
    *,
    public_url: str,
    since: datetime,
    escalated: bool,
    now: datetime,
    reply_code: str = "",
) -> ReviewPrompt:
    url = f"{public_url.rstrip('/')}/tasks/{task.id}"
    head = "Escalation: nobody has reviewed this yet. " if escalated else ""
    words = (
        f"{head}Review waiting: task #{task.id} \u201c{task.title}\u201d ({task.repo}), version "
        f"{artifact.version} ({diff_size(artifact).words()}), waiting {_waited(since, now)}.\n"
        f"Approve or review it: {url}\n"
        f'Or reply "approve #{task.id}" or "changes #{task.id} <what to change>" '
        f"(for version {artifact.version}; a newer version needs a new look)."
    )
    return ReviewPrompt(task.id, artifact.version, artifact.commit_sha or "", words, url, reply_code)


# --- the job -----------------------------------------------------------------------------------


async def latest_activity(session: AsyncSession, task_id: int) -> TaskEvent | None:
    return await session.scalar(
        select(TaskEvent)
        .where(
            TaskEvent.task_id == task_id,
            (TaskEvent.to_status.is_not(None)) | (TaskEvent.kind.in_(ACTIVITY_KINDS)),
        )
        .order_by(TaskEvent.id.desc())
        .limit(1)
    )


async def still_waiting(session: AsyncSession, reminder: ReviewReminder) -> bool:
    """Nobody acted since the reminder was claimed: same status, version and latest activity."""
    task = await session.get(Task, reminder.task_id, populate_existing=True)
    if task is None or task.status != TaskStatus.REVIEW.value or task.artifact_count != reminder.version:
        return False
    latest = await latest_activity(session, task.id)
    return latest is not None and latest.id == reminder.anchor_event_id


async def recipients(session: AsyncSession, task: Task, *, escalated: bool) -> list[User]:
    """The task's reviewers (its organization's active reviewers; admins too when escalated, or when
    there are none), never the person who asked for it (their account, or their chat address)."""
    people = (
        await session.execute(
            select(User)
            .where(
                User.org_id == task.org_id,
                User.is_active.is_(True),
                User.role.in_([Role.REVIEWER.value, Role.ADMIN.value]),
            )
            .order_by(User.id)
        )
    ).scalars()
    people = list(people)
    reviewers = [u for u in people if u.role == Role.REVIEWER.value]
    admins = [u for u in people if u.role == Role.ADMIN.value]
    chosen = reviewers + admins if escalated or not reviewers else reviewers
    requester_ids = set(
        (
            await session.execute(
                select(UserChannel.user_id).where(
                    UserChannel.channel == task.channel,
                    UserChannel.address == (task.requester or ""),
                    UserChannel.verified_at.is_not(None),
                )
            )
        ).scalars()
    )
    return [u for u in chosen if u.id != task.created_by_id and u.id not in requester_ids]


async def reply_codes(session: AsyncSession, task_id: int, version: int) -> list[str]:
    """The codes of the reminders that showed this version: an email answer must carry one."""
    rows = await session.scalars(
        select(ReviewReminder.reply_code).where(
            ReviewReminder.task_id == task_id, ReviewReminder.version == version
        )
    )
    return list(rows)


async def pinned_reminder(session: AsyncSession, task_id: int) -> ReviewReminder | None:
    """The newest reminder of a task: what a chat reply `approve #<id>` approves (its version)."""
    return await session.scalar(
        select(ReviewReminder)
        .where(ReviewReminder.task_id == task_id)
        .order_by(ReviewReminder.id.desc())
        .limit(1)
    )


async def _send(
    ctx: jobs.JobContext,
    notifier: ReviewerNotifier | None,
    reminder: ReviewReminder,
    prompt: ReviewPrompt,
    sends: list[tuple[str, str, str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    for key, kind, address, who in sends:
        async with ctx.sessions() as session:
            if not await still_waiting(session, reminder):
                break  # stop the moment anyone acts
        if notifier is None:
            continue
        result = await notifier.remind(kind, address, prompt, key)
        outcome = {k: result[k] for k in ("ok", "skipped", "error") if k in result}
        sent.append({**who, "channel": kind, **outcome})
    return sent


@jobs.job_handler(REMIND_REVIEWERS)
async def remind_reviewers(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    notifier: ReviewerNotifier | None = ctx.services.reviewer_notifier
    host = ctx.services.code_host
    now = datetime.now(UTC)
    async with ctx.sessions() as session:
        reminder = await session.get(ReviewReminder, payload["reminder_id"])
        if reminder is None or not await still_waiting(session, reminder):
            return  # somebody acted since: that is what the reminder was for
        task = await session.get(Task, reminder.task_id)
        artifact = await session.scalar(
            select(Artifact).where(Artifact.task_id == task.id, Artifact.version == reminder.version)
        )
        anchor = await session.get(TaskEvent, reminder.anchor_event_id)
        channel = await review_channel(session, task)
        people = await recipients(session, task, escalated=reminder.escalated)
        addresses = await reviewer_channels.verified_addresses(session, [u.id for u in people])
        agent_login = None
        if task.assignee_id is not None:
            agent_login = await session.scalar(select(User.github_login).where(User.id == task.assignee_id))
    prompt = prompt_for(
        task,
        artifact,
        public_url=ctx.settings.server.public_url,
        since=anchor.created_at,
        escalated=reminder.escalated,
        now=now,
        reply_code=reminder.reply_code,
    )
    # each person's addresses, then the review channel (None); `key` sends each once per interval
    sends = [
        (f"remind-{reminder.id}-{person.id}-{kind}", kind, address, {"user_id": person.id})
        for person in people
        for kind, address in addresses.get(person.id, [])
    ]
    if channel:  # the repository's or organization's Slack channel
        sends.append((f"remind-{reminder.id}-review-channel", "slack", channel, {"review_channel": channel}))
    sent = await _send(ctx, notifier, reminder, prompt, sends)
    logins = sorted({u.github_login for u in people if u.github_login and u.github_login != agent_login})
    if logins and isinstance(host, ReviewRequester) and artifact.pr_number is not None:
        try:
            sent.append({"code_host": await host.request_review(task, logins)})
        except jobs.Retry:  # GitHub asked us to come back (Retry-After): the chat sends are kept by key
            raise
        except Exception as exc:  # a refusal is recorded; the chat reminders already went out
            log.warning("review request on the code host failed: %s", type(exc).__name__)
            sent.append({"code_host": {"ok": False, "error": type(exc).__name__}})
    async with ctx.sessions() as session, session.begin():
        fresh = await session.get(Task, task.id)
        if fresh is not None:
            data = {
                "interval": reminder.interval_no,
                "version": reminder.version,
                "escalated": reminder.escalated,
                "recipients": [u.id for u in people],
                "sent": sent,
            }
            await record_event(session, fresh, system_actor(task.org_id, "reminders"), REMINDED, data=data)
