"""Which code host and which chat channels the settings turn on, and what each still needs.

Read from settings only, so the answer is the same on the Integrations page and in the start-up
log line. It names settings by their environment variable and never carries a value: a secret is
only ever "set" or "missing".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osiris.app.config import Settings


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


def _env(name: str) -> str:
    return f"OSIRIS_{name.upper()}"


def _missing(settings: Settings, *names: str) -> list[str]:
    return [_env(n) for n in names if getattr(settings, n) in (None, "", [], {})]


def status(settings: Settings) -> list[Integration]:
    base = settings.public_url.rstrip("/")
    hook = f"{base}/api/v1/webhooks"
    github_hook = f"{hook}/github"
    app = bool(settings.github_app_id)  # as Settings.github_enabled reads them
    token = bool(settings.github_token) and not app
    found = [
        Integration(
            "local",
            "Local git host",
            "code host",
            on=not settings.github_enabled,
            note=(
                f"repositories served read-only at {base}/git/<name>.git"
                if settings.git_http_enabled
                else "git over HTTP is off (OSIRIS_GIT_HTTP_ENABLED=false)"
            )
            if not settings.github_enabled
            else "off: GitHub is the code host",
        ),
        Integration(
            "github_token",
            "GitHub (token)",
            "code host",
            on=token,
            needs=_missing(settings, "github_repo", "github_webhook_secret")
            if token
            else _missing(settings, "github_token", "github_repo"),
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
                "github_private_key",
                "github_installation_id",
                "github_repo",
                "github_webhook_secret",
            )
            if app
            else _missing(settings, "github_app_id", "github_private_key", "github_installation_id"),
            webhook_url=github_hook,
            note="check runs and pull requests as the App" if app else "",
        ),
    ]
    twilio = settings.twilio_auth_token is not None or settings.twilio_account_sid is not None
    slack = any([settings.slack_signing_secret, settings.slack_bot_token, settings.slack_bot_tokens])
    telegram = settings.telegram_bot_token is not None or settings.telegram_webhook_secret is not None
    email_hook = settings.email_webhook_secret is not None
    smtp = settings.smtp_listen_port is not None
    slack_needs = _missing(settings, "slack_signing_secret")
    if not (settings.slack_bot_token or settings.slack_bot_tokens):
        slack_needs.append(_env("slack_bot_token"))
    email_out = _missing(settings, "email_address", "smtp_relay_host")
    found += [
        Integration(
            "whatsapp",
            "WhatsApp (Twilio)",
            "channel",
            on=twilio,
            needs=_missing(settings, "twilio_auth_token", "twilio_account_sid", "twilio_whatsapp_from"),
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
            needs=_missing(settings, "email_webhook_secret") + email_out,
            webhook_url=f"{hook}/email",
            note="replies need an SMTP relay",
        ),
        Integration(
            "smtp",
            "Email (SMTP listener)",
            "channel",
            on=smtp,
            needs=_missing(settings, "smtp_listen_port", "email_address")
            + _missing(settings, "smtp_relay_host"),
            note=f"listens on {settings.smtp_listen_host}:{settings.smtp_listen_port}" if smtp else "",
        ),
        Integration(
            "telegram",
            "Telegram",
            "channel",
            on=telegram,
            needs=_missing(settings, "telegram_bot_token", "telegram_webhook_secret"),
            webhook_url=f"{hook}/telegram",
            note="`osiris telegram set-webhook` registers the URL",
        ),
        Integration(
            "github_issues",
            "GitHub issues",
            "channel",
            on=settings.github_enabled,
            needs=_missing(settings, "github_webhook_secret")
            if settings.github_enabled
            else [_env("github_token") + " or " + _env("github_app_id")],
            webhook_url=github_hook,
            note=f"issues labelled {settings.github_issue_label!r} become tasks",
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
