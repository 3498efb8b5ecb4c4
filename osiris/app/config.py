"""Every setting OSIRIS reads, in one place (environment and `.env`)."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OSIRIS_", env_file=".env", extra="ignore")

    # --- storage -------------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "OSIRIS_DATABASE_URL")
    )
    data_dir: Path = Path("./.osiris")
    db_pool_size: int = 10
    db_max_overflow: int = 20

    # --- serving -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    cors_origins: list[str] = []
    log_level: str = "INFO"
    log_json: bool = False
    run_worker: bool = True  # `serve` runs a job worker in-process unless turned off

    # --- auth ----------------------------------------------------------------------------------
    # Signs session cookies and JWTs. Required with DATABASE_URL; the embedded default generates
    # one under the data dir on first start so no two installations share a key.
    secret_key: SecretStr | None = None
    admin_password: SecretStr | None = None
    jwt_ttl_seconds: int = 3600
    login_rate_per_minute: int = 10

    # --- lifecycle -----------------------------------------------------------------------------
    lease_seconds: int = 600
    sweep_interval_seconds: float = 15.0
    max_artifact_bytes: int = 5 * 1024 * 1024
    default_repo: str = "default"
    default_base_branch: str = "main"

    # --- integrations (used by the code host and channel modules) ------------------------------
    github_webhook_secret: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    email_webhook_secret: SecretStr | None = None

    @property
    def embedded(self) -> bool:
        """True when OSIRIS runs its own PostgreSQL under the data dir."""
        return self.database_url is None

    @model_validator(mode="after")
    def _require_secret_outside_embedded(self) -> Settings:
        if self.secret_key is None and not self.embedded:
            raise ValueError("OSIRIS_SECRET_KEY must be set to a random value when DATABASE_URL is used")
        return self

    def signing_key(self) -> str:
        """The key for JWTs and cookies: configured, or generated once per embedded data dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
