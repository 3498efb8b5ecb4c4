"""Starting from the portal: the New task form, routing a task from its page, the empty board that
teaches, the Integrations page, and administering users and tokens."""

from __future__ import annotations

import asyncio
import html
import re

import httpx
import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed

from osiris.app import db, integrations
from osiris.app.models import ApiToken, Repository, Task, TaskEvent, User
from tests.support.portal_helpers import (
    PASSWORD,
    csrf_of,
    form_token,
    open_socket,
    session_cookie,
    sign_in,
    until_ready,
)

pytestmark = pytest.mark.asyncio
SECRETS = {  # setting path -> value
    "github.token": "ghp_TOPSECRETTOKENVALUE123",
    "github.webhook_secret": "whsec-TOPSECRET-github",
    "slack.signing_secret": "slack-TOPSECRET-signing",
    "telegram.bot_token": "123456:TOPSECRET-telegram",
    "email.webhook_secret": "email-TOPSECRET-hook",
    "twilio.auth_token": "twilio-TOPSECRET-auth",
}


async def _repo(runtime, org_id: int, name: str) -> None:
    async with db.transaction(runtime.sessions) as session:
        session.add(Repository(org_id=org_id, name=name))


async def _task(runtime, task_id: int) -> Task:
    async with runtime.sessions() as session:
        return await session.get(Task, task_id)


# --- the New task form ---------------------------------------------------------------------------


async def test_new_task_form_creates_a_task_in_a_repository_of_the_organization(signed_in, factory, runtime):
    client, reviewer = await signed_in("reviewer")
    await _repo(runtime, reviewer.org_id, "web")
    other = await factory.org("elsewhere")
    await _repo(runtime, other.id, "theirs")
    page = await client.get("/tasks/new")
    assert page.status_code == 200
    assert '<option value="web">web</option>' in page.text and "theirs" not in page.text
    r = await client.post(
        "/tasks",
        data={
            "csrf_token": csrf_of(page.text),
            "title": "Fix <b>login</b>",
            "description": "it loops",
            "repo": "web",
            "priority": "urgent",
            "skills": "Python, sql",
        },
    )
    assert r.status_code == 303, r.text
    task_id = int(r.headers["location"].rsplit("/", 1)[1])
    task = await _task(runtime, task_id)
    assert (task.title, task.repo, task.priority, task.skills, task.channel, task.org_id) == (
        "Fix <b>login</b>",
        "web",
        3,
        ["python", "sql"],
        "portal",
        reviewer.org_id,
    )
    shown = await client.get(f"/tasks/{task_id}")
    assert "Fix &lt;b&gt;login&lt;/b&gt;" in shown.text and "<b>login</b>" not in shown.text

    r = await client.post(
        "/tasks",
        data={"csrf_token": csrf_of(page.text), "title": "steal", "repo": "theirs", "priority": "normal"},
    )
    assert r.status_code == 422
    assert "no repository &#39;theirs&#39; in your organization" in r.text
    async with runtime.sessions() as session:
        assert await session.scalar(select(Task.id).where(Task.title == "steal")) is None


async def test_forms_without_csrf_are_refused(signed_in, factory, runtime):
    client, admin = await signed_in("admin")
    agent = await factory.user("agent")
    assert (await client.post("/tasks", data={"title": "no token"})).status_code == 403
    assert (await client.post(f"/admin/users/{agent.id}/active", data={"active": "false"})).status_code == 403
    async with runtime.sessions() as session:
        assert await session.scalar(select(Task.id).limit(1)) is None
        assert (await session.get(User, agent.id)).is_active


async def test_a_reviewer_edits_priority_reservation_and_skills_from_the_task_page(
    signed_in, factory, runtime
):
    client, reviewer = await signed_in("reviewer")
    agent = await factory.user("agent", name="bot-one")
    token = await form_token(client, "/tasks/new")
    r = await client.post("/tasks", data={"csrf_token": token, "title": "route me", "priority": "low"})
    task_id = int(r.headers["location"].rsplit("/", 1)[1])
    page = await client.get(f"/tasks/{task_id}")
    assert f'action="/tasks/{task_id}/priority"' in page.text and '<option value="' in page.text
    assert f'<option value="{agent.id}" >bot-one</option>' in page.text or "bot-one" in page.text
    token = csrf_of(page.text)
    assert (
        await client.post(f"/tasks/{task_id}/priority", data={"csrf_token": token, "priority": "high"})
    ).status_code == 303
    assert (
        await client.post(f"/tasks/{task_id}/assignee", data={"csrf_token": token, "agent_id": str(agent.id)})
    ).status_code == 303
    assert (
        await client.post(f"/tasks/{task_id}/skills", data={"csrf_token": token, "skills": "go rust"})
    ).status_code == 303
    task = await _task(runtime, task_id)
    assert (task.priority, task.reserved_for_id, task.skills) == (2, agent.id, ["go", "rust"])
    async with runtime.sessions() as session:
        kinds = (await session.scalars(select(TaskEvent.kind).where(TaskEvent.task_id == task_id))).all()
    assert {"priority_set", "reserved", "skills_set"} <= set(kinds)
    page = await client.get(f"/tasks/{task_id}")
    assert "reserved for bot-one" in page.text
    r = await client.post(f"/tasks/{task_id}/priority", data={"csrf_token": token, "priority": "asap"})
    assert r.status_code == 422
    # a reviewer of another organization does not find it
    stranger = await factory.user("reviewer", org=await factory.org("other"), password=PASSWORD)
    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as other:
        await sign_in(other, stranger.username)
        t = await form_token(other, "/")
        r = await other.post(f"/tasks/{task_id}/priority", data={"csrf_token": t, "priority": "low"})
        assert r.status_code == 404
    assert (await _task(runtime, task_id)).priority == 2


# --- the empty board, the header ------------------------------------------------------------------


async def test_an_empty_board_teaches_how_to_start_and_the_header_names_the_organization(signed_in, runtime):
    client, admin = await signed_in("admin")
    page = await client.get("/")
    text = html.unescape(page.text)
    url = runtime.settings.server.public_url.rstrip("/")
    assert (
        f'claude mcp add --transport http osiris {url}/mcp --header "Authorization: Bearer <token>"' in text
    )
    assert (
        f'{{"mcpServers": {{"osiris": {{"url": "{url}/mcp", "headers": {{"Authorization": "Bearer <token>"}}}}}}}}'
        in text
    )
    assert 'href="/tasks/new"' in page.text and "Create agent token" in page.text
    assert f"{url}/api/v1/tasks" in text
    assert re.search(r'<span class="org-name"[^>]*>Default organization</span>', page.text)
    token = csrf_of(page.text)
    await client.post("/tasks", data={"csrf_token": token, "title": "first"})
    assert "claude mcp add" not in (await client.get("/")).text


async def test_an_empty_repositories_page_explains_how_to_add_one(signed_in):
    client, _ = await signed_in("admin")
    page = await client.get("/admin/repositories")
    assert "No repositories registered yet. Add one below" in page.text
    assert "POST /api/v1/repositories" in page.text


# --- integrations ----------------------------------------------------------------------------------


async def test_integrations_page_names_what_is_missing_and_never_a_secret(signed_in, runtime, monkeypatch):
    client, _ = await signed_in("admin")
    configured = runtime.settings.model_copy()
    for path, value in SECRETS.items():
        group, name = path.split(".")
        setattr(getattr(configured, group), name, _secret(value))
    monkeypatch.setattr(runtime, "settings", configured)
    page = await client.get("/admin/integrations")
    assert page.status_code == 200
    for value in SECRETS.values():
        assert value not in page.text
    row = _row(page.text, "github_token")
    assert 'data-on="true"' in row and "OSIRIS_GITHUB_REPO" in row and "/api/v1/webhooks/github" in row
    assert "OSIRIS_TWILIO_ACCOUNT_SID" in _row(page.text, "whatsapp")
    assert "OSIRIS_SLACK_BOT_TOKEN" in _row(page.text, "slack")
    assert 'data-on="false"' in _row(page.text, "local")
    line = integrations.summary(configured)
    assert (
        "github_token (needs OSIRIS_GITHUB_REPO)" in line
        and "telegram (needs OSIRIS_TELEGRAM_WEBHOOK_SECRET)" in line
    )
    assert not any(v in line for v in SECRETS.values())


def _secret(value: str):
    from pydantic import SecretStr

    return SecretStr(value)


def _row(page: str, key: str) -> str:
    match = re.search(rf'<tr class="integration integration-{key}".*?</tr>', page, re.DOTALL)
    assert match, key
    return match.group(0)


async def test_reviewers_cannot_reach_admin_actions(signed_in, factory):
    client, reviewer = await signed_in("reviewer")
    agent = await factory.user("agent")
    token = await form_token(client, "/")
    assert (await client.get("/admin/integrations")).status_code == 403
    for path, data in (
        (f"/admin/users/{agent.id}/role", {"role": "admin"}),
        (f"/admin/users/{agent.id}/active", {"active": "false"}),
        (f"/admin/users/{reviewer.id}/password", {"password": "x" * 10}),
        (f"/admin/users/{agent.id}/skills", {"skills": "python"}),
    ):
        assert (await client.post(path, data={"csrf_token": token, **data})).status_code == 403, path


# --- administering users ---------------------------------------------------------------------------


async def test_admin_changes_roles_resets_a_password_and_keeps_the_last_admin(signed_in, factory, runtime):
    client, admin = await signed_in("admin")
    rita = await factory.user("reviewer", name="rita", password=PASSWORD)
    agent = await factory.user("agent")
    token = await form_token(client, "/admin/users")
    r = await client.post(f"/admin/users/{rita.id}/role", data={"csrf_token": token, "role": "admin"})
    assert r.status_code == 303
    r = await client.post(
        f"/admin/users/{agent.id}/skills", data={"csrf_token": token, "skills": "python, sql"}
    )
    assert r.status_code == 303
    async with runtime.sessions() as session:
        assert (await session.get(User, rita.id)).role == "admin"
        assert (await session.get(User, agent.id)).skills == ["python", "sql"]

    r = await client.post(f"/admin/users/{rita.id}/password", data={"csrf_token": token})
    assert r.status_code == 200
    new_password = re.search(r'id="new-password" class="mono" readonly value="([^"]+)"', r.text).group(1)
    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as browser:
        assert (await sign_in(browser, "rita")).status_code != 303  # the old password is gone
        assert (await sign_in(browser, "rita", new_password)).status_code == 303

    # rita is an admin now, so the signed-in admin may step down; then rita is the last one
    r = await client.post(f"/admin/users/{admin.id}/role", data={"csrf_token": token, "role": "reviewer"})
    assert r.status_code == 303
    async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as browser:
        await sign_in(browser, "rita", new_password)
        t = await form_token(browser, "/admin/users")
        r = await browser.post(f"/admin/users/{rita.id}/active", data={"csrf_token": t, "active": "false"})
        assert r.status_code == 409 and "last active admin" in r.text


async def test_deactivating_a_user_refuses_their_token_and_closes_their_socket(signed_in, factory, live):
    client, _ = await signed_in("admin")
    agent = await factory.user("agent")
    secret = await factory.token(agent)
    reviewer = await factory.user("reviewer", password=PASSWORD)
    agent_ws = await open_socket(live.url, "/ws/board", token=secret)
    person_ws = await open_socket(
        live.url, "/ws/board", cookie=await session_cookie(live.url, reviewer.username)
    )
    await until_ready(agent_ws)
    await until_ready(person_ws)
    token = await form_token(client, "/admin/users")
    for user in (agent, reviewer):
        r = await client.post(f"/admin/users/{user.id}/active", data={"csrf_token": token, "active": "false"})
        assert r.status_code == 303
    for ws in (agent_ws, person_ws):
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1008
    async with httpx.AsyncClient(base_url=live.url) as api:
        r = await api.get("/api/v1/tasks", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401


# --- tokens -------------------------------------------------------------------------------------


async def test_tokens_default_to_an_agent_ask_before_a_person_and_can_expire(signed_in, factory, runtime):
    client, admin = await signed_in("admin")
    agent = await factory.user("agent", name="zz-bot")
    page = await client.get("/admin/tokens")
    assert re.search(rf'<option value="{agent.id}" selected>zz-bot \(agent\)</option>', page.text)
    token = csrf_of(page.text)
    r = await client.post(
        "/admin/tokens", data={"csrf_token": token, "user_id": str(admin.id), "name": "mine"}
    )
    assert r.status_code == 409 and "is a person" in r.text and 'name="confirm_person" value="yes"' in r.text
    async with runtime.sessions() as session:
        assert await session.scalar(select(ApiToken.id).limit(1)) is None
    r = await client.post(
        "/admin/tokens",
        data={"csrf_token": token, "user_id": str(admin.id), "name": "mine", "confirm_person": "yes"},
    )
    assert r.status_code == 201 and 'id="new-secret"' in r.text
    r = await client.post(
        "/admin/tokens",
        data={"csrf_token": token, "user_id": str(agent.id), "name": "ci", "expires_in_days": "7"},
    )
    assert r.status_code == 201 and "Expires" in r.text
    async with runtime.sessions() as session:
        ci = await session.scalar(select(ApiToken).where(ApiToken.name == "ci"))
    assert ci.expires_at is not None
    r = await client.post(
        "/admin/tokens",
        data={"csrf_token": token, "user_id": str(agent.id), "name": "bad", "expires_in_days": "soon"},
    )
    assert r.status_code == 422
