"""OSIRIS as an OAuth 2.1 authorization server: metadata, agents' clients, the client credentials
grant, audience-bound scoped tokens, and what an attacker would try (wrong secret, another
audience, expired token, missing scope, revoked client, replay after revocation, a deactivated
agent, a person's client, another organization, brute force)."""

from __future__ import annotations

import base64
import logging
import subprocess
from urllib.parse import quote

import pytest
from sqlalchemy import select, text, update

from osiris.app import db, oauth, security
from osiris.app.models import OAuthAccessToken, OAuthClient
from tests.support.cli import osiris_cli

API = "http://127.0.0.1:8000/api/v1"  # the default public_url's REST API base
MCP = "http://127.0.0.1:8000/mcp"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _admin(factory, org=None):
    return await factory.member("admin", org=org)


async def _client(client, admin_headers, username, scopes=None) -> dict:
    body = {"username": username, "name": "ci bot"}
    if scopes is not None:
        body["scopes"] = scopes
    r = await client.post("/api/v1/oauth-clients", json=body, headers=admin_headers)
    assert r.status_code == 201, r.text
    return r.json()


def _basic(client_id: str, secret: str) -> dict[str, str]:
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


async def _token(client, made: dict, *, resource=API, scope=None, basic=True):
    data = {"grant_type": "client_credentials"}
    if resource is not None:
        data["resource"] = resource
    if scope is not None:
        data["scope"] = scope
    headers = dict(FORM)
    if basic:
        headers |= _basic(made["client_id"], made["client_secret"])
    else:
        data |= {"client_id": made["client_id"], "client_secret": made["client_secret"]}
    return await client.post("/oauth/token", data=data, headers=headers)


async def _access(client, made: dict, **kw) -> dict[str, str]:
    r = await _token(client, made, **kw)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture(autouse=True)
def _fresh_rate_limit(runtime):
    # every test starts with an empty login/token window (the app is shared by the whole session)
    from osiris.app.ratelimit import RateLimiter

    runtime.services.login_limiter = RateLimiter(runtime.settings.auth.login_rate_per_minute)


async def test_authorization_server_metadata(client):
    r = await client.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    meta = r.json()
    assert meta["issuer"] == "http://127.0.0.1:8000"
    assert meta["token_endpoint"] == "http://127.0.0.1:8000/oauth/token"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post"}
    assert set(meta["scopes_supported"]) == set(oauth.SCOPES)
    assert "registration_endpoint" not in meta
    # the MCP SDK's own model reads it (it requires an authorization endpoint: ours only refuses)
    from mcp.shared.auth import OAuthMetadata

    parsed = OAuthMetadata.model_validate(meta)
    assert str(parsed.token_endpoint) == meta["token_endpoint"]
    r = await client.get("/oauth/authorize", params={"response_type": "code", "client_id": "x"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_response_type"


async def test_client_secret_shown_once_and_stored_hashed(client, factory, runtime):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    assert made["client_id"].startswith("osc_") and made["client_secret"].startswith("oss_")
    assert made["scopes"] == list(oauth.DEFAULT_SCOPES)
    assert made["resources"] == [MCP, API]
    listed = (await client.get("/api/v1/oauth-clients", headers=admin)).json()
    assert [c["client_id"] for c in listed] == [made["client_id"]]
    assert made["client_secret"] not in str(listed)
    async with runtime.sessions() as s:
        row = (await s.execute(text("SELECT * FROM oauth_clients"))).mappings().one()
    assert made["client_secret"] not in str(dict(row))
    assert row["secret_hash"] == security.hash_token(made["client_secret"])


@pytest.mark.parametrize("role", ["reviewer", "admin"])
async def test_a_person_gets_no_client(client, factory, role):
    _, admin = await _admin(factory)
    person = await factory.user(role, password="long-enough-pw")
    r = await client.post("/api/v1/oauth-clients", json={"username": person.username}, headers=admin)
    assert r.status_code == 422 and "agents only" in r.json()["detail"]


async def test_only_admins_manage_clients(client, factory):
    bot, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    for headers in (agent, reviewer):
        r = await client.post("/api/v1/oauth-clients", json={"username": bot.username}, headers=headers)
        assert r.status_code == 403


async def test_unknown_scopes_are_refused_at_registration(client, factory):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    r = await client.post(
        "/api/v1/oauth-clients",
        json={"username": bot.username, "scopes": ["tasks:everything"]},
        headers=admin,
    )
    assert r.status_code == 422


@pytest.mark.parametrize("basic", [True, False], ids=["client_secret_basic", "client_secret_post"])
async def test_client_credentials_grant(client, factory, basic):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    r = await _token(client, made, basic=basic)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert body["access_token"].startswith("osa_")
    assert body["scope"].split() == list(oauth.DEFAULT_SCOPES)
    assert body["resource"] == API
    assert r.headers["cache-control"] == "no-store"
    me = await client.get("/api/v1/agent/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["name"] == bot.username


async def test_requested_scopes_are_narrowed_to_the_clients(client, factory):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username, scopes=["tasks:read", "tasks:claim"])
    r = await _token(client, made, scope="tasks:read tasks:submit")
    assert r.status_code == 200 and r.json()["scope"] == "tasks:read"
    r = await _token(client, made, scope="tasks:submit")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await _token(client, made, scope="tasks:read admin:everything")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


async def test_bad_requests_at_the_token_endpoint(client, factory):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    auth = {**FORM, **_basic(made["client_id"], made["client_secret"])}
    r = await client.post("/oauth/token", data={"grant_type": "password", "resource": API}, headers=auth)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    basic_only = _basic(made["client_id"], made["client_secret"])
    r = await client.post("/oauth/token", json={"grant_type": "client_credentials"}, headers=basic_only)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    both = {"grant_type": "client_credentials", "resource": API, "client_secret": made["client_secret"]}
    r = await client.post("/oauth/token", data=both, headers=auth)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=FORM)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


# --- what an attacker would try ---------------------------------------------------------------------


async def test_wrong_secret_and_unknown_client_are_refused_alike(client, factory):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    wrong = {**made, "client_secret": made["client_secret"][:-2] + "xx"}
    unknown = {**made, "client_id": "osc_nobody"}
    for attempt in (wrong, unknown):
        r = await _token(client, attempt)
        assert r.status_code == 401
        assert r.json() == {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        assert r.headers["www-authenticate"].startswith("Basic")
    # an access token or an API token is not a client secret
    r = await _token(client, {**made, "client_secret": "osr_" + "a" * 43})
    assert r.status_code == 401


async def test_the_token_endpoint_is_rate_limited_like_login(client, factory, runtime):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    wrong = {**made, "client_secret": "oss_guess"}
    statuses = [
        (await _token(client, wrong)).status_code for _ in range(runtime.settings.auth.login_rate_per_minute)
    ]
    assert set(statuses) == {401}
    r = await _token(client, made)  # even the right secret waits now: the window counts attempts
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"


async def test_a_token_for_another_audience_is_refused(client, factory):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    for resource in ("https://evil.example/mcp", "http://127.0.0.1:8000/", None):
        r = await _token(client, made, resource=resource)
        assert r.status_code == 400 and r.json()["error"] == "invalid_target", resource
    two = {"grant_type": "client_credentials", "resource": [API, MCP]}
    r = await client.post(
        "/oauth/token", data=two, headers={**FORM, **_basic(made["client_id"], made["client_secret"])}
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    # a token issued for the MCP endpoint is not one for the REST API (nor for git)
    mcp_token = await _access(client, made, resource=MCP)
    r = await client.get("/api/v1/tasks", headers=mcp_token)
    assert r.status_code == 401
    assert (
        await client.get("/api/v1/tasks", headers=await _access(client, made, resource=API + "/"))
    ).status_code == 200


async def test_an_expired_token_is_refused(client, factory, runtime):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    token = await _access(client, made)
    async with db.transaction(runtime.sessions) as s:
        await s.execute(update(OAuthAccessToken).values(expires_at=text("now() - interval '1 second'")))
    r = await client.get("/api/v1/tasks", headers=token)
    assert r.status_code == 401


async def test_a_cached_token_is_refused_once_it_expires(client, factory, runtime):
    from datetime import UTC, datetime, timedelta

    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    token = await _access(client, made)
    assert (await client.get("/api/v1/tasks", headers=token)).status_code == 200  # now cached
    key = security.hash_token(token["Authorization"].removeprefix("Bearer "))
    actor = runtime.services.token_cache.get(key)
    assert actor is not None and actor.scopes is not None
    runtime.services.token_cache.put(key, actor, datetime.now(UTC) - timedelta(seconds=1))
    async with db.transaction(runtime.sessions) as s:
        await s.execute(update(OAuthAccessToken).values(expires_at=text("now() - interval '1 second'")))
    assert (await client.get("/api/v1/tasks", headers=token)).status_code == 401


async def test_missing_scope_is_403_with_a_typed_error(client, factory):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username, scopes=["tasks:read"])
    token = await _access(client, made)
    assert (await client.get("/api/v1/tasks/pending", headers=token)).status_code == 200
    r = await client.post("/api/v1/tasks/claim-next", headers=token)
    assert r.status_code == 403
    problem = r.json()
    assert problem["code"] == "insufficient_scope" and "tasks:claim" in problem["detail"]
    # routes no agent scope names refuse every OAuth token, whatever its scopes
    r = await client.get("/api/v1/users", headers=token)
    assert r.status_code == 403


async def test_a_token_without_tasks_submit_cannot_submit(client, factory, runtime):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username, scopes=["tasks:read", "tasks:claim", "tasks:create"])
    token = await _access(client, made)
    r = await client.post("/api/v1/tasks", json={"title": "t", "description": "d"}, headers=token)
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=token)).status_code == 200
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": "notes", "kind": "text"}, headers=token
    )
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"
    # an osr_ API token of the same agent keeps full agent rights
    osr = {"Authorization": f"Bearer {await factory.token(bot)}"}
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": "notes", "kind": "text"}, headers=osr
    )
    assert r.status_code == 201, r.text


async def test_a_revoked_clients_tokens_stop_at_once_and_cannot_be_replayed(client, factory, runtime):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    token = await _access(client, made)
    assert (await client.get("/api/v1/tasks", headers=token)).status_code == 200  # cached now
    r = await client.delete(f"/api/v1/oauth-clients/{made['client_id']}", headers=admin)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    for _ in range(3):  # the very next request, and every replay of it
        assert (await client.get("/api/v1/tasks", headers=token)).status_code == 401
    r = await _token(client, made)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    async with runtime.sessions() as s:
        assert (await s.scalars(select(OAuthAccessToken))).all() == []


async def test_a_deactivated_agents_tokens_and_client_stop(client, factory, runtime):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    token = await _access(client, made)
    assert (await client.get("/api/v1/tasks", headers=token)).status_code == 200
    r = await client.patch(f"/api/v1/users/{bot.id}", json={"is_active": False}, headers=admin)
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/tasks", headers=token)).status_code == 401
    r = await _token(client, made)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_an_agent_made_a_reviewer_loses_its_client(client, factory):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    token = await _access(client, made)
    assert (await client.get("/api/v1/tasks", headers=token)).status_code == 200
    r = await client.patch(f"/api/v1/users/{bot.id}", json={"role": "reviewer"}, headers=admin)
    assert r.status_code == 200, r.text
    assert (await client.get("/api/v1/tasks", headers=token)).status_code == 401
    assert (await _token(client, made)).status_code == 401


async def test_tokens_are_bound_to_the_agents_organization(client, factory):
    other = await factory.org("elsewhere")
    _, their_admin = await _admin(factory, org=other)
    _, our_admin = await _admin(factory)
    _, our_reviewer = await factory.member("reviewer")
    bot = await factory.user("agent")
    r = await client.post("/api/v1/tasks", json={"title": "ours", "description": "d"}, headers=our_reviewer)
    ours = r.json()["id"]
    # their admin can neither give our agent a client nor see or revoke ours
    r = await client.post("/api/v1/oauth-clients", json={"username": bot.username}, headers=their_admin)
    assert r.status_code == 404
    made = await _client(client, our_admin, bot.username)
    assert (await client.get("/api/v1/oauth-clients", headers=their_admin)).json() == []
    r = await client.delete(f"/api/v1/oauth-clients/{made['client_id']}", headers=their_admin)
    assert r.status_code == 404
    # an agent of theirs with a client of its own sees nothing of ours
    their_bot = await factory.user("agent", org=other)
    theirs = await _client(client, their_admin, their_bot.username)
    token = await _access(client, theirs)
    r = await client.get(f"/api/v1/tasks/{ours}", headers=token)
    assert r.status_code == 404
    assert all(t["id"] != ours for t in (await client.get("/api/v1/tasks/pending", headers=token)).json())
    # a token row moved to another organization (a forged grant) resolves to nothing
    token2 = await _access(client, made)
    async with db.transaction(factory.runtime.sessions) as s:
        h = security.hash_token(token2["Authorization"].removeprefix("Bearer "))
        await s.execute(
            update(OAuthAccessToken).where(OAuthAccessToken.token_hash == h).values(org_id=other.id)
        )
    assert (await client.get("/api/v1/tasks", headers=token2)).status_code == 401


async def test_a_client_of_a_deactivated_agent_cannot_be_made(client, factory, runtime):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    r = await client.patch(f"/api/v1/users/{bot.id}", json={"is_active": False}, headers=admin)
    assert r.status_code == 200
    r = await client.post("/api/v1/oauth-clients", json={"username": bot.username}, headers=admin)
    assert r.status_code == 422 and "deactivated" in r.json()["detail"]


async def test_secrets_never_reach_the_logs(client, factory, caplog):
    caplog.set_level(logging.DEBUG)
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    made = await _client(client, admin, bot.username)
    good = (await _token(client, made)).json()["access_token"]
    await _token(client, {**made, "client_secret": made["client_secret"] + "x"})
    await _token(client, made, basic=False)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (made["client_secret"], good, made["client_secret"] + "x"):
        assert secret not in logged


async def test_git_over_http_needs_repos_read(client, factory, runtime):
    _, admin = await _admin(factory)
    bot = await factory.user("agent")
    reader = await _client(client, admin, bot.username, scopes=["tasks:read"])
    token = await _access(client, reader)
    r = await client.get("/git/default.git/info/refs", params={"service": "git-upload-pack"}, headers=token)
    assert r.status_code in (403, 404), r.text  # 404 when no local repositories are served here
    if r.status_code == 403:
        assert "repos:read" in r.text


async def test_cli_creates_lists_and_revokes_clients(database_url, factory, runtime, tmp_path):
    bot = await factory.user("agent")
    person = await factory.user("reviewer", password="long-enough-pw")

    async def osiris(*args: str) -> subprocess.CompletedProcess:
        return await osiris_cli(database_url, tmp_path, *args)

    out = await osiris(
        "client", "create", bot.username, "--scope", "tasks:read tasks:claim", "--scope", "tasks:submit"
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split("=", 1) for line in out.stdout.split())
    client_id, secret = lines["OSIRIS_CLIENT_ID"], lines["OSIRIS_CLIENT_SECRET"]
    assert secret not in out.stderr and "tasks:read tasks:claim tasks:submit" in out.stderr
    async with runtime.sessions() as s:
        row = await s.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    assert row.secret_hash == security.hash_token(secret) and row.scopes == [
        "tasks:read",
        "tasks:claim",
        "tasks:submit",
    ]
    out = await osiris("client", "create", person.username)
    assert out.returncode == 1 and "agents only" in out.stderr
    out = await osiris("client", "create", bot.username, "--scope", "root")
    assert out.returncode == 1 and "unknown scope" in out.stderr
    out = await osiris("client", "list")
    assert out.returncode == 0 and client_id in out.stdout and secret not in out.stdout
    out = await osiris("client", "revoke", client_id)
    assert out.returncode == 0, out.stderr
    async with runtime.sessions() as s:
        row = await s.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    assert row.revoked_at is not None
