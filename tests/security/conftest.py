"""Security suite fixtures: the people every property and attack acts as."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from security_helpers import SECRETS
from servers import LiveServer


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
    live = LiveServer(
        settings, twilio_account_sid="AC" + "0" * 32, **{k: SecretStr(v) for k, v in SECRETS.items()}
    )
    live.start()
    yield live
    live.stop()
