"""The operator's CLI for people and tokens, and the first run's generated admin password."""

from __future__ import annotations

import asyncio
import logging
import stat
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from osiris.app import accounts, security
from osiris.app.config import Settings
from osiris.app.models import ApiToken
from osiris.server import announce_admin_password
from tests.support.cli import osiris_cli


async def test_set_password_reads_stdin_and_refuses_agents(database_url, runtime, factory, tmp_path):
    rita = await factory.user("reviewer")
    bot = await factory.user("agent")
    out = await osiris_cli(
        database_url, tmp_path, "user", "set-password", rita.username, stdin="a-new-password\n"
    )
    assert out.returncode == 0, out.stderr
    assert "a-new-password" not in out.stdout + out.stderr
    async with runtime.sessions() as s:
        assert await accounts.authenticate_password(s, rita.username, "a-new-password") is not None

    # never on the command line, where `ps` and shell history would show it
    out = await osiris_cli(database_url, tmp_path, "user", "set-password", rita.username, "a-new-password")
    assert out.returncode == 2 and "unrecognized arguments" in out.stderr
    out = await osiris_cli(database_url, tmp_path, "user", "set-password", rita.username, stdin="short\n")
    assert out.returncode == 1 and "invalid_input" in out.stderr
    out = await osiris_cli(
        database_url, tmp_path, "user", "set-password", bot.username, stdin="long-enough-pw\n"
    )
    assert out.returncode == 1 and "agents have no password" in out.stderr


async def test_user_and_token_lists_never_show_a_secret(database_url, factory, tmp_path):
    bot = await factory.user("agent")
    secret = await factory.token(bot)
    users = await osiris_cli(database_url, tmp_path, "user", "list")
    assert users.returncode == 0, users.stderr
    assert any(line.split()[1:3] == [bot.username, "agent"] for line in users.stdout.splitlines())

    tokens = await osiris_cli(database_url, tmp_path, "token", "list", "--user", bot.username)
    assert tokens.returncode == 0, tokens.stderr
    header, *rows = tokens.stdout.splitlines()
    assert header.split()[:4] == ["ID", "USER", "NAME", "PREFIX"]
    assert len(rows) == 1 and rows[0].split()[1] == bot.username
    assert secret[:10] in rows[0] and secret not in tokens.stdout

    # a token made to expire says when
    made = await osiris_cli(database_url, tmp_path, "token", "create", bot.username, "--expires-in-days", "7")
    assert made.returncode == 0, made.stderr
    tokens = await osiris_cli(database_url, tmp_path, "token", "list", "--user", bot.username)
    header, *rows = tokens.stdout.splitlines()
    assert "EXPIRES" in header.split()
    in_a_week = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    assert sum(in_a_week in row for row in rows) == 1, tokens.stdout


async def test_token_revoke_goes_through_the_service_and_reaches_the_server(
    database_url, factory, client, tmp_path
):
    bot = await factory.user("agent")
    secret = await factory.token(bot)
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/api/v1/tasks", headers=headers)).status_code == 200  # now cached
    async with factory.runtime.sessions() as s:
        (token, _), *_ = await accounts.all_tokens(s, username=bot.username)

    out = await osiris_cli(database_url, tmp_path, "token", "revoke", str(token.id))
    assert out.returncode == 0, out.stderr
    # the NOTIFY on commit evicted it from the running server's cache
    for _ in range(50):
        if (await client.get("/api/v1/tasks", headers=headers)).status_code == 401:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the revoked token still works")
    listed = await osiris_cli(database_url, tmp_path, "token", "list", "--user", bot.username)
    assert listed.stdout.splitlines()[1].split()[-2:] != ["-", "-"]  # revoked at a time
    missing = await osiris_cli(database_url, tmp_path, "token", "revoke", "999999999")
    assert missing.returncode == 1 and "not_found" in missing.stderr


def test_the_generated_admin_password_is_stored_privately_and_printed_pasteably(tmp_path, capsys, caplog):
    settings = Settings(
        data_dir=tmp_path / "data", db={"url": "postgresql://x@localhost/x"}, auth={"secret_key": "k" * 32}
    )
    caplog.set_level(logging.DEBUG)
    announce_admin_password(settings, "generated-pw-123")
    stored = tmp_path / "data" / "admin-password"
    assert stored.read_text() == "generated-pw-123\n"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    err = capsys.readouterr().err
    assert "export OSIRIS_ADMIN_PASSWORD=generated-pw-123\n" in err
    assert str(stored) in err
    assert "generated-pw-123" not in caplog.text  # never through the logging pipeline


async def test_cli_token_create_can_expire(database_url, runtime, tmp_path):
    done = await osiris_cli(database_url, tmp_path, "token", "create", "cli-bot", "--expires-in-days", "3")
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    async with runtime.sessions() as session:
        token = await session.scalar(
            select(ApiToken).where(ApiToken.token_hash == security.hash_token(secret))
        )
    assert timedelta(days=2, hours=23) < token.expires_at - datetime.now(UTC) <= timedelta(days=3)
    done = await osiris_cli(database_url, tmp_path, "token", "create", "cli-bot", "--expires-in-days", "0")
    assert done.returncode != 0 and "expires_in_days" in done.stderr
