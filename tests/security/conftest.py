"""Security suite fixtures: the people every property and attack acts as, a live app with every webhook
on, and the code hosts' fixtures (`github`, the GitHub fake; `host` and `repo_name`, the local one)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.support.github_harness import github  # noqa: F401 - a fixture
from tests.support.local_git import host, repo_name  # noqa: F401 - fixtures
from tests.support.servers import LiveServer

from .security_helpers import SECRETS


@pytest.fixture
async def people(factory):
    """One organization's admin, reviewer and two agents, as actors."""
    org = await factory.org()
    users = {}
    for name, role in (
        ("admin", "admin"),
        ("reviewer", "reviewer"),
        ("agent_a", "agent"),
        ("agent_b", "agent"),
    ):
        users[name] = factory.actor(await factory.user(role, org=org))
    return org.id, users


@pytest.fixture(scope="session")
def live_app(settings, app):
    """Served beside the in-process app (which ran the migrations and made the admin), with every
    webhook switched on so that its parsing, not just its signature check, is attacked."""
    secret = {k: SecretStr(v) for k, v in SECRETS.items()}
    live = LiveServer(
        settings,
        github={"webhook_secret": secret["github_webhook_secret"]},
        twilio={"account_sid": "AC" + "0" * 32, "auth_token": secret["twilio_auth_token"]},
        slack={"signing_secret": secret["slack_signing_secret"]},
        email={"webhook_secret": secret["email_webhook_secret"]},
    )
    live.start()
    yield live
    live.stop()
