"""Request and response shapes of the REST API (never named like the ORM classes)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from osiris.app import routing
from osiris.app.errors import InvalidInput

PriorityName = Literal["low", "normal", "high", "urgent"]
PRIORITIES: dict[str, int] = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}
ArtifactKindIn = Literal["auto", "patch", "files", "text"]
MAX_TEXT = 50_000  # characters of anything a person or an agent writes: a message, feedback, a comment


def bounded_text(value: str, what: str, *, required: bool) -> str:
    """`value` stripped, within `MAX_TEXT` (and not empty when `required`): the bound the schemas
    below put on REST input, for text that comes another way (the portal's forms, the services)."""
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{what} is limited to {MAX_TEXT} characters")
    return value


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TaskCreate(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=100_000)
    priority: PriorityName = "normal"
    repo: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    requester: str | None = Field(default=None, max_length=300)
    skills: list[str] = Field(default_factory=list, max_length=32)  # an agent needs all of them


class GitAccess(BaseModel):
    """Where an agent fetches a task's code and how git authenticates: placeholders, never a secret,
    and never a token in a URL (URLs end up in shell history, `.git/config` and logs)."""

    code_host: Literal["local", "github"]
    clone_url: str
    base_branch: str = Field(description="start from this branch")
    branch: str = Field(description="the task branch: each published version is a commit on it")
    auth_header: str = Field(description="send it with `git -c http.extraHeader=…`; fill in the placeholder")
    clone_command: str = Field(description="a clone of the base branch, with the placeholder filled in")
    fetch_task_branch: str = Field(description="fetches the published versions (after the first)")
    note: str


class TaskRead(_Out):
    id: int
    title: str
    description: str
    priority: PriorityName
    status: str
    repo: str
    base_branch: str
    branch: str
    assignee_id: int | None
    lease_expires_at: datetime | None
    requester: str | None
    channel: str
    artifact_count: int
    pr_url: str | None = None
    created_at: datetime
    updated_at: datetime
    skills: list[str] = []
    reserved_for_id: int | None = None
    # Where to fetch the code and how to authenticate: on claim, claim-next and GET of one task.
    git: GitAccess | None = None


class ArtifactCreate(BaseModel):
    content: str | dict[str, str]
    kind: ArtifactKindIn = "auto"
    summary: str | None = Field(default=None, max_length=20_000)
    idempotency_key: str | None = Field(default=None, max_length=200)


class ArtifactRead(_Out):
    id: int
    task_id: int
    version: int
    kind: str
    summary: str | None
    size_bytes: int
    branch: str | None
    commit_sha: str | None
    pr_number: int | None
    pr_url: str | None
    created_at: datetime


class ArtifactDetail(ArtifactRead):
    content: str | dict[str, str] = Field(
        description="files: an object of {path: file content}; patch and text: the text as submitted"
    )

    @field_validator("content", mode="before")
    @classmethod
    def _files_as_object(cls, value: Any, info: ValidationInfo) -> Any:
        # A files artifact is stored as canonical JSON text; it is read back as the object it was.
        if info.data.get("kind") == "files" and isinstance(value, str):
            return json.loads(value)
        return value


class SubmissionRead(BaseModel):
    artifact: ArtifactRead
    created: bool
    publish_job_id: int | None
    task: TaskRead


class MessageCreate(BaseModel):
    body: str = Field(min_length=1, max_length=MAX_TEXT)


class MessageRead(_Out):
    id: int
    task_id: int
    author_name: str
    direction: str
    source: str
    body: str
    meta: dict[str, Any]
    created_at: datetime


class EventRead(_Out):
    id: int
    task_id: int
    kind: str
    actor_name: str
    from_status: str | None
    to_status: str | None
    data: dict[str, Any]
    created_at: datetime


class TaskDetail(TaskRead):
    artifacts: list[ArtifactRead]
    messages: list[MessageRead]


class TaskPage(BaseModel):
    items: list[TaskRead]
    next_cursor: str | None


class ApproveIn(BaseModel):
    comment: str | None = Field(default=None, max_length=20_000)
    # What the reviewer saw: an approval of anything but the latest version / its published commit
    # is refused with 409 `stale_approval`. Omitted: the latest published version.
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    head_sha: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$")


class RejectIn(BaseModel):
    feedback: str = Field(min_length=1, max_length=MAX_TEXT)


class CancelIn(BaseModel):
    reason: str | None = Field(default=None, max_length=20_000)


class FileDiffRead(BaseModel):
    path: str
    status: Literal["added", "deleted", "modified"]
    diff: str = Field(description="this file's unified diff: a/<path> and b/<path>, or /dev/null")


class VersionDiff(BaseModel):
    from_version: int
    to_version: int
    diff: str = Field(description="a unified diff: per file for two files versions, else of the text")
    files: list[FileDiffRead] | None = Field(
        default=None, description="two files versions: each changed file in path order; otherwise null"
    )


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


# The one rule for user names (REST, the portal's forms, the CLI: accounts.create_user checks it):
# names shown in the portal, typed in commands and matched in chats, so no spaces, no control or
# look-alike characters, no path separators, nothing a shell or a Markdown mention would read
# differently, and not starting with "-" (an option to a command) or ".".
# `\-`: the same pattern is the portal's <input pattern>, where a browser reads it with the v flag.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+\-]{0,99}", re.ASCII)
USERNAME_RULE = "a user name is 1-100 letters, digits and . _ @ + -, starting with a letter or a digit"


def valid_username(name: str) -> str:
    """`name` exactly as given (nothing stripped) when it follows the rule, else InvalidInput."""
    if not isinstance(name, str) or not USERNAME.fullmatch(name):
        raise InvalidInput(USERNAME_RULE)
    return name


class UserCreate(BaseModel):
    username: str = Field(
        min_length=1, max_length=100, pattern=f"^{USERNAME.pattern}$", description=USERNAME_RULE
    )
    role: Literal["admin", "reviewer", "agent"]
    password: str | None = Field(default=None, min_length=8, max_length=200)
    github_login: str | None = Field(default=None, max_length=100)
    skills: list[str] = Field(default_factory=list, max_length=32)  # routing: what an agent can do


class UserRead(_Out):
    id: int
    username: str
    role: str
    github_login: str | None
    is_active: bool
    created_at: datetime
    skills: list[str] = []
    is_superuser: bool = False


class ApiTokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    username: str = Field(min_length=1, max_length=100, description="the user the token acts as")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="unset: never expires")
    expires_at: datetime | None = Field(default=None, description="or an exact time (with a time zone)")


class UserUpdate(BaseModel):
    role: Literal["admin", "reviewer", "agent"] | None = None
    is_active: bool | None = Field(default=None, description="false revokes their tokens and live sockets")


class PasswordReset(BaseModel):
    password: str | None = Field(
        default=None, min_length=8, max_length=200, description="unset: one is generated and returned once"
    )


class PasswordResetDone(BaseModel):
    user: UserRead
    password: str | None = Field(description="the generated password, shown once; null if you chose it")


class PriorityUpdate(BaseModel):
    priority: PriorityName


class ApiTokenRead(_Out):
    id: int
    user_id: int
    name: str
    display_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None = None
    revoked_at: datetime | None


class ApiTokenCreated(ApiTokenRead):
    token: str = Field(description="shown once; store it now")


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str


# --- checks and routing ------------------------------------------------------------------------


class SkillsUpdate(BaseModel):
    skills: list[str] = Field(max_length=32)


class ReservationUpdate(BaseModel):
    agent_id: int | None  # the only agent who may claim the task; null lifts the reservation


class CheckResultRead(BaseModel):
    name: str
    command: str
    exit_code: int | None
    timed_out: bool
    duration_ms: int
    output: str
    output_truncated: bool
    passed: bool


class CheckRunRead(_Out):
    id: int
    version: int
    commit_sha: str
    mode: str
    status: str  # queued | running | passed | failed | error
    source: str
    results: list[CheckResultRead]
    duration_ms: int | None
    created_at: datetime
    finished_at: datetime | None


# --- outbound webhooks -------------------------------------------------------------------------


class WebhookSubscriptionCreate(BaseModel):
    url: str = Field(min_length=1, max_length=2000, description="http(s); redirects are never followed")
    event_types: list[str] = Field(min_length=1, max_length=50, description='TaskEvent kinds, or ["*"]')
    secret: str | None = Field(
        default=None, min_length=16, max_length=200, description="omit to have one generated"
    )
    description: str = Field(default="", max_length=200)


class WebhookSubscriptionRead(_Out):
    id: int
    url: str
    event_types: list[str]
    description: str
    created_at: datetime
    consecutive_failures: int = Field(description="failed deliveries in a row; a success resets it")
    disabled_at: datetime | None = Field(description="set when disabled, by an admin or by failures")
    disabled_reason: str | None
    rotation_grace_until: datetime | None = Field(
        validation_alias=AliasChoices("previous_secret_expires_at", "rotation_grace_until"),
        description="after a rotation, the previous secret also signs (a second v1=) until then",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


class WebhookSubscriptionUpdate(BaseModel):
    """PATCH: only the fields sent change. A new URL is checked like a new subscription's."""

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=50)
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = Field(default=None, description="true also resets the failure count")


class WebhookSecretRotate(BaseModel):
    grace_seconds: int | None = Field(
        default=None,
        ge=0,
        le=7 * 86400,
        description="how long the previous secret still signs (default OSIRIS_WEBHOOKS_SECRET_GRACE_SECONDS;"
        " 0 if it leaked)",
    )


class WebhookSubscriptionCreated(WebhookSubscriptionRead):
    secret: str = Field(description="shown once; signs every delivery (OSIRIS-Signature)")


class WebhookDeliveryRead(_Out):
    id: int
    subscription_id: int
    event_id: int
    event_type: str
    run: str
    attempt: int
    url: str
    status_code: int | None
    ok: bool
    error: str | None
    duration_ms: int
    response_excerpt: str
    retry_after_seconds: float | None
    created_at: datetime


# --- organizations -----------------------------------------------------------------------------


class OrganizationCreate(BaseModel):
    slug: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str | None = Field(default=None, min_length=1, max_length=200)


class OrganizationRead(_Out):
    id: int
    slug: str
    name: str
    created_at: datetime


class RepositoryCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    github_repo: str | None = Field(default=None, max_length=200, description='"owner/name" on GitHub')


class RepositoryRead(_Out):
    id: int
    name: str
    github_repo: str | None
    created_at: datetime


class ChannelAccountCreate(BaseModel):
    organization: str = Field(min_length=1, max_length=64, description="the organization's slug")
    channel: Literal["whatsapp", "slack", "email", "github", "telegram"]
    account: str = Field(
        min_length=1,
        max_length=200,
        description="Twilio number, Slack team id, email domain, GitHub installation id or owner/name, "
        "Telegram bot id",
    )


def _keyword(word: str) -> str:
    word = word.strip().lower()
    if not word or len(word) > 100:
        raise ValueError("a keyword is 1-100 characters")
    return word


class ChannelAccountSettings(BaseModel):
    """One channel account's own settings; every key optional, a missing one keeps the deployment's.

    The one place they are checked (REST, portal, and what intake.policy_for trusts on read). That
    `repo` is the organization's own needs the database: organizations.update_channel_account_settings.
    """

    model_config = ConfigDict(extra="forbid")

    # Phone numbers, Slack user ids, email addresses or domains, Telegram chat or user ids: matched
    # like the deployment's allowlists (Inbound.allow_keys). Non-empty: replaces the deployment's.
    allowed_senders: list[str] | None = Field(default=None, max_length=500)
    repo: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    priority_keywords: dict[str, PriorityName] | None = Field(default=None, max_length=200)  # word → level
    skill_keywords: dict[str, str] | None = Field(default=None, max_length=200)  # word → skill

    @field_validator("allowed_senders")
    @classmethod
    def _senders(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = [v.strip() for v in value]
        if any(not v or len(v) > 320 for v in out):
            raise ValueError("an allowed sender is 1-320 characters")
        return list(dict.fromkeys(out))

    @field_validator("priority_keywords")
    @classmethod
    def _priorities(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else {_keyword(w): p for w, p in value.items()}

    @field_validator("skill_keywords")
    @classmethod
    def _skills(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        out = {}
        for word, skill in value.items():
            try:
                skills = routing.normalize_skills([skill])
            except InvalidInput as exc:
                raise ValueError(exc.detail) from None
            if not skills:
                raise ValueError("a skill is a plain label, e.g. python")
            out[_keyword(word)] = skills[0]
        return out

    def stored(self) -> dict[str, Any]:
        """What channel_accounts.settings holds: the keys that were set."""
        return self.model_dump(exclude_none=True)


class ChannelAccountSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: ChannelAccountSettings  # replaces the account's settings; {} returns to the deployment's


class ChannelAccountRead(_Out):
    id: int
    org_id: int
    channel: str
    account: str
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


# --- review comments: reviewers' comments on lines of "Files changed" ----------------------------

ReviewSide = Literal["old", "new"]
ReviewVerdict = Literal["approve", "request_changes", "comment"]
_SHA = r"^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$"


class ReviewCommentCreate(BaseModel):
    """A comment on `line` (or `start_line`..`line`) of `path` in the newest published version's diff.
    `side` old numbers a removed or context line as in the base, new as in the version. `version` and
    `head_sha` name what the reviewer saw: anything else is 409 `stale_approval`."""

    path: str = Field(min_length=1, max_length=4096)
    line: int = Field(ge=1, le=2**31 - 1)
    start_line: int | None = Field(default=None, ge=1, le=2**31 - 1)
    side: ReviewSide = "new"
    body: str = Field(min_length=1, max_length=MAX_TEXT)
    version: int = Field(ge=1, le=2**31 - 1)
    head_sha: str = Field(pattern=_SHA)


class ReviewCommentUpdate(BaseModel):
    resolved: bool


class ReviewCommentRead(_Out):
    id: int = Field(description="the thread's id")
    task_id: int
    message_id: int | None = Field(description="the message that carried it to the agent")
    author_name: str
    version: int
    head_sha: str
    path: str
    side: ReviewSide
    line: int
    start_line: int | None
    diff_hunk: str = Field(description="the diff lines around the commented line, with their @@ header")
    body: str
    resolved: bool
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _resolved(cls, data: Any) -> Any:
        if hasattr(data, "resolved_at") and not isinstance(data, dict):
            return {
                **{f: getattr(data, f, None) for f in cls.model_fields},
                "resolved": data.resolved_at is not None,
            }
        return data


class ReviewCreate(BaseModel):
    """A review as on a pull request: a verdict with an optional comment, pinned to what was seen.
    `request_changes` needs a comment or at least one open inline comment; `comment` needs a comment."""

    verdict: ReviewVerdict
    body: str = Field(default="", max_length=MAX_TEXT)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    head_sha: str | None = Field(default=None, pattern=_SHA)
