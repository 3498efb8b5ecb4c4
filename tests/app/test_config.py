"""Settings grouped by area keep the environment names they always had, and read them like before."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from osiris.app.config import GROUPS, Settings, setting_fields

# Every environment name before the settings were grouped (issue 15): none may change.
BEFORE = """
    DATABASE_URL OSIRIS_ADMIN_PASSWORD OSIRIS_CHANGES_MAX_FILE_LINES OSIRIS_CHANGES_MAX_LINES 
    OSIRIS_CHANNEL_PRIORITY_KEYWORDS OSIRIS_CHANNEL_RATE_PER_MINUTE OSIRIS_CHANNEL_RETRY_SECONDS 
    OSIRIS_CHANNEL_UNMAPPED OSIRIS_CHAT_MAX_CHARS OSIRIS_CHECKS OSIRIS_CHECKS_DEFAULT_MODE 
    OSIRIS_CHECKS_GID OSIRIS_CHECKS_GITHUB_CI OSIRIS_CHECKS_GITHUB_CLONE_URL 
    OSIRIS_CHECKS_GITHUB_FETCH_TIMEOUT_SECONDS OSIRIS_CHECKS_GITHUB_REPORT 
    OSIRIS_CHECKS_HIDDEN_PATHS OSIRIS_CHECKS_ISOLATION OSIRIS_CHECKS_MODE OSIRIS_CHECKS_NETWORK 
    OSIRIS_CHECKS_OUTPUT_BYTES OSIRIS_CHECKS_PATH OSIRIS_CHECKS_READ_REPO_CONFIG 
    OSIRIS_CHECKS_TIMEOUT_SECONDS OSIRIS_CHECKS_UID OSIRIS_CORS_ORIGINS OSIRIS_DATA_DIR 
    OSIRIS_DB_MAX_OVERFLOW OSIRIS_DB_POOL_SIZE OSIRIS_DB_POOL_TIMEOUT_SECONDS 
    OSIRIS_DEFAULT_BASE_BRANCH OSIRIS_DEFAULT_REPO OSIRIS_DELETE_BRANCH_ON_MERGE 
    OSIRIS_EMAIL_ADDRESS OSIRIS_EMAIL_ALLOWED_DOMAINS OSIRIS_EMAIL_MAX_BYTES 
    OSIRIS_EMAIL_WEBHOOK_SECRET OSIRIS_FAULT_INJECT OSIRIS_GITHUB_API_URL OSIRIS_GITHUB_APPROVERS 
    OSIRIS_GITHUB_APP_ID OSIRIS_GITHUB_BOT_LOGIN OSIRIS_GITHUB_INSTALLATION_ID 
    OSIRIS_GITHUB_ISSUE_LABEL OSIRIS_GITHUB_LABEL OSIRIS_GITHUB_MERGE_METHOD 
    OSIRIS_GITHUB_PRIVATE_KEY OSIRIS_GITHUB_REPO OSIRIS_GITHUB_RETRY_SECONDS 
    OSIRIS_GITHUB_TEXT_PATH OSIRIS_GITHUB_TIMEOUT_SECONDS OSIRIS_GITHUB_TOKEN 
    OSIRIS_GITHUB_WEBHOOK_SECRET OSIRIS_GIT_HTTP_ENABLED OSIRIS_HOST 
    OSIRIS_JOB_HEARTBEAT_TIMEOUT_SECONDS OSIRIS_JOB_POLL_SECONDS OSIRIS_JWT_TTL_SECONDS 
    OSIRIS_LEASE_SECONDS OSIRIS_LIVE_MAX_PER_CREDENTIAL OSIRIS_LIVE_RECHECK_SECONDS 
    OSIRIS_LOCAL_MERGE_METHOD OSIRIS_LOCAL_PROJECTS OSIRIS_LOCAL_REPO OSIRIS_LOCAL_TEXT_PATH 
    OSIRIS_LOGIN_RATE_PER_MINUTE OSIRIS_LOG_JSON OSIRIS_LOG_LEVEL OSIRIS_MAX_ARTIFACT_BYTES 
    OSIRIS_MAX_ARTIFACT_FILES OSIRIS_MAX_REQUESTS_IN_PROGRESS OSIRIS_MCP_ALLOWED_HOSTS 
    OSIRIS_MCP_ALLOWED_ORIGINS OSIRIS_OAUTH_TOKEN_TTL_SECONDS OSIRIS_PORT 
    OSIRIS_PORTAL_BOARD_CLOSED_DAYS OSIRIS_PORTAL_FILE_NAMES_PER_PAGE OSIRIS_PORTAL_HIGHLIGHT_BYTES 
    OSIRIS_PORTAL_INLINE_FILES OSIRIS_PORTAL_SESSION_MAX_AGE_SECONDS OSIRIS_PORTAL_WS_REPLAY_LIMIT 
    OSIRIS_PORTAL_WS_SEND_TIMEOUT_SECONDS OSIRIS_PUBLIC_URL OSIRIS_REPOSITORIES_AUTO_REGISTER 
    OSIRIS_REVIEW_REMINDER_SCAN_SECONDS OSIRIS_REVIEW_REMIND_AFTER OSIRIS_ROUTING_AGING_MAX_BOOST 
    OSIRIS_ROUTING_AGING_SECONDS OSIRIS_ROUTING_SKILL_KEYWORDS OSIRIS_RUN_WORKER OSIRIS_SECRET_KEY 
    OSIRIS_SEPARATION_OF_DUTIES OSIRIS_SLACK_ALLOWED_TEAMS OSIRIS_SLACK_API_URL 
    OSIRIS_SLACK_BOT_TOKEN OSIRIS_SLACK_BOT_TOKENS OSIRIS_SLACK_SIGNING_SECRET 
    OSIRIS_SMTP_LISTEN_HOST OSIRIS_SMTP_LISTEN_PORT OSIRIS_SMTP_RELAY_HOST 
    OSIRIS_SMTP_RELAY_PASSWORD OSIRIS_SMTP_RELAY_PORT OSIRIS_SMTP_RELAY_STARTTLS 
    OSIRIS_SMTP_RELAY_USERNAME OSIRIS_SWEEP_INTERVAL_SECONDS OSIRIS_TELEGRAM_ALLOWED_CHATS 
    OSIRIS_TELEGRAM_API_URL OSIRIS_TELEGRAM_BOT_TOKEN OSIRIS_TELEGRAM_BOT_USERNAME 
    OSIRIS_TELEGRAM_WEBHOOK_SECRET OSIRIS_TRUSTED_PROXIES OSIRIS_TWILIO_ACCOUNT_SID 
    OSIRIS_TWILIO_ALLOWED_NUMBERS OSIRIS_TWILIO_AUTH_TOKEN OSIRIS_TWILIO_WHATSAPP_FROM 
    OSIRIS_WEBHOOKS_ALLOWED_HOSTS OSIRIS_WEBHOOKS_ALLOW_PRIVATE 
    OSIRIS_WEBHOOKS_DISABLE_AFTER_FAILURES OSIRIS_WEBHOOKS_MAX_ATTEMPTS 
    OSIRIS_WEBHOOKS_RESPONSE_EXCERPT_BYTES OSIRIS_WEBHOOKS_RETRY_BASE_SECONDS 
    OSIRIS_WEBHOOKS_RETRY_MAX_SECONDS OSIRIS_WEBHOOKS_SECRET_GRACE_SECONDS 
    OSIRIS_WEBHOOKS_TIMEOUT_SECONDS OSIRIS_WORKERS OSIRIS_WORKER_JOBS OSIRIS_WORKER_SKIP_JOBS 
""".split()

URL = "postgresql://x@127.0.0.1/x"


@pytest.fixture(autouse=True)
def _no_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env but the one a test writes


def test_every_environment_name_is_kept() -> None:
    fields = list(setting_fields())
    assert sorted(f.env for f in fields) == sorted(BEFORE)
    assert len({f.path for f in fields}) == len(fields)


def test_a_group_name_is_its_prefix_plus_the_field_name_unless_aliased() -> None:
    for f in setting_fields():
        if f.info.validation_alias is None:
            prefix = (GROUPS[f.group] if f.group else Settings).model_config["env_prefix"]
            assert f.env == f"{prefix}{f.name}".upper()
    aliased = {f.path: f.env_names for f in setting_fields() if f.info.validation_alias is not None}
    assert aliased == {
        "db.url": ("DATABASE_URL", "OSIRIS_DATABASE_URL"),
        "local.git_http_enabled": ("OSIRIS_GIT_HTTP_ENABLED",),
        "channel.max_chars": ("OSIRIS_CHAT_MAX_CHARS",),
        "checks.commands": ("OSIRIS_CHECKS",),
    }


def test_groups_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("OSIRIS_SECRET_KEY", "k")
    monkeypatch.setenv("OSIRIS_GITHUB_TOKEN", "ghp_x")
    monkeypatch.setenv("OSIRIS_GITHUB_REPO", "octo/app")
    monkeypatch.setenv("OSIRIS_CHAT_MAX_CHARS", "300")
    monkeypatch.setenv("OSIRIS_CHECKS_ISOLATION", "none")
    monkeypatch.setenv("OSIRIS_WORKER_JOBS", "run_checks,publish")
    monkeypatch.setenv("OSIRIS_REVIEW_REMIND_AFTER", "60")
    s = Settings()
    assert s.db.url == URL and not s.db.embedded
    assert s.auth.secret_key.get_secret_value() == "k"
    assert s.github.enabled and s.github.repo == {"*": "octo/app"}
    assert s.channel.max_chars == 300
    assert s.sandbox.isolation == "none"
    assert s.worker.jobs == ["run_checks", "publish"]
    assert s.review.remind_after.total_seconds() == 60


def test_groups_read_the_env_file(tmp_path) -> None:
    (tmp_path / ".env").write_text(
        'OSIRIS_GITHUB_TOKEN=ghp_file\nOSIRIS_CHECKS={"default": ["pytest"]}\nOSIRIS_DATA_DIR=/srv/osiris\n'
    )
    s = Settings()
    assert s.github.token.get_secret_value() == "ghp_file"
    assert s.checks.commands == {"default": ["pytest"]}
    assert str(s.data_dir) == "/srv/osiris"


def test_osiris_checks_is_the_commands_not_the_whole_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSIRIS_CHECKS", '{"mode": ["make test"]}')  # a repository named "mode"
    s = Settings()
    assert s.checks.commands == {"mode": ["make test"]}
    assert s.checks.mode == {}


def test_given_fields_of_a_group_leave_its_others_to_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("OSIRIS_GITHUB_API_URL", "https://ghe.example/api/v3")
    s = Settings(github={"token": "ghp_given"}, server={"public_url": "https://osiris.example"})
    assert s.github.token == SecretStr("ghp_given")
    assert s.github.api_url == "https://ghe.example/api/v3"
    assert "osiris.example" in s.server.mcp_allowed_hosts  # derived from the given public_url


def test_model_copy_changes_a_copy_of_the_group() -> None:
    s = Settings(github={"label": "osiris"})
    copy = s.model_copy(update={"github": {"label": "review-me"}, "data_dir": "/elsewhere"})
    assert (copy.github.label, s.github.label) == ("review-me", "osiris")
    assert str(copy.data_dir) == "/elsewhere"
    assert all(getattr(copy, g) is not getattr(s, g) for g in GROUPS)  # nothing shared


def test_a_database_url_needs_a_secret_key() -> None:
    with pytest.raises(ValidationError, match="OSIRIS_SECRET_KEY"):
        Settings(db={"url": URL})
    assert Settings(db={"url": URL}, auth={"secret_key": "k"}).signing_key() == "k"
