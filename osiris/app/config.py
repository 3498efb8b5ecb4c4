"""Every setting OSIRIS reads, in one place (environment and `.env`), grouped by area.

`Settings` holds a few settings of its own and one group per area (`settings.github.token`,
`settings.db.pool_size`), the way Prefect nests its settings. Each group is a `BaseSettings` with its
own `env_prefix`, so a setting keeps the environment name it always had: the group's prefix plus the
field's name (OSIRIS_GITHUB_ + token), or an explicit alias where the name does not fit (DATABASE_URL,
OSIRIS_CHECKS). Each group reads the environment and `.env` itself, also when some of its fields are
given: `Settings(github={"token": "…"})` still takes OSIRIS_GITHUB_API_URL from the environment.
`settings.model_copy(update={"github": {"token": …}})` changes those fields of a copy of the group.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class _Group(BaseSettings):
    """One area's settings: read from the environment and `.env` under the group's `env_prefix`."""

    model_config = SettingsConfigDict(
        env_prefix="OSIRIS_", env_file=".env", extra="ignore", populate_by_name=True
    )


def _names_list(value: object) -> object:
    """A list from the environment as JSON or comma-separated."""
    if isinstance(value, str):
        text = value.strip()
        return json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
    return value


class DatabaseSettings(_Group):
    """PostgreSQL and its connection pool."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_DB_")

    # PostgreSQL to use; unset = the embedded default (its own server under data_dir/pg)
    url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "OSIRIS_DATABASE_URL")
    )
    # Connections kept open per process: at least as many as requests admitted at once (admission.py,
    # size + overflow less a few), or each request past the pool size opens and closes one of its own
    # (bench/claim.py at 50 agents: hundreds of connections opened and closed per 3,000 claims).
    pool_size: int = 25
    max_overflow: int = 5  # extra connections allowed under load
    pool_timeout_seconds: float = 30.0  # wait this long for a free connection, then answer 503

    @property
    def embedded(self) -> bool:
        """True when OSIRIS runs its own PostgreSQL under the data dir."""
        return self.url is None


class ServerSettings(_Group):
    """`osiris serve`: where it listens, how providers and browsers reach it, its logs."""

    host: str = "127.0.0.1"  # address `osiris serve` listens on
    port: int = 8000
    # Server processes for `osiris serve` (uvicorn workers); each also runs a job worker and the
    # lease sweeper, which are safe to run side by side. One is enough below ~200 requests/s.
    workers: int = Field(default=1, ge=1, le=64)
    # The address providers and browsers use (links, Twilio signatures, cookie Secure flag)
    public_url: str = "http://127.0.0.1:8000"
    cors_origins: list[str] = []  # origins allowed to call the API from a browser; none by default
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: IP addresses or networks, JSON
    # or comma-separated, e.g. 127.0.0.1,10.0.0.0/8. Empty (the default): none, so the client
    # address (login rate limits, logs) is always the TCP peer's and a sender cannot pick its own.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    # HTTP requests in progress at once per process; the rest wait in line (first come, first
    # served) up to OSIRIS_DB_POOL_TIMEOUT_SECONDS. Unset: pool size + overflow, less a few
    # connections kept for the worker and live clients (osiris/app/admission.py).
    max_requests_in_progress: int | None = Field(default=None, ge=1)
    log_level: str = "INFO"
    log_json: bool = False  # one JSON object per log line
    run_worker: bool = True  # `serve` runs a job worker in-process unless turned off
    # DNS-rebinding protection for /mcp: the Host and Origin values accepted. `name:*` allows any
    # port. The defaults allow localhost and 127.0.0.1 on any port, and the host of public_url.
    mcp_allowed_hosts: list[str] = Field(default_factory=lambda data: _local_hosts(data["public_url"]))
    mcp_allowed_origins: list[str] = Field(default_factory=lambda data: _local_origins(data["public_url"]))

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if isinstance(value, list):
            # Checked here, so a typo fails at start-up rather than trusting nothing (or everything).
            return [str(ipaddress.ip_network(str(v).strip(), strict=False)) for v in value]
        return value


class WorkerSettings(_Group):
    """Which job kinds a worker takes."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_WORKER_")

    # The job kinds this process's worker takes (`serve`'s in-process one and `osiris worker`), as
    # names, comma-separated or JSON. Empty: all. E.g. OSIRIS_WORKER_SKIP_JOBS=run_checks on the API
    # and the main worker, OSIRIS_WORKER_JOBS=run_checks on an isolated checks worker that holds no
    # other secret (docs/deploy.md). An unknown name stops the worker at start.
    jobs: Annotated[list[str], NoDecode] = []
    skip_jobs: Annotated[list[str], NoDecode] = []

    @field_validator("jobs", "skip_jobs", mode="before")
    @classmethod
    def _job_names(cls, value: object) -> object:
        return _names_list(value)


class JobSettings(_Group):
    """The job queue as each worker sees it."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_JOB_")

    # A job picked by a worker that died (kill -9, a lost machine) is picked again once its
    # heartbeat is this stale; a live worker beats at half this interval.
    heartbeat_timeout_seconds: float = Field(default=30.0, gt=0)
    # The longest a waiting worker sleeps before it looks at the queue again: a new job wakes it at
    # once (LISTEN), but a retry whose delay ran out while it slept waits for this poll.
    poll_seconds: float = Field(default=5.0, gt=0)


class AuthSettings(_Group):
    """Signing keys, the first admin, tokens and sign-in limits."""

    # Signs session cookies and JWTs. Required with DATABASE_URL; the embedded default generates
    # one under the data dir on first start so no two installations share a key.
    secret_key: SecretStr | None = None
    # Password of the first admin ("admin") on an empty database; unset = generated, printed and kept in <data_dir>/admin-password (0600)
    admin_password: SecretStr | None = None
    jwt_ttl_seconds: int = 3600  # lifetime of a token from /api/v1/auth/token
    login_rate_per_minute: int = 10  # password attempts per client and user name
    # Lifetime of an OAuth access token from /oauth/token (agents' client credentials grant); the
    # same per-minute limit as logins applies to the token endpoint, per client address and client id
    oauth_token_ttl_seconds: int = Field(default=600, ge=30, le=86400)


class TaskSettings(_Group):
    """Claims, artifacts and approvals of a task."""

    lease_seconds: int = 600  # a claim expires this long after the holder's last call
    sweep_interval_seconds: float = 15.0  # how often expired claims are returned to PENDING
    max_artifact_bytes: int = 5 * 1024 * 1024  # larger submissions get 413 too_large
    # A files artifact (or a patch) touching more files than this gets 413 too_large.
    max_artifact_files: int = Field(default=100_000, ge=1)
    # A requester never approves their own request (a GitHub review by the issue's author is not counted)
    separation_of_duties: bool = True


class RepositorySettings(_Group):
    """The repositories tasks are for, whichever code host serves them."""

    default_repo: str = "default"  # the repository a task is for when none is named
    default_base_branch: str = "main"  # the branch work is based on and merged into
    delete_branch_on_merge: bool = True  # on the local git host and on GitHub
    # A task naming a repository no organization has registered registers it to the task's
    # organization (true), or is refused with 422 unknown_repository (false). Another
    # organization's repository is always refused.
    repositories_auto_register: bool = True


class LocalGitSettings(_Group):
    """The local git host (the embedded default, see docs/code_host_local.md)."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_LOCAL_")

    # A bare repository per project under data_dir/repos/<name>.git, created on first use. `repo`
    # points the default project at an existing repository instead.
    repo: Path | None = None
    projects: list[str] = []  # created at start-up besides OSIRIS_DEFAULT_REPO
    merge_method: Literal["merge", "squash"] = "merge"
    text_path: str = "docs/osiris/task-{id}.md"  # where a text artifact is written
    # serve the local repositories read-only at /git/<name>.git
    git_http_enabled: bool = Field(default=True, validation_alias=AliasChoices("OSIRIS_GIT_HTTP_ENABLED"))


class GitHubSettings(_Group):
    """GitHub as the code host and as a channel (issues); see docs/code_host_github.md."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_GITHUB_")

    webhook_secret: SecretStr | None = None  # verifies X-Hub-Signature-256
    # A token or a GitHub App (id + private key + installation) switches the code host to GitHub.
    token: SecretStr | None = None
    app_id: str | None = None
    private_key: SecretStr | None = None  # the PEM itself, or a path to the PEM file
    installation_id: int | None = None
    api_url: str = "https://api.github.com"  # GitHub Enterprise, or a fake in tests
    # OSIRIS repo name -> "owner/name" (JSON); a bare "owner/name" serves every OSIRIS repo.
    repo: Annotated[dict[str, str], NoDecode] = {}
    merge_method: Literal["merge", "squash", "rebase"] = "squash"
    label: str = "osiris"
    # Who may approve on GitHub: "mapped" = a login mapped to an OSIRIS reviewer/admin only;
    # "write" = also anyone with write access to the repository (collaborator permission API).
    approvers: Literal["mapped", "write"] = "mapped"
    text_path: str = "docs/osiris/task-{id}.md"  # where a text artifact is written
    timeout_seconds: float = 20.0
    retry_seconds: float = 30.0  # retry delay when GitHub gives no Retry-After of its own
    # An issue in a served repository carrying this label becomes a task (docs/code_host_github.md)
    issue_label: str = "osiris"
    # OSIRIS's own GitHub login (e.g. "my-app[bot]"): its comments are never imported as messages
    bot_login: str | None = None

    @field_validator("repo", mode="before")
    @classmethod
    def _bare_github_repo(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            return {"*": text} if text else {}
        return value

    @property
    def enabled(self) -> bool:
        """GitHub is the code host (a token or an App is set; an empty value is not set). The one
        answer: the bridge installs the GitHub host on it, the Integrations page shows it."""
        return bool(self.token or self.app_id)


# --- channels (osiris/ingest; see docs/channels.md) ------------------------------------------------
# Lists are JSON in the environment, e.g. OSIRIS_TWILIO_ALLOWED_NUMBERS='["+15551234567"]';
# an empty allowlist lets everyone in.


class TwilioSettings(_Group):
    """WhatsApp (and SMS) through Twilio."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_TWILIO_")

    auth_token: SecretStr | None = None  # verifies X-Twilio-Signature; sends replies
    account_sid: str | None = None
    whatsapp_from: str | None = None  # the sender of replies, e.g. "whatsapp:+14155238886"
    allowed_numbers: list[str] = []


class SlackSettings(_Group):
    """Slack."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_SLACK_")

    signing_secret: SecretStr | None = None  # verifies X-Slack-Signature
    bot_token: SecretStr | None = None  # xoxb-…, for chat.postMessage
    # An app installed in several workspaces has a bot token per workspace: team id -> xoxb-…
    # (JSON). Replies to a team listed here use its token; other teams use OSIRIS_SLACK_BOT_TOKEN.
    bot_tokens: dict[str, SecretStr] = {}
    api_url: str = "https://slack.com/api/"  # other Slack clouds (GovSlack) differ
    allowed_teams: list[str] = []  # workspace ids, T…


class EmailSettings(_Group):
    """Email requests and replies (see SmtpSettings for the listener and the relay)."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_EMAIL_")

    webhook_secret: SecretStr | None = None  # shared secret of POST /api/v1/webhooks/email
    address: str | None = None  # ours, e.g. osiris@example.com; replies thread on osiris+task-N@
    allowed_domains: list[str] = []  # domains, or whole addresses
    max_bytes: int = 10 * 1024 * 1024


class SmtpSettings(_Group):
    """The inbound SMTP listener and the outbound relay."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_SMTP_")

    listen_port: int | None = None  # the inbound SMTP listener: off unless a port is set
    listen_host: str = "127.0.0.1"
    relay_host: str | None = None  # outbound mail; no relay means no email replies
    relay_port: int = 587
    relay_username: str | None = None
    relay_password: SecretStr | None = None
    relay_starttls: bool = True


class TelegramSettings(_Group):
    """Telegram."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_TELEGRAM_")

    bot_token: SecretStr | None = None  # from @BotFather; sends replies and sets the webhook
    # Telegram sends it in X-Telegram-Bot-Api-Secret-Token; without it the webhook answers 403
    webhook_secret: SecretStr | None = None
    api_url: str = "https://api.telegram.org"  # the Bot API server (a local one, or a fake in tests)
    # The bot's user name without "@": "@name …" in a group is a request
    bot_username: str | None = None
    allowed_chats: list[str] = []  # chat ids allowed to send requests; empty: everyone


class ChannelSettings(_Group):
    """What every chat channel shares: limits, retries, priorities, unmapped accounts."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_CHANNEL_")

    rate_per_minute: int = 20  # inbound messages per sender per minute, per process
    # Characters of one chat message (its new words: an email reply without the quoted history);
    # a longer one is refused with a reply saying so (outcome too_long), nothing else recorded.
    # WhatsApp and Telegram stop at 4,096 themselves; Slack allows 40,000 and GitHub 65,536.
    max_chars: int = Field(default=20_000, ge=100, validation_alias=AliasChoices("OSIRIS_CHAT_MAX_CHARS"))
    # Wait this long before sending again to a chat provider (Twilio, Slack) that could not be
    # reached (connection refused or reset, timeout); a busy answer's Retry-After is honoured instead.
    retry_seconds: float = Field(default=15.0, gt=0)
    # Words in a request that set its priority; the highest match wins, else "normal".
    priority_keywords: dict[str, str] = {
        "urgent": "urgent",
        "asap": "urgent",
        "emergency": "urgent",
        "critical": "urgent",
        "important": "high",
        "high priority": "high",
        "low priority": "low",
        "whenever": "low",
    }
    # A channel message to an account (Twilio number, Slack team, email domain, GitHub
    # installation or repository, Telegram bot) no organization has mapped: "default" files it in
    # the default organization, "refuse" drops it (the provider gets its usual 200, nothing is stored).
    unmapped: Literal["default", "refuse"] = "default"


class PortalSettings(_Group):
    """The supervisors' portal."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_PORTAL_")

    session_max_age_seconds: int = 12 * 3600  # a signed-in supervisor signs in again after this
    # A WebSocket client whose socket will not take a message within this long is dropped; it
    # reconnects and replays from the TaskEvent table, so nobody else waits for it.
    ws_send_timeout_seconds: float = 5.0
    # Events per page when a live client resumes or catches up from the TaskEvent table (it is
    # never told to reload: it pages until it has everything, then goes live again).
    ws_replay_limit: int = Field(default=200, ge=1)
    # A version's files on the task page: this many highlighted inline (within the byte budget), the
    # rest as a paged list of names, each opening on its own page; large versions stay fast to read.
    inline_files: int = Field(default=20, ge=0)
    file_names_per_page: int = Field(default=500, ge=1)
    highlight_bytes: int = Field(default=400_000, ge=1)  # highlighted per page, at most
    # The Done and Cancelled columns show tasks closed in this many recent days; older ones are on
    # the archive page (/archive).
    board_closed_days: int = Field(default=7, ge=1)


class ChangesSettings(_Group):
    """ "Files changed" (the task page and GET /api/v1/tasks/{id}/changes)."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_CHANGES_")

    # Diff lines shown per file and in all; a file past either is listed with its counts and a link
    # to its own view, which shows up to the overall number.
    max_file_lines: int = Field(default=2_000, ge=1)
    max_lines: int = Field(default=20_000, ge=1)


class LiveSettings(_Group):
    """Live connections: portal WebSockets and MCP SSE streams."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_LIVE_")

    # Live connections one token or sign-in may hold open at once, per process; the next WebSocket
    # is closed with 1008 and a reason.
    max_per_credential: int = Field(default=20, ge=1)
    # How often an open WebSocket checks that its credential is still good (a deactivated user, an
    # expired JWT, a changed password): the backstop behind the revocation NOTIFY.
    recheck_seconds: float = Field(default=60.0, gt=0)


class ChecksSettings(_Group):
    """Pre-review checks (docs/architecture.md "Checks"): per repository, commands run in a sandboxed
    throw-away copy of each published version before reviewers are asked."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_CHECKS_")

    # JSON, e.g. OSIRIS_CHECKS='{"default": ["python -m pytest -q"]}'; a `.osiris.yml` on the base
    # branch (`checks:` list, `mode:`) is used for a repository not named here.
    commands: dict[str, list[str]] = Field(default={}, validation_alias=AliasChoices("OSIRIS_CHECKS"))
    mode: dict[str, Literal["block", "inform"]] = {}  # per repository; unset = OSIRIS_CHECKS_DEFAULT_MODE
    default_mode: Literal["block", "inform"] = "block"  # block: a failure goes back to the agent
    read_repo_config: bool = True  # look for .osiris.yml on the base branch
    timeout_seconds: float = 600.0  # per command; then everything it started is killed
    output_bytes: int = 64 * 1024  # per command, kept from the end of its output
    path: str = "/usr/local/bin:/usr/bin:/bin"  # PATH of a check (nothing else is inherited)
    # On GitHub, the repository's own CI (check runs, check suites, statuses on the PR head) counts
    # as a check: recorded, and a failure returns the task in block mode.
    github_ci: bool = True
    # OSIRIS's own commands on GitHub: a cache bare clone per repository under
    # data_dir/cache/github fetches each version with the installation token (or OSIRIS_GITHUB_TOKEN),
    # sent as an HTTP header through git's environment, never in a URL or argv. {repo} is owner/name.
    github_clone_url: str = "https://github.com/{repo}.git"
    github_fetch_timeout_seconds: float = 300.0  # one git fetch into the cache clone
    # Results on the PR: a check run per version with a GitHub App, a commit status per command
    # (context osiris/<command>) with a plain token; false: only in OSIRIS (portal, API, events).
    github_report: bool = True


class SandboxSettings(_Group):
    """Isolation of pre-review checks (osiris/app/sandbox.py, docs/security.md)."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_CHECKS_")

    # auto: a pid+mount namespace as OSIRIS_CHECKS_UID when root, else a user namespace, else none
    # (with a warning). An explicit level that cannot be set up makes every check an `error` result.
    isolation: Literal["auto", "namespace", "userns", "none"] = "auto"
    uid: int = Field(default=65534, ge=1)  # `namespace`: the uid and gid a check runs as
    gid: int = Field(default=65534, ge=1)
    # Also hidden from checks (under an empty tmpfs), besides the data dir, OSIRIS_LOCAL_REPO, ./.env
    # and a GitHub App PEM file: e.g. a home holding credentials of the server's user.
    hidden_paths: list[Path] = []
    # false: a check gets a network namespace of its own with only a loopback (no API, no database,
    # no package downloads). True by default because most test commands install or fetch something.
    network: bool = True


class RoutingSettings(_Group):
    """Which skill a task needs and how waiting raises its priority."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_ROUTING_")

    # Words in a channel request that label the task with a skill (word -> skill).
    skill_keywords: dict[str, str] = {}
    # Aging: a pending task gains one priority step per interval waited, at most max_boost steps.
    aging_seconds: int = Field(default=3600, gt=0)
    aging_max_boost: int = Field(default=2, ge=0)


class WebhookSettings(_Group):
    """Outbound webhooks: task events POSTed to the URLs organizations' admins subscribe."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_WEBHOOKS_")

    timeout_seconds: float = 10.0  # per delivery attempt: to connect, and per read or write
    max_attempts: int = Field(default=8, ge=1)  # per delivery; then it is left failed in the log
    retry_base_seconds: float = 10.0  # backoff: base * 2^(attempt-1) without a Retry-After
    retry_max_seconds: float = 3600.0  # cap on the backoff and on a receiver's Retry-After
    response_excerpt_bytes: int = 1024  # of each response body, kept in the delivery log
    # Destinations whose host resolves to a loopback, private, link-local (169.254.169.254 too),
    # multicast, reserved or unspecified address are refused, when subscribed and before each
    # attempt, unless listed here: host names (exact) or IP networks, e.g. ["hooks.lan", "10.8.0.0/16"].
    allowed_hosts: list[str] = []
    # Also allow private networks (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7); loopback and
    # link-local addresses still have to be listed in OSIRIS_WEBHOOKS_ALLOWED_HOSTS.
    allow_private: bool = False
    # After rotate-secret, deliveries are signed with the new and the previous secret for this long.
    secret_grace_seconds: int = Field(default=86400, ge=0)
    # A subscription is disabled after this many failed deliveries in a row (retries exhausted).
    disable_after_failures: int = Field(default=15, ge=1)


class ReviewSettings(_Group):
    """Review reminders (osiris/app/reminders.py, docs/channels.md)."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_REVIEW_")

    # A task in REVIEW this long since anyone last acted on it (a transition, a message, a review)
    # is announced again to its reviewers on every channel they registered, once per interval; from
    # the second interval on, to the organization's admins too. Seconds or ISO 8601 (PT4H); 0: off.
    # An organization (organizations.review_remind_after_seconds) or a repository
    # (repositories.review_remind_after_seconds, which wins) may set its own.
    remind_after: timedelta = timedelta(hours=4)
    # How often each process looks for reviews that are due (one statement; replicas never double up).
    reminder_scan_seconds: float = Field(default=60.0, gt=0)

    @field_validator("remind_after", mode="before")
    @classmethod
    def _seconds_or_duration(cls, value: object) -> object:
        """`14400` in the environment is seconds (pydantic reads a bare number string as hours:…)."""
        if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            return timedelta(seconds=float(value))
        return value


class _OwnFieldsOnly(PydanticBaseSettingsSource):
    """The root's environment or `.env` source without the groups, which read their own: otherwise
    OSIRIS_CHECKS (a group's alias) would also be read as the whole `checks` group."""

    def __init__(self, source: PydanticBaseSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self._source = source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._source().items() if k not in GROUPS}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OSIRIS_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./.osiris")  # embedded PostgreSQL, local repositories, generated key
    # The reliability suite only: the process kills itself (as kill -9 would) at this named step of
    # publishing (`effects.fault_point`). Off unless set.
    fault_inject: str | None = None

    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    job: JobSettings = Field(default_factory=JobSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    repos: RepositorySettings = Field(default_factory=RepositorySettings)
    local: LocalGitSettings = Field(default_factory=LocalGitSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    channel: ChannelSettings = Field(default_factory=ChannelSettings)
    portal: PortalSettings = Field(default_factory=PortalSettings)
    changes: ChangesSettings = Field(default_factory=ChangesSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    checks: ChecksSettings = Field(default_factory=ChecksSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _OwnFieldsOnly(env_settings),
            _OwnFieldsOnly(dotenv_settings),
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _require_secret_outside_embedded(self) -> Settings:
        if self.auth.secret_key is None and not self.db.embedded:
            raise ValueError("OSIRIS_SECRET_KEY must be set to a random value when DATABASE_URL is used")
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy whose groups are copies too (changing one never changes the other). A mapping
        given for a group changes those fields of it: `update={"github": {"token": …}}`; like
        pydantic's own `model_copy`, nothing is validated."""
        update = dict(update or {})
        for name in GROUPS:
            if not isinstance(update.get(name), BaseSettings):
                update[name] = getattr(self, name).model_copy(update=update.get(name), deep=deep)
        return super().model_copy(update=update, deep=deep)

    def signing_key(self) -> str:
        """The key for JWTs and cookies: configured, or generated once per embedded data dir."""
        if self.auth.secret_key is not None:
            return self.auth.secret_key.get_secret_value()
        path = (self.data_dir / "secret.key").absolute()
        # Read once per process and data dir: every request's authentication asks for it.
        if (key := _GENERATED_KEYS.get(path)) is not None:
            return key
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        key = _GENERATED_KEYS[path] = path.read_text().strip()
        return key


# The groups of Settings, by attribute name (`settings.github`).
GROUPS: dict[str, type[BaseSettings]] = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseSettings)
}


@dataclass(frozen=True)
class SettingField:
    """One setting: where it lives in Settings and the environment names it is read from."""

    group: str | None  # the attribute of Settings holding it; None for a field of Settings itself
    name: str  # its name in the group (or in Settings)
    info: FieldInfo
    env_names: tuple[str, ...]  # the first is the one to write down

    @property
    def env(self) -> str:
        return self.env_names[0]

    @property
    def path(self) -> str:
        """`github.token`: the attribute path from a Settings object."""
        return f"{self.group}.{self.name}" if self.group else self.name

    def value(self, settings: Settings) -> Any:
        return getattr(getattr(settings, self.group) if self.group else settings, self.name)


def setting_fields() -> Iterator[SettingField]:
    """Every setting, in the order `Settings` declares them (its own fields, then each group's)."""
    for group, cls in [(None, Settings), *GROUPS.items()]:
        prefix = cls.model_config.get("env_prefix", "")
        for name, info in cls.model_fields.items():
            if group is None and name in GROUPS:
                continue
            alias = info.validation_alias
            if alias is None:
                names: tuple[str, ...] = (f"{prefix}{name}".upper(),)
            else:
                names = tuple(str(c).upper() for c in getattr(alias, "choices", [alias]))
            yield SettingField(group, name, info, names)


_GENERATED_KEYS: dict[Path, str] = {}  # the embedded default's generated signing keys, by file


def _local_hosts(public_url: str) -> list[str]:
    public = urlsplit(public_url)
    hosts = ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[::1]:*"]
    return list(dict.fromkeys([*hosts, public.netloc, f"{public.hostname}:*"]))


def _local_origins(public_url: str) -> list[str]:
    public = urlsplit(public_url)
    local = [
        f"{scheme}://{host}{port}"
        for scheme in ("http", "https")
        for host in ("localhost", "127.0.0.1", "[::1]")
        for port in ("", ":*")
    ]
    return list(dict.fromkeys([*local, f"{public.scheme}://{public.netloc}"]))


@lru_cache
def get_settings() -> Settings:
    return Settings()


class McpClientSettings(BaseSettings):
    """`osiris mcp`, the stdio MCP server on an agent's machine: where OSIRIS is and the agent's
    token. Apart from `Settings`: that client holds none of the server's configuration and must not
    refuse to start over it; like before, the environment only (no `.env`)."""

    model_config = SettingsConfigDict(env_prefix="OSIRIS_", extra="ignore")

    url: str = "http://127.0.0.1:8000"
    token: str = ""  # an agent's API token
    mcp_poll_seconds: float = 2.0  # how often subscribed tasks are checked for changes
