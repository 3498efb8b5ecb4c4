"""No container engine runs here, so the container files are checked by reading them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from osiris.app.config import setting_fields
from osiris.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _setting_names() -> set[str]:
    return {f.env for f in setting_fields()}  # DATABASE_URL: the conventional name, without our prefix


def test_dockerfile_runs_the_console_script_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert re.search(r'^ENTRYPOINT \["tini", "--", "osiris"\]$', text, re.M)
    assert "osiris" in scripts
    assert re.search(r"^USER osiris$", text, re.M)
    assert text.count("FROM ") == 2  # multi-stage
    cmd = re.search(r'^CMD \["(\w+)"\]$', text, re.M).group(1)
    build_parser().parse_args([cmd])  # the default command exists
    for var in re.findall(r"\b(OSIRIS_[A-Z_]+)=", text):
        assert var in _setting_names(), var


def test_compose_uses_real_commands_and_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["postgres"]["healthcheck"]["test"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    replicas = [s for s in services.values() if s.get("command") == ["serve"]]
    assert len(replicas) == 2
    assert services["worker"]["command"] == ["worker"]
    parser = build_parser()
    for name, service in services.items():
        if name == "postgres":
            continue  # the database image's own variables
        if "command" in service:
            parser.parse_args(service["command"])
        for var in service.get("environment") or {}:
            assert var in _setting_names(), f"{name}: {var} is not a setting"


def test_env_example_lists_exactly_the_settings():
    lines = (ROOT / ".env.example").read_text().splitlines()
    listed = {
        line.split("=", 1)[0].lstrip("# ").strip() for line in lines if re.match(r"^#? ?[A-Z_]+=", line)
    }
    assert listed == _setting_names()
