"""Administering users over REST: role, deactivation, password reset, token expiry, priority.

Each is a service in osiris/app/accounts.py (or routing.py), checked there for the role and the
organization; these drive them through the API as a client would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from osiris.app import accounts, db
from osiris.app.errors import Forbidden
from osiris.app.models import ApiToken, User

PASSWORD = "correct horse battery"
MCP_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_admin_changes_a_role_and_the_token_acts_with_the_new_one_at_once(client, factory):
    _, admin = await factory.member("admin")
    reviewer, as_reviewer = await factory.member("reviewer")
    assert (await client.get("/api/v1/users", headers=as_reviewer)).status_code == 403
    r = await client.patch(f"/api/v1/users/{reviewer.id}", json={"role": "admin"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin"
    # the token was cached with the reviewer role a moment ago; the change evicted it
    assert (await client.get("/api/v1/users", headers=as_reviewer)).status_code == 200


async def test_deactivating_revokes_the_users_tokens_and_reactivating_does_not_bring_them_back(
    client, factory
):
    _, admin = await factory.member("admin")
    agent, as_agent = await factory.member("agent")
    assert (await client.get("/api/v1/tasks", headers=as_agent)).status_code == 200  # now cached
    r = await client.patch(f"/api/v1/users/{agent.id}", json={"is_active": False}, headers=admin)
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert (await client.get("/api/v1/tasks", headers=as_agent)).status_code == 401
    r = await client.patch(f"/api/v1/users/{agent.id}", json={"is_active": True}, headers=admin)
    assert r.json()["is_active"] is True
    assert (await client.get("/api/v1/tasks", headers=as_agent)).status_code == 401  # revoked for good
    tokens = (await client.get("/api/v1/tokens", headers=admin)).json()
    assert [t["revoked_at"] is not None for t in tokens if t["user_id"] == agent.id] == [True]


async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(client, factory):
    org = await factory.org("solo")
    admin_user, admin = await factory.member("admin", org=org)
    for body in ({"is_active": False}, {"role": "reviewer"}):
        r = await client.patch(f"/api/v1/users/{admin_user.id}", json=body, headers=admin)
        assert r.status_code == 409, r.text
        assert "last active admin" in r.json()["detail"]
    other_admin, _ = await factory.member("admin", org=org)
    r = await client.patch(f"/api/v1/users/{admin_user.id}", json={"role": "reviewer"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "reviewer"
    # and now the other one is the last
    second_user, second = await factory.member("admin", org=org)
    r = await client.patch(f"/api/v1/users/{other_admin.id}", json={"is_active": False}, headers=second)
    assert r.status_code == 200
    r = await client.patch(f"/api/v1/users/{second_user.id}", json={"is_active": False}, headers=second)
    assert r.status_code == 409 and "yourself" in r.json()["detail"]


async def test_another_organizations_user_is_not_found(client, factory):
    _, admin = await factory.member("admin")
    stranger, _ = await factory.member("agent", org=await factory.org("elsewhere"))
    r = await client.patch(f"/api/v1/users/{stranger.id}", json={"is_active": False}, headers=admin)
    assert r.status_code == 404
    r = await client.post(f"/api/v1/users/{stranger.id}/password", json={}, headers=admin)
    assert r.status_code == 404


async def test_password_reset_generated_or_chosen(client, factory):
    _, admin = await factory.member("admin")
    _, as_agent = await factory.member("agent")
    rita = await factory.user("reviewer", name="rita", password=PASSWORD)
    r = await client.post(f"/api/v1/users/{rita.id}/password", json={}, headers=admin)
    assert r.status_code == 200, r.text
    generated = r.json()["password"]
    assert len(generated) >= 12
    login = {"username": "rita", "password": PASSWORD}
    assert (await client.post("/api/v1/auth/token", data=login)).status_code == 401
    login["password"] = generated
    assert (await client.post("/api/v1/auth/token", data=login)).status_code == 200
    r = await client.post(
        f"/api/v1/users/{rita.id}/password", json={"password": "chosen-one-123"}, headers=admin
    )
    assert r.json()["password"] is None
    login["password"] = "chosen-one-123"
    assert (await client.post("/api/v1/auth/token", data=login)).status_code == 200
    agent = await factory.user("agent")
    r = await client.post(f"/api/v1/users/{agent.id}/password", json={}, headers=admin)
    assert r.status_code == 422
    r = await client.post(f"/api/v1/users/{rita.id}/password", json={}, headers=as_agent)
    assert r.status_code == 403


async def test_a_token_can_expire_and_is_refused_by_rest_mcp_and_git(client, factory, runtime):
    _, admin = await factory.member("admin")
    agent = await factory.user("agent", name="expiring-bot")
    r = await client.post(
        "/api/v1/tokens",
        json={"name": "ci", "username": "expiring-bot", "expires_in_days": 30},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    expires = datetime.fromisoformat(r.json()["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    r = await client.post(
        "/api/v1/tokens", json={"name": "x", "username": "expiring-bot", "expires_in_days": 0}, headers=admin
    )
    assert r.status_code == 422

    # a token that runs out while cached is refused the moment it expires
    async with db.transaction(runtime.sessions) as session:
        soon = datetime.now(UTC) + timedelta(seconds=1.5)
        secret = (await accounts.create_token(session, user=agent, name="soon", expires_at=soon)).secret
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/api/v1/tasks", headers=headers)).status_code == 200
    await asyncio.sleep(2)
    assert (await client.get("/api/v1/tasks", headers=headers)).status_code == 401
    r = await client.post("/mcp", json=MCP_LIST, headers={**headers, **MCP_HEADERS})
    assert r.status_code == 401
    r = await client.get("/git/default.git/info/refs", params={"service": "git-upload-pack"}, headers=headers)
    assert r.status_code == 401

    # one already expired in the database (never cached)
    async with db.transaction(runtime.sessions) as session:
        old = await accounts.create_token(session, user=agent, name="old")
        await session.execute(
            update(ApiToken)
            .where(ApiToken.id == old.token.id)
            .values(expires_at=datetime.now(UTC) - timedelta(1))
        )
    stale = {"Authorization": f"Bearer {old.secret}"}
    assert (await client.get("/api/v1/tasks", headers=stale)).status_code == 401
    assert (await client.post("/mcp", json=MCP_LIST, headers={**stale, **MCP_HEADERS})).status_code == 401


async def test_priority_is_set_by_a_supervisor_with_an_event(client, factory):
    _, reviewer = await factory.member("reviewer")
    _, as_agent = await factory.member("agent")
    task = (await client.post("/api/v1/tasks", json={"title": "t"}, headers=reviewer)).json()
    assert task["priority"] == "normal"
    r = await client.put(
        f"/api/v1/tasks/{task['id']}/priority", json={"priority": "urgent"}, headers=reviewer
    )
    assert r.status_code == 200 and r.json()["priority"] == "urgent"
    r = await client.put(f"/api/v1/tasks/{task['id']}/priority", json={"priority": "low"}, headers=as_agent)
    assert r.status_code == 403
    events = (await client.get(f"/api/v1/tasks/{task['id']}/events", headers=reviewer)).json()
    assert [e["data"] for e in events if e["kind"] == "priority_set"] == [{"from": 1, "to": 3}]


async def test_services_refuse_non_admins(factory, runtime):
    reviewer = await factory.user("reviewer")
    agent = await factory.user("agent")
    async with db.transaction(runtime.sessions) as session:
        with pytest.raises(Forbidden):
            await accounts.update_user(session, factory.actor(reviewer), agent.id, is_active=False)
        with pytest.raises(Forbidden):
            await accounts.reset_password(session, factory.actor(agent), reviewer.id)
        assert (await session.get(User, agent.id)).is_active


@pytest.mark.parametrize(
    "name",
    [
        "bob smith",
        "",
        " ",
        "a" * 101,
        "rita\nadmin",
        "<script>",
        "-leading-dash",
        "zoë",
        "tab\tname",
        "x;rm -rf",
    ],
)
async def test_a_user_name_is_one_word_of_plain_characters(client, factory, name):
    _, admin = await factory.member("admin")
    body = {"username": name, "role": "reviewer", "password": PASSWORD}
    r = await client.post("/api/v1/users", json=body, headers=admin)
    assert r.status_code == 422, r.text
    async with factory.runtime.sessions() as s:
        assert await accounts.find_user(s, name.strip()) is None  # nothing written


@pytest.mark.parametrize("login", ["two words", "a" * 40, "-dash", "under_score", "x\ny", "<b>"])
async def test_a_github_login_follows_githubs_rule(client, factory, login):
    _, admin = await factory.member("admin")
    body = {"username": "ghost-1", "role": "agent", "github_login": login}
    r = await client.post("/api/v1/users", json=body, headers=admin)
    assert r.status_code == 422, r.text


async def test_plain_names_and_logins_are_taken_as_written(client, factory):
    _, admin = await factory.member("admin")
    for name, login in (("ann.lee@example.com", "@ann-lee"), ("ci_bot-2", "our-app[bot]")):
        body = {"username": name, "role": "agent", "github_login": login}
        r = await client.post("/api/v1/users", json=body, headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["username"] == name and r.json()["github_login"] == login.lstrip("@")
