"""Which code host and which chat channels the settings turn on, and what each still needs.

Read from settings only, so the answer is the same on the Integrations page and in the start-up
log line. It names settings by their environment variable and never carries a value: a secret is
only ever "set" or "missing".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osiris.app.config import Settings, setting_fields


@dataclass(frozen=True)
class Integration:
    key: str
    name: str
    kind: str  # "code host" | "channel"
    on: bool
    needs: list[str] = field(default_factory=list)  # environment variables still to set
    webhook_url: str | None = None  # what to configure at the provider
    note: str = ""

    @property
    def ready(self) -> bool:
        return self.on and not self.needs


_FIELDS = {f.path: f for f in setting_fields()}


def _env(path: str) -> str:
    """The environment name of a setting given by its path (`github.token`)."""
    return _FIELDS[path].env


def _missing(settings: Settings, *paths: str) -> list[str]:
    return [_env(p) for p in paths if _FIELDS[p].value(settings) in (None, "", [], {})]


def status(settings: Settings) -> list[Integration]:
    base = settings.server.public_url.rstrip("/")
    hook = f"{base}/api/v1/webhooks"
    github_hook = f"{hook}/github"
    app = bool(settings.github.app_id)  # as settings.github.enabled reads them
    token = bool(settings.github.token) and not app
    found = [
        Integration(
            "local",
            "Local git host",
            "code host",
            on=not settings.github.enabled,
            note=(
                f"repositories served read-only at {base}/git/<name>.git"
                if settings.local.git_http_enabled
                else "git over HTTP is off (OSIRIS_GIT_HTTP_ENABLED=false)"
            )
            if not settings.github.enabled
            else "off: GitHub is the code host",
        ),
        Integration(
            "github_token",
            "GitHub (token)",
            "code host",
            on=token,
            needs=_missing(settings, "github.repo", "github.webhook_secret")
            if token
            else _missing(settings, "github.token", "github.repo"),
            webhook_url=github_hook,
            note="pull requests with a personal or fine-grained token" if token else "",
        ),
        Integration(
            "github_app",
            "GitHub App",
            "code host",
            on=app,
            needs=_missing(
                settings,
                "github.private_key",
                "github.installation_id",
                "github.repo",
                "github.webhook_secret",
            )
            if app
            else _missing(settings, "github.app_id", "github.private_key", "github.installation_id"),
            webhook_url=github_hook,
            note="check runs and pull requests as the App" if app else "",
        ),
    ]
    twilio = settings.twilio.auth_token is not None or settings.twilio.account_sid is not None
    slack = any([settings.slack.signing_secret, settings.slack.bot_token, settings.slack.bot_tokens])
    telegram = settings.telegram.bot_token is not None or settings.telegram.webhook_secret is not None
    email_hook = settings.email.webhook_secret is not None
    smtp = settings.smtp.listen_port is not None
    slack_needs = _missing(settings, "slack.signing_secret")
    if not (settings.slack.bot_token or settings.slack.bot_tokens):
        slack_needs.append(_env("slack.bot_token"))
    email_out = _missing(settings, "email.address", "smtp.relay_host")
    found += [
        Integration(
            "whatsapp",
            "WhatsApp (Twilio)",
            "channel",
            on=twilio,
            needs=_missing(settings, "twilio.auth_token", "twilio.account_sid", "twilio.whatsapp_from"),
            webhook_url=f"{hook}/twilio",
        ),
        Integration(
            "slack",
            "Slack",
            "channel",
            on=slack,
            needs=slack_needs,
            webhook_url=f"{hook}/slack/events",
            note=f"slash command: {hook}/slack/commands",
        ),
        Integration(
            "email",
            "Email (webhook)",
            "channel",
            on=email_hook,
            needs=_missing(settings, "email.webhook_secret") + email_out,
            webhook_url=f"{hook}/email",
            note="replies need an SMTP relay",
        ),
        Integration(
            "smtp",
            "Email (SMTP listener)",
            "channel",
            on=smtp,
            needs=_missing(settings, "smtp.listen_port", "email.address")
            + _missing(settings, "smtp.relay_host"),
            note=f"listens on {settings.smtp.listen_host}:{settings.smtp.listen_port}" if smtp else "",
        ),
        Integration(
            "telegram",
            "Telegram",
            "channel",
            on=telegram,
            needs=_missing(settings, "telegram.bot_token", "telegram.webhook_secret"),
            webhook_url=f"{hook}/telegram",
            note="`osiris telegram set-webhook` registers the URL",
        ),
        Integration(
            "github_issues",
            "GitHub issues",
            "channel",
            on=settings.github.enabled,
            needs=_missing(settings, "github.webhook_secret")
            if settings.github.enabled
            else [_env("github.token") + " or " + _env("github.app_id")],
            webhook_url=github_hook,
            note=f"issues labelled {settings.github.issue_label!r} become tasks",
        ),
    ]
    return found


def summary(settings: Settings) -> str:
    """One log line: what is on (and what it still needs), what is off and why."""
    on, off = [], []
    for i in status(settings):
        if i.on:
            on.append(f"{i.key} (needs {', '.join(i.needs)})" if i.needs else i.key)
        elif i.key == "local":
            off.append("local (GitHub is the code host)")
        else:
            off.append(f"{i.key} (set {', '.join(i.needs)})" if i.needs else i.key)
    return f"integrations on: {', '.join(on) or 'none'}; off: {', '.join(off) or 'none'}"
