"""The ORM models. The schema itself is created only by Alembic migrations."""

from __future__ import annotations

import enum
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TaskStatus(enum.StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    REVIEW = "REVIEW"
    DONE = "DONE"
    REJECTED = "REJECTED"


OPEN_STATUSES = (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW)


class Role(enum.StrEnum):
    ADMIN = "admin"
    REVIEWER = "reviewer"
    AGENT = "agent"


HUMAN_ROLES = frozenset({Role.ADMIN, Role.REVIEWER})


class ArtifactKind(enum.StrEnum):
    PATCH = "patch"
    FILES = "files"
    TEXT = "text"


def _in(values: Any) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    # Review reminders (osiris/app/reminders.py): this organization's interval (None: the setting
    # OSIRIS_REVIEW_REMIND_AFTER; 0: off) and its quiet hours, local to `timezone` (none held back
    # when either end is None; start > end wraps past midnight).
    review_remind_after_seconds: Mapped[int | None] = mapped_column(Integer)
    quiet_hours_start: Mapped[time | None] = mapped_column(Time)
    quiet_hours_end: Mapped[time | None] = mapped_column(Time)
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    # A Slack channel every reminder of this organization is also posted to, once per interval
    # ("<team id>:<channel id>"; None: none). A repository's own wins.
    review_slack_channel: Mapped[str | None] = mapped_column(String(100))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN ({_in(Role)})", name="role"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    github_login: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    # The operator: manages organizations and may act as an admin of any of them.
    is_superuser: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = _now()
    # Routing: what this agent can do; it may claim a task whose skills are all among these.
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")

    @property
    def is_human(self) -> bool:
        return self.role in HUMAN_ROLES


class Repository(Base):
    """A repository OSIRIS publishes to, owned by one organization.

    `name` is what tasks name (`repo`) and what `/git/<name>.git` serves; it is unique across the
    deployment, ignoring case, because the local git host keeps one bare repository per name and on
    a case-insensitive file system `App.git` and `app.git` are one directory.
    """

    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    github_repo: Mapped[str | None] = mapped_column(String(200))  # "owner/name" on GitHub, if any
    created_at: Mapped[datetime] = _now()
    # Review reminders for this repository's tasks: overrides the organization's interval (0: off)
    # and its Slack review channel.
    review_remind_after_seconds: Mapped[int | None] = mapped_column(Integer)
    review_slack_channel: Mapped[str | None] = mapped_column(String(100))


# Migration 0008; repositories's ON CONFLICT names this expression as its target.
Index("uq_repositories_lower_name", func.lower(Repository.name), unique=True)


class ChannelAccount(Base):
    """Which organization a channel account belongs to: a Twilio number, a Slack team id, an email
    domain, a GitHub installation id or repository, a Telegram bot. Inbound webhooks are routed by it.
    """

    __tablename__ = "channel_accounts"
    __table_args__ = (UniqueConstraint("channel", "account", name="uq_channel_accounts_channel_account"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(200))
    # Per-account channel settings (organizations.ChannelAccountSettings): allowed senders, the
    # repository requests go to, priority and skill keywords. Checked on write, trusted on read.
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = _now()


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the whole token: tokens are 256-bit random, so a fast hash is enough and lookups
    # stay one indexed equality.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(TaskStatus)})", name="status"),
        CheckConstraint("priority BETWEEN 0 AND 3", name="priority"),
        # The pending queue: highest priority first, then oldest.
        Index("ix_tasks_pending_queue", "org_id", "priority", "id", postgresql_where="status = 'PENDING'"),
        Index("ix_tasks_org_status", "org_id", "status"),
        Index("ix_tasks_lease", "lease_expires_at", postgresql_where="status = 'IN_PROGRESS'"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, server_default="")
    priority: Mapped[int] = mapped_column(Integer, server_default="1")
    status: Mapped[str] = mapped_column(String(16), server_default=TaskStatus.PENDING.value)
    repo: Mapped[str] = mapped_column(String(200))
    base_branch: Mapped[str] = mapped_column(String(200))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requester: Mapped[str | None] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(32), server_default="api")
    channel_thread: Mapped[str | None] = mapped_column(String(300))
    artifact_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # Routing: an agent needs all of these skills to claim it (none: open to all); a reservation
    # names the only agent who may claim it.
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default="{}")
    reserved_for_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("task_id", "version", name="uq_artifacts_task_version"),
        UniqueConstraint("task_id", "idempotency_key", name="uq_artifacts_task_idempotency_key"),
        CheckConstraint(f"kind IN ({_in(ArtifactKind)})", name="kind"),
        CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    branch: Mapped[str | None] = mapped_column(String(200))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    pr_number: Mapped[int | None] = mapped_column(Integer)
    pr_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _now()


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # A provider's message id is recorded once: redelivered comments do not double.
        UniqueConstraint("task_id", "source", "provider_id", name="uq_messages_provider"),
        Index("ix_messages_task_id_id", "task_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_name: Mapped[str] = mapped_column(String(200))
    # to_agent: feedback, questions answered, requester follow-ups; from_agent: the agent speaking.
    direction: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(200))
    meta: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = _now()


class ReviewComment(Base):
    """A reviewer's comment on a line (or a range of lines) of a version's "Files changed" diff.

    Its own row, not only a message: a thread is resolved and reopened (mutable state, with who and
    when) and the agent is told which threads are still open, while messages are an append-only log
    read through a cursor. Each comment is also carried to the agent by a `review_comment` message
    (`message_id`), so `read_feedback`, subscriptions, live pages and mirroring see it like any other.
    """

    __tablename__ = "review_comments"
    __table_args__ = (
        CheckConstraint("side IN ('old', 'new')", name="side"),
        CheckConstraint(
            "line >= 1 AND (start_line IS NULL OR (start_line >= 1 AND start_line <= line))", name="lines"
        ),
        Index("ix_review_comments_task_id_id", "task_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    head_sha: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    # old: `line` numbers the base (a removed or context line); new: the version (added or context)
    side: Mapped[str] = mapped_column(String(3))
    line: Mapped[int] = mapped_column(Integer)
    start_line: Mapped[int | None] = mapped_column(Integer)  # a range: start_line..line on the same side
    diff_hunk: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()


class TaskEvent(Base):
    """The audit log, and the replay log for live clients (ids only grow)."""

    __tablename__ = "task_events"
    __table_args__ = (Index("ix_task_events_task_id_id", "task_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_name: Mapped[str] = mapped_column(String(200))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = _now()


class Delivery(Base):
    """Each inbound webhook delivery, once: the unique key makes its effects exactly-once."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("provider", "delivery_id", name="uq_deliveries_provider_delivery"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = _now()


# --- chat channels (osiris/ingest) ---------------------------------------------------------------

# Thread and requester look-ups of the channel intake: "the open task in this thread", "my tasks".
Index("ix_tasks_channel_thread", Task.org_id, Task.channel, Task.channel_thread)
Index("ix_tasks_channel_requester", Task.org_id, Task.channel, Task.requester)


class ChannelReceipt(Base):
    """What one inbound chat message did and the answer it got.

    Keyed by its Delivery row, so a redelivered message gets the first answer and no second effect;
    it also links a requester's identity (channel + address) to the task their message touched.
    """

    __tablename__ = "channel_receipts"
    __table_args__ = (Index("ix_channel_receipts_sender", "org_id", "channel", "sender"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), unique=True)
    channel: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(String(300))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    reply: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = _now()


class ChannelAttachment(Base):
    """A file that came with a chat request: email attachments are kept, WhatsApp media only by URL."""

    __tablename__ = "channel_attachments"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    url: Mapped[str | None] = mapped_column(String(2000))  # a reference the provider gave; never fetched
    created_at: Mapped[datetime] = _now()


class ChannelNotification(Base):
    """One outbound chat message per key (task + event): a retried job finds it sent and stops."""

    __tablename__ = "channel_notifications"
    __table_args__ = (
        UniqueConstraint("key", name="uq_channel_notifications_key"),
        CheckConstraint("state IN ('sending', 'sent', 'failed')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), server_default="sending")
    provider_id: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FeedbackCursor(Base):
    """How far a user has read the messages addressed to them on one task (MCP `read_feedback`).

    One row per (user, task), so "since the last read" survives reconnects and holds across replicas.
    """

    __tablename__ = "feedback_cursors"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    last_message_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _now()


# --- checks and routing ------------------------------------------------------------------------


class CheckRun(Base):
    """The pre-review checks of one artifact version: its commands' outcomes, and what they decided."""

    __tablename__ = "check_runs"
    __table_args__ = (
        UniqueConstraint("artifact_id", name="uq_check_runs_artifact_id"),
        CheckConstraint("status IN ('queued', 'running', 'passed', 'failed', 'error')", name="status"),
        CheckConstraint("mode IN ('block', 'inform')", name="mode"),
        Index("ix_check_runs_task_id_version", "task_id", "version"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    commit_sha: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), server_default="running")
    # [{name, command, exit_code, timed_out, duration_ms, output, output_truncated}, ...]
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    source: Mapped[str] = mapped_column(String(16))  # "settings", ".osiris.yml" or "github"
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When `record_checks` recorded the outcome (events, the task's move): written only by it, never
    # by the checks worker's restricted role (migration 0012, osiris/app/checks_role.py).
    recorded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- outbound webhooks -------------------------------------------------------------------------


class WebhookSubscription(Base):
    """Where an organization wants its task events POSTed, signed with `secret`.

    The secret is kept as given because signing needs it (unlike API tokens, which only need a
    hash); it is returned once, when created, and never logged.
    """

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    # TaskEvent kinds, or "*" for every kind
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    description: Mapped[str] = mapped_column(String(200), server_default="")
    # Rotation: for a while after a new secret, deliveries are signed with both (two v1= values).
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Auto-disable: a subscription that keeps failing stops receiving until an admin re-enables it.
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()


class WebhookDelivery(Base):
    """One attempt to deliver one event to one subscription: the delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_org_id_id", "org_id", "id"),
        Index("ix_webhook_deliveries_run", "subscription_id", "event_id", "run"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("task_events.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(40))
    run: Mapped[str] = mapped_column(String(32))  # one delivery and its retries; a redelivery is a new run
    attempt: Mapped[int] = mapped_column(Integer)  # 1.. within the run
    url: Mapped[str] = mapped_column(String(2000))
    status_code: Mapped[int | None] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str] = mapped_column(Text, server_default="")
    retry_after_seconds: Mapped[float | None] = mapped_column(Float)  # when another attempt follows
    created_at: Mapped[datetime] = _now()


class OAuthClient(Base):
    """An agent's OAuth 2.1 client (the client credentials grant): its secret is stored hashed, like
    API tokens, and shown once; revoking it ends every access token it was given (osiris/app/oauth.py)."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of a 256-bit random secret
    display_prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OAuthAccessToken(Base):
    """A short-lived access token from the token endpoint: opaque, stored as its SHA-256, bound to one
    resource (RFC 8707 audience), a set of scopes, the client's agent and its organization."""

    __tablename__ = "oauth_access_tokens"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONB, server_default="[]")
    resource: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- review reminders (osiris/app/reminders.py) -----------------------------------------------


class UserChannel(Base):
    """A person's address on a chat channel, in the form the channel's messages carry as their sender
    (`T0123:U0456`, `ann@example.com`, `whatsapp:+15551234567`, `telegram:111222333`).

    Reminders go to verified addresses, and a chat message acts as a user (approve, request changes)
    only from one: registering gives a one-time code, which the person then sends from that address.
    A verified address belongs to one user in the whole deployment.
    """

    __tablename__ = "user_channels"
    __table_args__ = (
        UniqueConstraint("user_id", "channel", "address", name="uq_user_channels_user_channel_address"),
        Index(
            "uq_user_channels_verified_address",
            "channel",
            "address",
            unique=True,
            postgresql_where="verified_at IS NOT NULL",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(300))
    verify_code_hash: Mapped[str | None] = mapped_column(String(64))  # SHA-256; None once verified
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


# 122 random bits from pg_strong_random (gen_random_uuid is core since PostgreSQL 13)
REPLY_CODE_DEFAULT = text("replace(gen_random_uuid()::text, '-', '')")


class ReviewReminder(Base):
    """One reminder of a waiting review: a task, the activity it has waited since (the event), and the
    interval number. The unique key is the claim: replicas scanning at once insert it once."""

    __tablename__ = "review_reminders"
    __table_args__ = (
        UniqueConstraint("task_id", "anchor_event_id", "interval_no", name="uq_review_reminders_interval"),
        Index("ix_review_reminders_task_id_id", "task_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    anchor_event_id: Mapped[int] = mapped_column(BigInteger)  # the last activity; a newer one resets
    interval_no: Mapped[int] = mapped_column(Integer)  # 1: reviewers; 2 and later: admins too
    version: Mapped[int] = mapped_column(Integer)  # what the reminder showed: chat approvals pin to it
    head_sha: Mapped[str] = mapped_column(String(64))
    escalated: Mapped[bool] = mapped_column(Boolean, server_default="false")
    # Goes out only in the reminder's email: an email's From is not proof of its sender, so an
    # answer by email counts only if it carries the code of a reminder that reached that inbox.
    reply_code: Mapped[str] = mapped_column(String(32), server_default=REPLY_CODE_DEFAULT)
    created_at: Mapped[datetime] = _now()
