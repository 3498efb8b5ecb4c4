"""Which pre-review checks a repository has: the commands and the mode (`block` or `inform`), from
settings (`checks`, `checks_mode`) or else `.osiris.yml` on the base branch, validated. An invalid
file is a config whose `error` is shown to reviewers, never a block."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from osiris.app.models import Task
from osiris.app.ports import CheckoutSource, RemoteCheckoutSource

REPO_CONFIG = ".osiris.yml"
MODES = ("block", "inform")
MAX_COMMANDS = 20


class ConfigError(ValueError):
    """`.osiris.yml` is not what it should be; the reason is shown to reviewers."""


@dataclass(frozen=True)
class CheckConfig:
    commands: list[str]
    mode: str  # block | inform
    source: str  # settings | .osiris.yml
    error: str | None = None  # an invalid .osiris.yml: an `error` result, never a block

    def as_payload(self) -> dict[str, Any]:
        return {"commands": self.commands, "mode": self.mode, "source": self.source, "error": self.error}

    @classmethod
    def from_payload(cls, data: Any) -> CheckConfig | None:
        if not isinstance(data, dict):
            return None  # a job queued before configs travelled with it: read it again
        return cls(list(data["commands"]), data["mode"], data["source"], data.get("error"))


def parse_repo_config(text: str, *, default_mode: str) -> CheckConfig:
    """Validate `.osiris.yml`: `checks:` a list of command strings, `mode:` block or inform."""
    import yaml  # only a repository's own check configuration needs it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{REPO_CONFIG} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{REPO_CONFIG} must be a mapping with `checks:` and `mode:`")
    unknown = set(data) - {"checks", "mode"}
    if unknown:
        raise ConfigError(f"{REPO_CONFIG}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    commands = data.get("checks") or []
    if not isinstance(commands, list) or not all(isinstance(c, str) and c.strip() for c in commands):
        raise ConfigError(f"{REPO_CONFIG}: `checks` must be a list of non-empty command strings")
    if len(commands) > MAX_COMMANDS:
        raise ConfigError(f"{REPO_CONFIG}: at most {MAX_COMMANDS} checks")
    mode = data.get("mode", default_mode)
    if mode not in MODES:
        raise ConfigError(f"{REPO_CONFIG}: `mode` must be block or inform, not {mode!r}")
    return CheckConfig([c.strip() for c in commands], mode, REPO_CONFIG)


async def resolve_config(settings: Any, host: Any, task: Task) -> CheckConfig | None:
    """The repository's checks, None when it has none or the host cannot run them. Settings win
    over `.osiris.yml`; an invalid file is a config whose `error` is shown to reviewers (inform)."""
    if not can_run(host):
        return None
    if task.repo in settings.checks.commands:
        mode = settings.checks.mode.get(task.repo, settings.checks.default_mode)
        config = CheckConfig(list(settings.checks.commands[task.repo]), mode, "settings")
        return config if config.commands else None
    if not settings.checks.read_repo_config:
        return None
    if isinstance(host, RemoteCheckoutSource):
        text = await host.checks_file(task, REPO_CONFIG)
    else:
        text = await asyncio.to_thread(host.base_file, task, REPO_CONFIG)
    if text is None:
        return None
    try:
        config = parse_repo_config(text, default_mode=settings.checks.default_mode)
    except ConfigError as exc:
        return CheckConfig([], "inform", REPO_CONFIG, error=str(exc))
    return config if config.commands else None


def can_run(host: Any) -> bool:
    """The host can give the checks a work tree: the local git host, or GitHub through a cache clone."""
    return isinstance(host, (CheckoutSource, RemoteCheckoutSource))
