"""scripts/send_channel_message.py against a real OSIRIS on a socket: each channel's signed request
creates a task with the text; a wrong secret is refused, the script exits non-zero, nothing is stored."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode
from pydantic import SecretStr
from sqlalchemy import func, select

from osiris.app import jobs
from osiris.app.config import Settings
from osiris.app.models import Delivery, Task
from osiris.github_bridge import github_events
from tests.support.servers import LiveServer

from .conftest import EMAIL_SECRET, SLACK_SECRET, TELEGRAM_SECRET, TWILIO_TOKEN

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "send_channel_message.py"
GITHUB_SECRET = "gh-secret-" + secrets.token_hex(8)
GITHUB_REPO = "acme/widgets"
SECRETS = {
    "whatsapp": ("OSIRIS_TWILIO_AUTH_TOKEN", TWILIO_TOKEN),
    "slack": ("OSIRIS_SLACK_SIGNING_SECRET", SLACK_SECRET),
    "telegram": ("OSIRIS_TELEGRAM_WEBHOOK_SECRET", TELEGRAM_SECRET),
    "email": ("OSIRIS_EMAIL_WEBHOOK_SECRET", EMAIL_SECRET),
    "github-issue": ("OSIRIS_GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
}
# --channel → (--from, the task's channel, its requester)
SENDERS = {
    "whatsapp": ("+15550002222", "whatsapp", "whatsapp:+15550002222"),
    "slack": ("T0TRIAL01:U0TRIAL01", "slack", "T0TRIAL01:U0TRIAL01"),
    "telegram": ("424242", "telegram", "telegram:424242"),
    "email": ("ann@example.com", "email", "ann@example.com"),
    "github-issue": ("octocat", "github", "github:octocat"),
}


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The channel tests' settings (every chat secret set) plus GitHub as the code host, so that an
    issue event becomes a task; GitHub itself is never called (only the github_event job is run).
    Overrides are not validated (model_copy): secrets go in as SecretStr."""
    live = LiveServer(
        settings,
        data_dir=tmp_path_factory.mktemp("send-script-data"),
        smtp={"listen_port": None},
        github={
            "token": SecretStr("token-never-used"),
            "api_url": "http://127.0.0.1:9",
            "webhook_secret": SecretStr(GITHUB_SECRET),
            "repo": {settings.repos.default_repo: GITHUB_REPO},
        },
    )
    live.start()
    yield live
    live.stop()


async def send(server: LiveServer, channel: str, text: str, secret: str, *extra: str) -> tuple[int, str, str]:
    """Run the script as a user would: its own process, the secret only in its environment."""
    variable = SECRETS[channel][0]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    environ |= {variable: secret, "OSIRIS_PUBLIC_URL": server.url}
    argv = ["--channel", channel, "--url", server.url, "--from", SENDERS[channel][0], "--text", text]
    if channel == "github-issue":
        argv += ["--repo", GITHUB_REPO]
    argv += extra
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *argv,
        env=environ,
        cwd=server.settings.data_dir,  # no .env of the repository's
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_github_events(server: LiveServer) -> None:
    """The worker's part for GitHub: run the queued github_event jobs (and only those: the answer on
    the issue would go to GitHub)."""
    runtime = server.runtime

    async def drain() -> None:
        ctx = jobs.JobContext(runtime.sessions, runtime.settings, runtime.services)
        conn = await asyncpg.connect(runtime.dsn)
        try:
            qm = QueueManager(Queries(AsyncpgDriver(conn)))
            worker = jobs.Worker(runtime.dsn, ctx)
            name = github_events.GITHUB_EVENT
            qm.entrypoint(name)(worker._wrap(name, jobs.HANDLERS[name]))
            run = qm.run(mode=QueueExecutionMode.drain, batch_size=5, dequeue_timeout=timedelta(seconds=0.5))
            await asyncio.wait_for(run, 30)
        finally:
            await conn.close()

    await server.run(drain())


async def stored(server: LiveServer) -> tuple[list[Task], int]:
    async def query() -> tuple[list[Task], int]:
        async with server.runtime.sessions() as session:
            tasks = list((await session.execute(select(Task).order_by(Task.id))).scalars())
            deliveries = await session.scalar(select(func.count()).select_from(Delivery)) or 0
            return tasks, deliveries

    return await server.run(query())


@pytest.mark.parametrize("channel", sorted(SECRETS))
async def test_the_script_creates_a_task_on_each_channel(server: LiveServer, channel: str):
    marker = secrets.token_hex(6)
    text = f"Local trial {marker}: the export button crashes\nIt fails on large files."
    code, out, err = await send(server, channel, text, SECRETS[channel][1])
    assert code == 0, out + err
    status = 202 if channel == "github-issue" else 200
    assert out.startswith(f"HTTP {status}\n"), out
    assert SECRETS[channel][1] not in out + err  # never printed
    if channel == "github-issue":
        await run_github_events(server)
    tasks, _ = await stored(server)
    [task] = tasks
    _, task_channel, requester = SENDERS[channel]
    assert (task.channel, task.requester, task.status) == (task_channel, requester, "PENDING")
    assert task.title == f"Local trial {marker}: the export button crashes"
    assert "It fails on large files." in (task.description or "")
    if channel in ("whatsapp", "email"):  # these answer at once with the confirmation
        assert f"Task #{task.id} created" in out


async def test_the_slack_slash_command_answers_with_the_task(server: LiveServer):
    code, out, err = await send(server, "slack", "Add dark mode", SLACK_SECRET, "--slack-via", "command")
    assert code == 0, out + err
    [task], deliveries = await stored(server)
    assert (task.channel, task.title, deliveries) == ("slack", "Add dark mode", 1)
    assert out.startswith("HTTP 200\n") and f"Task #{task.id} created" in out


@pytest.mark.parametrize("channel", sorted(SECRETS))
async def test_a_wrong_secret_is_refused_and_nothing_is_stored(server: LiveServer, channel: str):
    wrong = "wrong-" + secrets.token_hex(8)
    code, out, err = await send(server, channel, "This must not become a task", wrong)
    assert code == 1, out + err
    assert out.startswith("HTTP 401\n"), out
    assert wrong not in out + err
    if channel == "github-issue":
        await run_github_events(server)
    assert await stored(server) == ([], 0)


async def test_a_missing_secret_is_a_usage_error(server: LiveServer):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--channel",
        "slack",
        "--url",
        server.url,
        "--text",
        "hello",
        env=environ,
        cwd=server.settings.data_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "OSIRIS_SLACK_SIGNING_SECRET is not set" in err.decode()
    assert await stored(server) == ([], 0)
