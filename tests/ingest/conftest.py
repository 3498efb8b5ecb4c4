"""An application of its own for the channel tests: secrets set, fakes for Twilio, Slack and SMTP; and
the GitHub fake wired to it (`github`) for the GitHub issues way in."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from osiris.app.config import Settings
from osiris.app.runtime import Runtime
from osiris.ingest import extension
from osiris.server import create_app
from tests.support.channel_fakes import FakeSlack, FakeTelegram, FakeTwilio, SmtpSink
from tests.support.github_harness import github  # noqa: F401 - a fixture
from tests.support.jobs import drain as drain_jobs
from tests.support.settings import make_settings

PUBLIC_URL = "https://osiris.example.com"  # what the providers call; the test client is elsewhere
TWILIO_SID = "AC" + "a" * 32
TWILIO_TOKEN = "twilio-token-" + secrets.token_hex(8)
TWILIO_FROM = "whatsapp:+14155238886"
SLACK_SECRET = "slack-secret-" + secrets.token_hex(8)
SLACK_TOKEN = "xoxb-test-" + secrets.token_hex(8)
EMAIL_SECRET = "email-secret-" + secrets.token_hex(8)
OUR_ADDRESS = "osiris@osiris.example.com"
RATE = 5
TELEGRAM_BOT_ID = 7000001
TELEGRAM_TOKEN = f"{TELEGRAM_BOT_ID}:AA" + secrets.token_hex(16)
TELEGRAM_SECRET = "tg-secret-" + secrets.token_hex(8)
TELEGRAM_USERNAME = "osiris_bot"


@pytest.fixture(scope="session")
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(token=SLACK_TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(token=TELEGRAM_TOKEN, bot_id=TELEGRAM_BOT_ID)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def fake_twilio() -> FakeTwilio:
    return FakeTwilio(TWILIO_SID, TWILIO_TOKEN)


@pytest.fixture(scope="session")
def settings(
    database_url: str, tmp_root: Path, fake_slack: FakeSlack, smtp_sink: SmtpSink, fake_telegram: FakeTelegram
) -> Settings:
    return make_settings(
        database_url,
        tmp_root / "ingest-data",
        server={"public_url": PUBLIC_URL},
        twilio={"auth_token": TWILIO_TOKEN, "account_sid": TWILIO_SID, "whatsapp_from": TWILIO_FROM},
        slack={"signing_secret": SLACK_SECRET, "bot_token": SLACK_TOKEN, "api_url": fake_slack.url},
        email={"webhook_secret": EMAIL_SECRET, "address": OUR_ADDRESS},
        smtp={
            "listen_port": 0,
            "relay_host": "127.0.0.1",
            "relay_port": smtp_sink.port,
            "relay_starttls": False,
        },
        channel={"rate_per_minute": RATE},
        telegram={
            "bot_token": TELEGRAM_TOKEN,
            "webhook_secret": TELEGRAM_SECRET,
            "bot_username": TELEGRAM_USERNAME,
            "api_url": fake_telegram.url,
        },
    )


@pytest.fixture(scope="session")
async def app(settings: Settings, fake_twilio: FakeTwilio) -> AsyncIterator:
    application = create_app(settings, run_background=False)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=30):
        # The same services as production, with api.twilio.com answered by the fake.
        await extension.services(
            application.state.runtime, twilio_transport=httpx.ASGITransport(app=fake_twilio.app)
        )
        yield application


@pytest.fixture(scope="session")
def runtime(app) -> Runtime:
    return app.state.runtime


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> None:
    if "app" not in request.fixturenames and "client" not in request.fixturenames:
        return
    twilio, slack, sink = (request.getfixturevalue(n) for n in ("fake_twilio", "fake_slack", "smtp_sink"))
    twilio.calls.clear()
    twilio.fail_with = None
    slack.posts.clear()
    slack.fail_with = None
    slack.unreachable_channels.clear()
    sink.messages.clear()
    telegram = request.getfixturevalue("fake_telegram")
    telegram.calls.clear()
    telegram.fail_with = None


@pytest.fixture
async def drain(runtime: Runtime, settings: Settings):
    async def run() -> None:
        await drain_jobs(runtime, settings)

    return run


@pytest.fixture
def count(runtime: Runtime):
    async def rows(model: Any, *where: Any) -> int:
        async with runtime.sessions() as session:
            return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    return rows


# --- signed requests, with the providers' own SDKs ---------------------------------------------


class Channels:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def twilio(
        self, form: dict[str, str], *, token: str = TWILIO_TOKEN, url: str | None = None
    ) -> httpx.Response:
        path = "/api/v1/webhooks/twilio"
        signature = RequestValidator(token).compute_signature(url or PUBLIC_URL + path, form)
        return await self.client.post(path, data=form, headers={"X-Twilio-Signature": signature})

    async def slack(
        self, path: str, body: bytes, content_type: str, *, secret: str = SLACK_SECRET, age: int = 0
    ) -> httpx.Response:
        timestamp = str(int(time.time()) - age)
        signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature or "",
        }
        return await self.client.post(path, content=body, headers=headers)

    async def slack_event(self, payload: dict[str, Any], **kw: Any) -> httpx.Response:
        import json

        return await self.slack(
            "/api/v1/webhooks/slack/events", json.dumps(payload).encode(), "application/json", **kw
        )

    async def slack_command(self, form: dict[str, str], **kw: Any) -> httpx.Response:
        body = httpx.QueryParams(form).__str__().encode()
        return await self.slack(
            "/api/v1/webhooks/slack/commands", body, "application/x-www-form-urlencoded", **kw
        )

    async def telegram(
        self, update: dict[str, Any], *, secret: str | None = TELEGRAM_SECRET
    ) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        return await self.client.post("/api/v1/webhooks/telegram", json=update, headers=headers)

    async def email(self, raw: bytes, *, secret: str = EMAIL_SECRET) -> httpx.Response:
        return await self.client.post(
            "/api/v1/webhooks/email",
            content=raw,
            headers={"Content-Type": "message/rfc822", "X-Osiris-Email-Secret": secret},
        )


@pytest.fixture
def channels(client: httpx.AsyncClient) -> Channels:
    return Channels(client)
