"""The REST API through the ASGI app, with real tokens against real PostgreSQL."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select

from osiris.app.models import ApiToken, Artifact, Task
from tests.support.jobs import drain

PATCH = """diff --git a/hello.py b/hello.py
new file mode 100644
--- /dev/null
+++ b/hello.py
@@ -0,0 +1 @@
+print("hello")
"""


async def _claimed_task(client, agent_headers, **fields) -> int:
    r = await client.post(
        "/api/v1/tasks", json={"title": "Say hello", "priority": "high", **fields}, headers=agent_headers
    )
    task_id = r.json()["id"]
    r = await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent_headers)
    assert r.status_code == 200, r.text
    return task_id


async def test_no_token_bad_token_and_revoked_token_are_401(client, factory):
    user, headers = await factory.member("agent")
    r = await client.get("/api/v1/tasks")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["code"] == "unauthenticated"
    assert (
        await client.get("/api/v1/tasks", headers={"Authorization": "Bearer osr_nope"})
    ).status_code == 401
    assert (
        await client.get("/api/v1/tasks", headers={"Authorization": "Bearer not.a.jwt"})
    ).status_code == 401
    assert (await client.get("/api/v1/tasks", headers=headers)).status_code == 200

    _, admin = await factory.member("admin")
    [token] = [t for t in (await client.get("/api/v1/tasks", headers=admin)).json()["items"]] or [None]
    tokens = (await client.get("/api/v1/tokens", headers=admin)).json()
    mine = next(t for t in tokens if t["user_id"] == user.id)
    assert mine["last_used_at"] is not None  # recorded on use
    assert (await client.delete(f"/api/v1/tokens/{mine['id']}", headers=admin)).json()["revoked_at"]
    assert (await client.get("/api/v1/tasks", headers=headers)).status_code == 401


async def test_tokens_are_stored_hashed(runtime, factory):
    user = await factory.user("agent")
    secret = await factory.token(user)
    assert secret.startswith("osr_")
    async with runtime.sessions() as s:
        stored = (await s.execute(select(ApiToken.token_hash, ApiToken.display_prefix))).one()
    assert secret not in stored.token_hash and len(stored.token_hash) == 64
    assert secret.startswith(stored.display_prefix)


async def test_password_login_gives_a_jwt_that_works_and_agents_cannot_log_in(client, factory):
    await factory.user("reviewer", name="rita", password="correct horse battery")
    r = await client.post("/api/v1/auth/token", data={"username": "rita", "password": "wrong password"})
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    r = await client.post(
        "/api/v1/auth/token", data={"username": "rita", "password": "correct horse battery"}
    )
    assert r.status_code == 200, r.text
    jwt_headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get("/api/v1/tasks", headers=jwt_headers)).status_code == 200
    tampered = r.json()["access_token"][:-2] + "xx"
    assert (
        await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {tampered}"})
    ).status_code == 401


async def test_login_is_rate_limited(client, factory, runtime):
    await factory.user("reviewer", name="limited", password="a-long-password")
    codes = []
    for _ in range(runtime.settings.auth.login_rate_per_minute + 2):
        r = await client.post("/api/v1/auth/token", data={"username": "limited", "password": "bad-password"})
        codes.append(r.status_code)
    assert codes[0] == 401 and codes[-1] == 429


async def _publish(runtime) -> None:
    """Run the queued jobs: a version is approvable once its publish job has shown it."""
    await drain(runtime)


async def test_full_loop_with_feedback_and_version_diff(client, factory, runtime):
    _, agent = await factory.member("agent")
    _, reviewer = await factory.member("reviewer")
    # published and merged below: a repository of its own (task ids and branch names restart per test)
    task_id = await _claimed_task(client, agent, repo=f"t-{secrets.token_hex(4)}")

    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts", json={"content": PATCH, "summary": "v1"}, headers=agent
    )
    assert r.status_code == 201, r.text
    assert r.json()["artifact"]["kind"] == "patch"
    assert r.json()["task"]["status"] == "REVIEW"
    await _publish(runtime)

    r = await client.post(
        f"/api/v1/tasks/{task_id}/reject", json={"feedback": "print goodbye too"}, headers=reviewer
    )
    assert r.json()["status"] == "IN_PROGRESS"
    msgs = (await client.get(f"/api/v1/tasks/{task_id}/messages", headers=agent)).json()
    assert [(m["body"], m["direction"]) for m in msgs] == [("print goodbye too", "to_agent")]

    # on top of version 1, which the publish job put on the branch
    v2 = 'diff --git a/hello.py b/hello.py\n--- a/hello.py\n+++ b/hello.py\n@@ -1 +1,2 @@\n print("hello")\n'
    v2 += '+print("goodbye")\n'
    r = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": v2}, headers=agent)
    assert r.json()["artifact"]["version"] == 2

    r = await client.get(f"/api/v1/tasks/{task_id}/artifacts/diff?from=1&to=2", headers=reviewer)
    assert '++print("goodbye")' in r.json()["diff"]

    await _publish(runtime)
    r = await client.post(f"/api/v1/tasks/{task_id}/approve", json={"comment": "ship it"}, headers=reviewer)
    assert r.json()["status"] == "DONE", r.text
    detail = (await client.get(f"/api/v1/tasks/{task_id}", headers=reviewer)).json()
    assert [a["version"] for a in detail["artifacts"]] == [1, 2]
    kinds = [e["kind"] for e in (await client.get(f"/api/v1/tasks/{task_id}/events", headers=agent)).json()]
    moves = [k for k in kinds if k not in ("published", "review_requested", "message_delivered")]
    assert moves[:7] == ["created", "claim", "submit", "request_changes", "message", "submit", "approve"]


async def test_other_organizations_tasks_are_404(client, factory):
    _, mine = await factory.member("agent")
    other_org = await factory.org("acme")
    _, theirs = await factory.member("agent", org=other_org)
    task_id = (await client.post("/api/v1/tasks", json={"title": "secret"}, headers=mine)).json()["id"]
    for method, path in [
        ("GET", f"/api/v1/tasks/{task_id}"),
        ("POST", f"/api/v1/tasks/{task_id}/claim"),
        ("GET", f"/api/v1/tasks/{task_id}/events"),
    ]:
        r = await client.request(method, path, headers=theirs)
        assert r.status_code == 404 and r.json()["code"] == "task_not_found", (path, r.text)
    assert (await client.get("/api/v1/tasks", headers=theirs)).json()["items"] == []
    assert (await client.get("/api/v1/tasks/999999", headers=mine)).status_code == 404


async def test_bad_artifacts_are_refused_and_store_nothing(client, factory, runtime):
    _, agent = await factory.member("agent")
    task_id = await _claimed_task(client, agent)
    bad = [
        ({"content": {"../etc/passwd": "x"}}, 422, "invalid_artifact"),
        ({"content": {"/abs/path": "x"}}, 422, "invalid_artifact"),
        ({"content": {".git/config": "x"}}, 422, "invalid_artifact"),
        (
            {"content": "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ garbage", "kind": "patch"},
            422,
            "invalid_artifact",
        ),
        ({"content": "   "}, 422, "invalid_artifact"),
        ({"content": "x", "kind": "zip"}, 422, "invalid_input"),
        ({"content": "x" * (runtime.settings.tasks.max_artifact_bytes + 1)}, 413, "too_large"),
    ]
    for body, status, code in bad:
        r = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json=body, headers=agent)
        assert (r.status_code, r.json()["code"]) == (status, code), (
            body if len(str(body)) < 200 else code,
            r.text,
        )
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts",
        content=b"x" * (3 * runtime.settings.tasks.max_artifact_bytes),
        headers={**agent, "content-type": "application/json"},
    )
    assert r.status_code == 413
    r = await client.post(
        f"/api/v1/tasks/{task_id}/artifacts",
        content=b"{not json",
        headers={**agent, "content-type": "application/json"},
    )
    assert r.status_code == 422
    async with runtime.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Artifact)) == 0
        assert (await s.get(Task, task_id)).status == "IN_PROGRESS"


async def test_submitting_to_a_task_not_held_is_not_your_task(client, factory):
    _, holder = await factory.member("agent")
    _, other = await factory.member("agent")
    task_id = await _claimed_task(client, holder)
    r = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": "hi"}, headers=other)
    assert (r.status_code, r.json()["code"]) == (403, "not_your_task")
    r = await client.post(f"/api/v1/tasks/{task_id}/claim", headers=other)
    assert (r.status_code, r.json()["code"]) == (409, "not_claimable")


async def test_idempotent_rest_submit_returns_the_first_result(client, factory):
    _, agent = await factory.member("agent")
    task_id = await _claimed_task(client, agent)
    body = {"content": "# plan\n", "idempotency_key": "retry-1"}
    first = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json=body, headers=agent)
    again = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json=body, headers=agent)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["artifact"]["id"] == again.json()["artifact"]["id"]
    assert again.json()["created"] is False


async def test_listing_filters_and_cursor_pagination(client, factory):
    _, agent = await factory.member("agent")
    for i in range(7):
        body = {
            "title": f"task {i}",
            "priority": "urgent" if i % 3 == 0 else "low",
            "repo": "web" if i % 2 else "api",
        }
        await client.post("/api/v1/tasks", json=body, headers=agent)
    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/v1/tasks", params=params, headers=agent)).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 7
    urgent = (await client.get("/api/v1/tasks", params={"priority": "urgent"}, headers=agent)).json()["items"]
    assert {t["title"] for t in urgent} == {"task 0", "task 3", "task 6"}
    web = (await client.get("/api/v1/tasks", params={"repo": "web"}, headers=agent)).json()["items"]
    assert len(web) == 3
    pending = (await client.get("/api/v1/tasks/pending", headers=agent)).json()
    assert [t["priority"] for t in pending][:3] == ["urgent"] * 3  # highest priority first
    assert (await client.get("/api/v1/tasks", params={"cursor": "%%%"}, headers=agent)).status_code == 422
    assert (await client.get("/api/v1/tasks", params={"status": "WAT"}, headers=agent)).status_code == 422


async def test_admin_endpoints_need_an_admin(client, factory):
    _, reviewer = await factory.member("reviewer")
    _, admin = await factory.member("admin")
    assert (await client.get("/api/v1/users", headers=reviewer)).status_code == 403
    r = await client.post("/api/v1/users", json={"username": "bot-7", "role": "agent"}, headers=admin)
    assert r.status_code == 201
    r = await client.post("/api/v1/tokens", json={"name": "ci", "username": "bot-7"}, headers=admin)
    assert r.status_code == 201 and r.json()["token"].startswith("osr_")
    bot = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await client.get("/api/v1/tasks", headers=bot)).status_code == 200
    assert all("token" not in t for t in (await client.get("/api/v1/tokens", headers=admin)).json())
    assert (
        await client.post("/api/v1/users", json={"username": "bot-7", "role": "agent"}, headers=admin)
    ).status_code == 409


async def test_operations_endpoints(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    body = (await client.get("/metrics")).text
    assert "osiris_http_requests_total" in body and "osiris_task_transitions_total" in body
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "OSIRIS"
    assert "x-request-id" in (await client.get("/healthz")).headers
