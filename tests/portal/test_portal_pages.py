"""The portal over HTTP (ASGI): sign-in, CSRF, roles, organization scoping, the task workflow."""

from __future__ import annotations

import re
import secrets

import pytest

from osiris.app import db, lifecycle
from osiris.app.artifacts import validate_artifact
from osiris.app.models import Message
from tests.support.jobs import drain
from tests.support.portal_helpers import PASSWORD, approve_form, csrf_of, form_token, sign_in

from .task_helpers import make_task, status_of

pytestmark = pytest.mark.asyncio


# --- signing in and out --------------------------------------------------------------------------


async def test_pages_need_a_signed_in_person(browser_client):
    r = await browser_client.get("/tasks/1?v=2")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Ftasks%2F1%3Fv%3D2"


async def test_sign_in_sets_a_safe_cookie_and_sign_out_clears_it(browser_client, person):
    user = await person("reviewer")
    page = await browser_client.get("/login")
    assert page.status_code == 200 and "Sign in" in page.text
    r = await browser_client.post(
        "/login",
        data={
            "username": user.username,
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "/tasks/7",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/tasks/7"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie  # http public URL
    board = await browser_client.get("/")
    assert board.status_code == 200 and user.username in board.text
    r = await browser_client.post("/logout", data={"csrf_token": csrf_of(board.text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert (await browser_client.get("/")).status_code == 303


async def test_wrong_password_and_agents_are_refused(browser_client, person, factory):
    user = await person("reviewer")
    r = await sign_in(browser_client, user.username, "not the password")
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    agent = await factory.user("agent", password=PASSWORD)
    r = await sign_in(browser_client, agent.username)
    assert r.status_code == 401
    assert (await browser_client.get("/")).status_code == 303


async def test_login_never_redirects_off_site(browser_client, person):
    user = await person("reviewer")
    page = await browser_client.get("/login?next=//evil.example/x")
    r = await browser_client.post(
        "/login",
        data={
            "username": user.username,
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "//evil.example/x",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/"


async def test_login_is_rate_limited(browser_client, person, settings):
    user = await person("reviewer")
    token = csrf_of((await browser_client.get("/login")).text)
    codes = []
    for _ in range(settings.auth.login_rate_per_minute + 1):
        r = await browser_client.post(
            "/login", data={"username": user.username, "password": "wrong", "csrf_token": token}
        )
        codes.append(r.status_code)
    assert codes[:-1] == [401] * settings.auth.login_rate_per_minute
    assert codes[-1] == 429
    # Even the right password waits out the window: guessing gains nothing.
    r = await browser_client.post(
        "/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429 and "Too many sign-in attempts" in r.text


async def test_password_change_signs_the_browser_out(signed_in, factory):
    client, user = await signed_in("reviewer")
    assert (await client.get("/")).status_code == 200
    async with db.transaction(factory.runtime.sessions) as s:
        row = await s.get(type(user), user.id)
        from osiris.app import security

        row.password_hash = security.hash_password("a brand new password")
    assert (await client.get("/")).status_code == 303


# --- CSRF ----------------------------------------------------------------------------------------


async def test_forms_without_the_csrf_token_are_refused(signed_in, factory):
    client, _ = await signed_in("reviewer")
    task, _ = await make_task(factory, submit=["print('v1')\n"])
    r = await client.post(f"/tasks/{task.id}/approve", data={})
    assert r.status_code == 403 and "security token" in r.text
    r = await client.post(f"/tasks/{task.id}/approve", data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert await status_of(factory, task.id) == "REVIEW"


async def test_login_form_needs_its_csrf_token(browser_client, person):
    user = await person("reviewer")
    r = await browser_client.post("/login", data={"username": user.username, "password": PASSWORD})
    assert r.status_code == 403
    assert (await browser_client.get("/")).status_code == 303


async def test_a_form_posted_from_another_site_is_refused(signed_in, factory):
    client, _ = await signed_in("reviewer")
    task, _ = await make_task(factory, submit=["print('v1')\n"])
    token = await form_token(client, f"/tasks/{task.id}")
    r = await client.post(
        f"/tasks/{task.id}/approve", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    assert await status_of(factory, task.id) == "REVIEW"


# --- roles and organizations ---------------------------------------------------------------------


async def test_reviewers_do_not_see_or_reach_admin_pages(signed_in):
    client, _ = await signed_in("reviewer")
    board = await client.get("/")
    assert 'href="/admin/users"' not in board.text
    assert (await client.get("/admin/users")).status_code == 403
    assert (await client.get("/admin/tokens")).status_code == 403
    r = await client.post(
        "/admin/tokens", data={"csrf_token": csrf_of(board.text), "name": "x", "user_id": "1"}
    )
    assert r.status_code == 403 and "only administrators" in r.text


async def test_an_agent_token_cannot_use_the_portal_actions(client, factory):
    task, agent = await make_task(factory, submit=["print('v1')\n"])
    headers = {"Authorization": f"Bearer {await factory.token(agent)}"}
    r = await client.post(f"/tasks/{task.id}/approve", headers=headers, data={"csrf_token": "x"})
    assert r.status_code in (303, 403)
    assert r.headers.get("location", "/login").startswith("/login")
    assert await status_of(factory, task.id) == "REVIEW"


async def test_a_reviewer_of_another_organization_sees_nothing(signed_in, factory):
    task, _ = await make_task(factory, title="Secret project", submit=["print('v1')\n"])
    other = await factory.org("other-org")
    client, _ = await signed_in("reviewer", org=other)
    board = await client.get("/")
    assert board.status_code == 200 and "Secret project" not in board.text
    page = await client.get(f"/tasks/{task.id}")
    assert page.status_code == 404 and "Secret project" not in page.text
    form = {"csrf_token": csrf_of(board.text), "version": "1", "head_sha": "ab" * 20}
    r = await client.post(f"/tasks/{task.id}/approve", data=form)
    assert r.status_code == 404
    assert await status_of(factory, task.id) == "REVIEW"


# --- the task page -------------------------------------------------------------------------------


async def test_review_workflow_through_the_forms(signed_in, factory):
    client, reviewer = await signed_in("reviewer")
    repo = f"t-{secrets.token_hex(4)}"  # published below: a repository of its own
    task, agent = await make_task(factory, submit=[{"app.py": "def hello():\n    return 'hi'\n"}], repo=repo)
    runtime = factory.runtime  # the worker publishes version 1 (one publish at a time: git makes the repo)
    await drain(runtime)
    page = await client.get(f"/tasks/{task.id}")
    assert page.status_code == 200
    assert "Approve and merge" in page.text and "Request changes" in page.text
    assert 'class="hl"' in page.text and "app.py" in page.text  # highlighted file
    for header in ("content-security-policy", "x-frame-options", "referrer-policy"):
        assert header in page.headers
    assert page.headers["x-frame-options"] == "DENY"
    token = csrf_of(page.text)

    r = await client.post(
        f"/tasks/{task.id}/request-changes", data={"csrf_token": token, "feedback": "Say hello"}
    )
    assert r.status_code == 303
    assert await status_of(factory, task.id) == "IN_PROGRESS"
    async with factory.runtime.sessions() as s:
        from sqlalchemy import select

        feedback = (await s.execute(select(Message).where(Message.task_id == task.id))).scalars().one()
    assert (
        feedback.body == "Say hello" and feedback.source == "portal" and feedback.meta["kind"] == "feedback"
    )
    page = await client.get(f"/tasks/{task.id}")
    assert "Changes requested" in page.text and "Say hello" in page.text  # flash, then the thread
    assert "Approve and merge" not in page.text

    # approving a task that is not in review: a friendly page with the lifecycle's status
    r = await client.post(
        f"/tasks/{task.id}/approve", data={"csrf_token": token, "version": "1", "head_sha": "ab" * 20}
    )
    assert r.status_code == 409 and "cannot approve" in r.text and "<html" in r.text

    r = await client.post(f"/tasks/{task.id}/messages", data={"csrf_token": token, "body": "Any questions?"})
    assert r.status_code == 303
    async with db.transaction(factory.runtime.sessions) as s:
        await lifecycle.submit_artifact(
            s,
            factory.actor(agent),
            task.id,
            artifact=validate_artifact(
                {"app.py": "def hello():\n    return 'hello'\n"}, "auto", max_bytes=10**6
            ),
        )
    page = await client.get(f"/tasks/{task.id}")
    assert "Compare versions" in page.text and "v1 → v2" in page.text
    assert "<span class=\"gi\">+    return 'hello'</span>" in page.text  # the v1 → v2 diff, highlighted
    # Version 2 is not published yet: nothing to approve. Once it is, the form names it.
    assert "Approval waits" in page.text and "not published yet" in page.text
    await drain(runtime)
    page = await client.get(f"/tasks/{task.id}")
    form = approve_form(page.text, comment="ship it")
    assert form["version"] == "2" and len(form["head_sha"]) == 40
    r = await client.post(f"/tasks/{task.id}/approve", data=form)
    assert r.status_code == 303
    assert await status_of(factory, task.id) == "DONE"


async def test_diff_between_any_two_versions_of_a_patch(signed_in, factory):
    client, _ = await signed_in("reviewer")
    patches = [f"--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-old\n+new {i}\n" for i in range(1, 4)]
    task, _ = await make_task(factory, submit=patches)
    page = await client.get(f"/tasks/{task.id}?from=1&to=3&v=1")
    assert page.status_code == 200
    assert "v1 → v3" in page.text
    assert 'aria-current="true">v1' in page.text
    assert "+new 1" in page.text or "new 1" in page.text


async def test_html_in_agent_content_is_escaped(signed_in, factory):
    client, _ = await signed_in("reviewer")
    task, _ = await make_task(
        factory, title="<script>alert(1)</script>", submit=["<img src=x onerror=alert(1)>"]
    )
    page = await client.get(f"/tasks/{task.id}")
    assert "<script>alert(1)" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;" in page.text


# --- the board -----------------------------------------------------------------------------------


async def test_board_columns_counts_filters_and_search(signed_in, factory):
    client, _ = await signed_in("reviewer")
    a, _ = await make_task(factory, title="Alpha feature")
    b, _ = await make_task(factory, title="Beta bugfix", submit=["x = 1\n"])
    board = await client.get("/")
    assert board.status_code == 200
    assert 'id="col-PENDING"' in board.text and 'id="col-REVIEW"' in board.text
    assert 'data-count="1"' in board.text
    assert "Alpha feature" in board.text and "Beta bugfix" in board.text
    found = await client.get("/", params={"q": "beta"})
    assert "Beta bugfix" in found.text and "Alpha feature" not in found.text
    found = await client.get("/", params={"q": f"#{a.id}"})
    assert "Alpha feature" in found.text and "Beta bugfix" not in found.text
    found = await client.get("/", params={"q": "100%_"})
    assert "Alpha feature" not in found.text
    found = await client.get(
        "/", params={"repo": "nope", "priority": "normal", "channel": "api", "assignee": ""}
    )
    assert found.status_code == 200 and "Alpha feature" not in found.text


async def test_board_chips_say_what_they_are(signed_in, factory):
    client, _ = await signed_in("reviewer")
    task, agent = await make_task(factory, title="Labelled", submit=["x = 1\n"], repo="web")
    board = await client.get("/")
    card = re.search(rf'<li class="card[^"]*" data-task-id="{task.id}">.*?</li>', board.text, re.DOTALL)
    assert card is not None
    chips = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", card.group(0)))
    assert "repo web" in chips and "via api" in chips and "priority" in chips
    assert f"held by {agent.username}" in chips and "1 version" in chips


# --- administration -------------------------------------------------------------------------------


async def test_admin_manages_users_tokens_github_logins_and_reads_the_audit_log(signed_in, factory, client):
    admin_client, admin = await signed_in("admin")
    page = await admin_client.get("/admin/users")
    assert page.status_code == 200 and admin.username in page.text
    token = csrf_of(page.text)
    r = await admin_client.post(
        "/admin/users", data={"csrf_token": token, "username": "robo-1", "role": "agent", "github_login": ""}
    )
    assert r.status_code == 303
    r = await admin_client.post(
        "/admin/users", data={"csrf_token": token, "username": "rita", "role": "reviewer", "password": ""}
    )
    assert r.status_code == 422
    users = (await admin_client.get("/admin/users")).text
    assert "robo-1" in users

    from sqlalchemy import select

    from osiris.app.models import User

    async with factory.runtime.sessions() as s:
        robo = (await s.execute(select(User).where(User.username == "robo-1"))).scalar_one()
    r = await admin_client.post(
        f"/admin/users/{robo.id}/github", data={"csrf_token": token, "github_login": "@robo-gh"}
    )
    assert r.status_code == 303
    async with factory.runtime.sessions() as s:
        assert (await s.get(User, robo.id)).github_login == "robo-gh"
    r = await admin_client.post(
        f"/admin/users/{admin.id}/github", data={"csrf_token": token, "github_login": "ROBO-GH"}
    )
    assert r.status_code == 409  # one GitHub login, one user

    r = await admin_client.post(
        "/admin/tokens", data={"csrf_token": token, "name": "ci", "user_id": str(robo.id)}
    )
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    secret = r.text.split('id="new-secret" class="mono" readonly value="')[1].split('"')[0]
    assert secret.startswith("osr_")
    me = await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200
    listing = await admin_client.get("/admin/tokens")
    assert secret not in listing.text and "ci" in listing.text  # shown once only
    token_id = listing.text.split('action="/admin/tokens/')[1].split("/revoke")[0]
    r = await admin_client.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert r.status_code == 303
    assert (
        await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {secret}"})
    ).status_code == 401

    task, _ = await make_task(factory, title="Audited")
    audit = await admin_client.get("/admin/audit")
    assert audit.status_code == 200 and f"/tasks/{task.id}" in audit.text and "created" in audit.text
