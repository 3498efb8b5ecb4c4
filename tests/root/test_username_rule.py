"""One rule for user names (osiris.app.schemas.USERNAME): the CLI (`osiris user create`), REST
(`POST /api/v1/users`) and the portal's admin form take and refuse exactly the same names, hostile ones
included, and a refused name leaves no row behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, select

from osiris.app import schemas
from osiris.app.errors import InvalidInput
from osiris.app.models import User
from tests.support.portal_helpers import PASSWORD, form_token, sign_in

ACCEPTED = [
    "alice",
    "a",
    "9lives",
    "ann.lee@example.com",
    "alice+bot@example.com",
    "ci_bot-2",
    "Z" * 100,
]
REFUSED = [
    "",
    " ",
    " alice",  # whitespace is not trimmed into another name
    "alice ",
    "al ice",
    "alice\t",
    "-leading-dash",  # an option to a command
    "--role=admin",
    ".hidden",
    "_under",
    "@mention",
    "+plus",
    "a/b",  # path separators
    "..",
    "../etc/passwd",
    "a\\b",
    "Z" * 101,  # very long
    "x" * 5000,
    "rita\nadmin",  # control characters
    "rita\radmin",
    "nul\x00byte",
    "bell\x07",
    "esc\x1b[31m",
    "del\x7f",
    "\u0430dmin",  # Cyrillic а: looks like "admin"
    "\uff41dmin",  # fullwidth ａ
    "admin\u200b",  # zero-width space
    "admi\u0301n",  # combining accent
    "zoë",
    "ａｄｍｉｎ",
    "x;rm -rf",
    "$(id)",
    "<script>",
    "a:b",
    "a,b",
    "a*",
]


def test_the_rule_itself():
    for name in ACCEPTED:
        assert schemas.valid_username(name) == name
    for name in REFUSED:
        with pytest.raises(InvalidInput):
            schemas.valid_username(name)


async def _rest(client, admin: dict[str, str], name: str) -> bool:
    r = await client.post("/api/v1/users", json={"username": name, "role": "agent"}, headers=admin)
    assert r.status_code in (201, 422), (name, r.status_code, r.text)
    assert r.status_code == 201 or r.headers["content-type"].startswith("application/problem+json")
    return r.status_code == 201


async def _portal(portal: httpx.AsyncClient, token: str, name: str) -> bool:
    r = await portal.post("/admin/users", data={"csrf_token": token, "username": name, "role": "agent"})
    assert r.status_code in (303, 422), (name, r.status_code, r.text[:300])
    return r.status_code == 303


CLI_SCRIPT = """
import json, sys
from osiris.cli import main
results = []
for name in json.loads(sys.stdin.read()):
    try:
        code = main(["user", "create", "--role", "agent", "--", name])
    except SystemExit as exc:
        code = exc.code
    results.append(code)
print(json.dumps(results))
"""


async def _cli(database_url: str, tmp_path: Path, names: list[str]) -> list[bool]:
    """`osiris user create --role agent -- NAME` for each name, as the operator types it (after `--`,
    so a leading dash reaches the rule, not argparse), in one process to keep it quick."""
    env = os.environ | {
        "DATABASE_URL": database_url,
        "OSIRIS_SECRET_KEY": "cli-test-secret",
        "OSIRIS_DATA_DIR": str(tmp_path / "cli-data"),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CLI_SCRIPT],
        env=env,
        input=json.dumps(names),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(codes) <= {0, 1}, (codes, done.stderr[-3000:])
    return [c == 0 for c in codes]


async def _forget(runtime, names: list[str]) -> None:
    async with runtime.sessions() as s, s.begin():
        await s.execute(delete(User).where(User.username.in_(names)))


async def test_cli_rest_and_portal_take_and_refuse_the_same_names(
    client, app, factory, runtime, database_url, tmp_path
):
    names = ACCEPTED + REFUSED
    expected = [True] * len(ACCEPTED) + [False] * len(REFUSED)
    _, admin = await factory.member("admin")
    admin_user = await factory.user("admin", password=PASSWORD)

    rest = [await _rest(client, admin, n) for n in names]
    assert rest == expected, [n for n, ok, want in zip(names, rest, expected, strict=True) if ok != want]
    await _forget(runtime, ACCEPTED)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as p:
        assert (await sign_in(p, admin_user.username)).status_code == 303
        token = await form_token(p, "/admin/users")
        portal = [await _portal(p, token, n) for n in names]
    assert portal == expected, [n for n, ok, want in zip(names, portal, expected, strict=True) if ok != want]
    await _forget(runtime, ACCEPTED)

    cli = await _cli(database_url, tmp_path, names)
    assert cli == expected, [n for n, ok, want in zip(names, cli, expected, strict=True) if ok != want]

    # Every accepted name was stored as written; no refused one.
    async with runtime.sessions() as s:
        stored = set((await s.execute(select(User.username))).scalars())
    assert set(ACCEPTED) <= stored and not stored & set(REFUSED)
