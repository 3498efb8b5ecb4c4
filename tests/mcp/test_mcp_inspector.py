"""The MCP Inspector CLI (npm @modelcontextprotocol/inspector, pinned in tools/inspector) against a
running OSIRIS with an OAuth client credentials token (issue 16): the token from POST /oauth/token
lists and calls the tools; a token for the REST API, without the scope, revoked or expired is refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, update

from osiris.app import db, security
from osiris.app.models import OAuthAccessToken
from tests.support.servers import MCP_ACCEPT, MCP_INITIALIZE

from .mcp_helpers import new_task

ROOT = Path(__file__).parents[2]
INSPECTOR_DIR = ROOT / "tools" / "inspector"
INSPECTOR_BIN = INSPECTOR_DIR / "node_modules" / ".bin" / "mcp-inspector"


def _inspector() -> Path:
    """The pinned Inspector's executable, or a skip naming what to install; under CI (.ci/run runs
    `npm ci --prefix tools/inspector`, CI=true) a missing node or Inspector fails, never skips."""
    missing = None
    if shutil.which("node") is None:
        missing = "node is not installed (the MCP Inspector CLI is an npm package)"
    elif not INSPECTOR_BIN.exists():
        missing = "the MCP Inspector is not installed: npm ci --prefix tools/inspector"
    if missing is None:
        return INSPECTOR_BIN
    if os.environ.get("CI"):
        pytest.fail(f"{missing} (CI=true: .ci/run installs it)")
    pytest.skip(missing)


@dataclass
class Run:
    code: int
    out: str
    err: str


async def inspector(url: str, token: str, home: Path, *args: str) -> Run:
    exe = _inspector()
    env = {
        **os.environ,
        "HOME": str(home),  # its catalog and OAuth store (~/.mcp-inspector) stay in the test's folder
        "MCP_CATALOG_PATH": str(home / "mcp.json"),
        "MCP_CLIENT_CONFIG_PATH": str(home / "client.json"),
        "NO_COLOR": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        "--cli",
        f"{url}/mcp",
        "--transport",
        "http",
        "--header",
        f"Authorization: Bearer {token}",
        # never the interactive (browser) login, which OSIRIS does not offer: a refusal ends the run
        "--stored-auth-only",
        "--format",
        "json",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(home),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Run(proc.returncode or 0, out.decode(), err.decode())


def assert_auth_refused(run: Run) -> None:
    """The Inspector's exit code 3 (`auth_required`) with OSIRIS's 401 `invalid_token`."""
    assert run.code == 3, run
    error = json.loads(run.err.strip().splitlines()[-1])["error"]
    assert error["code"] == "auth_required", run
    assert "invalid_token" in error["message"], run
    assert run.out == "", run


async def _client(rest: httpx.AsyncClient, factory, scopes: list[str] | None = None):
    _, admin = await factory.member("admin")
    bot, _ = await factory.member("agent")
    body = {"username": bot.username, **({"scopes": scopes} if scopes is not None else {})}
    r = await rest.post("/api/v1/oauth-clients", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return admin, r.json()


async def _token(rest: httpx.AsyncClient, made: dict, resource: str) -> str:
    r = await rest.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": resource},
        auth=(made["client_id"], made["client_secret"]),
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


async def test_the_inspector_lists_and_calls_the_tools_with_a_client_credentials_token(
    rest, live_server, factory, tmp_path
):
    _admin, made = await _client(rest, factory)
    _, reviewer = await factory.member("reviewer")
    task_id = await new_task(rest, reviewer)
    token = await _token(rest, made, f"{live_server.url}/mcp")
    assert token.startswith("osa_")

    listed = await inspector(live_server.url, token, tmp_path, "--method", "tools/list")
    assert listed.code == 0, listed
    names = {tool["name"] for tool in json.loads(listed.out)["result"]["tools"]}
    assert {"read_pending_tasks", "claim_task", "submit_artifact", "read_feedback"} <= names

    called = await inspector(
        live_server.url, token, tmp_path, "--method", "tools/call", "--tool-name", "read_pending_tasks"
    )
    assert called.code == 0, called
    result = json.loads(called.out)["result"]
    assert result["isError"] is False
    assert task_id in [t["id"] for t in result["structuredContent"]["tasks"]]


async def test_a_token_for_the_rest_api_is_refused_on_mcp(rest, live_server, factory, tmp_path):
    _admin, made = await _client(rest, factory)
    token = await _token(rest, made, f"{live_server.url}/api/v1")
    run = await inspector(live_server.url, token, tmp_path, "--method", "tools/list")
    assert_auth_refused(run)


async def test_a_token_without_tasks_read_cannot_read_the_queue(rest, live_server, factory, tmp_path):
    _admin, made = await _client(rest, factory, scopes=["tasks:claim", "tasks:submit"])
    token = await _token(rest, made, f"{live_server.url}/mcp")
    # the token is valid for /mcp: listing the tools works, the tool that needs tasks:read does not
    listed = await inspector(live_server.url, token, tmp_path, "--method", "tools/list")
    assert listed.code == 0, listed
    run = await inspector(
        live_server.url, token, tmp_path, "--method", "tools/call", "--tool-name", "read_pending_tasks"
    )
    assert run.code != 0 and "structuredContent" not in run.out, run
    # OSIRIS answers a tool error `insufficient_scope` (structured content {"error": {...}}, isError).
    # The Inspector reports that as a tool error (exit 5) when it skips output-schema validation of
    # error results, as the MCP SDKs do; Inspector 2.12.0's core still validates them against the
    # tool's outputSchema and exits 1 with the schema message (cf. modelcontextprotocol/inspector#1045).
    if run.code == 5:
        assert "insufficient_scope" in run.out + run.err, run
    else:
        assert run.code == 1 and "must have required property 'tasks'" in run.err, run


async def test_an_expired_token_is_refused(rest, live_server, factory, runtime, tmp_path):
    _admin, made = await _client(rest, factory)
    token = await _token(rest, made, f"{live_server.url}/mcp")
    async with db.transaction(runtime.sessions) as session:  # before its first use: never cached
        await session.execute(
            update(OAuthAccessToken)
            .where(OAuthAccessToken.token_hash == security.hash_token(token))
            .values(expires_at=func.now() - timedelta(seconds=1))
        )
    run = await inspector(live_server.url, token, tmp_path, "--method", "tools/list")
    assert_auth_refused(run)


async def test_a_revoked_clients_token_is_refused(rest, live_server, factory, tmp_path):
    admin, made = await _client(rest, factory)
    token = await _token(rest, made, f"{live_server.url}/mcp")
    assert (await inspector(live_server.url, token, tmp_path, "--method", "tools/list")).code == 0
    r = await rest.delete(f"/api/v1/oauth-clients/{made['client_id']}", headers=admin)
    assert r.status_code == 200
    # the live server evicts its cached copy when the NOTIFY arrives: wait for that, then ask again
    for _ in range(50):
        r = await rest.post(
            "/mcp", json=MCP_INITIALIZE, headers={**MCP_ACCEPT, "Authorization": f"Bearer {token}"}
        )
        if r.status_code == 401:
            break
        await asyncio.sleep(0.1)
    run = await inspector(live_server.url, token, tmp_path, "--method", "tools/list")
    assert_auth_refused(run)
