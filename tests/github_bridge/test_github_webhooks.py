"""The webhook edge: signatures, exactly-once deliveries, GitHub's own example payloads, and the
review / comment / close behaviours driven through the fake as a person would."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from osiris.app.models import Delivery, Message
from tests.support.fake_github import EXAMPLES, hook_headers
from tests.support.github_harness import (
    PATCH_V1,
    REPO,
    SECRET,
    GitHubEnv,
    claim_new_task,
    github_people,
    published_task,
    read_task,
)


async def _count(env: GitHubEnv, model) -> int:
    async with env.runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_github_every_example_payload_is_answered_without_5xx(github: GitHubEnv, monkeypatch):
    monkeypatch.setattr(github.runtime.settings.github, "repo", {"*": REPO})  # every repository served
    n = 0
    for group in EXAMPLES:
        for i, payload in enumerate(group["examples"]):
            body = json.dumps(payload).encode()
            r = await github.client.post(
                "/api/v1/webhooks/github",
                content=body,
                headers=hook_headers(SECRET, group["name"], body, f"ex-{group['name']}-{i}"),
            )
            assert r.status_code < 500, (group["name"], payload.get("action"), r.text)
            assert r.status_code in (200, 202), (group["name"], r.status_code, r.text)
            n += 1
    assert n > 100
    await github.drain()  # and the jobs they queued run without an error
    async with github.runtime.sessions() as session:
        failed = await session.scalar(
            select(func.count()).select_from(Delivery)  # recorded: only the events OSIRIS handles
        )
    assert failed and failed < n


async def test_github_bad_signature_is_401_and_stores_nothing(github: GitHubEnv):
    payload = EXAMPLES[0]["examples"][0]
    body = json.dumps(payload).encode()
    for headers in (
        hook_headers("wrong", "pull_request", body, "bad-1"),
        {
            k: v
            for k, v in hook_headers(SECRET, "pull_request", body, "bad-2").items()
            if k != "x-hub-signature-256"
        },
        {**hook_headers(SECRET, "pull_request", body, "bad-3"), "x-hub-signature-256": "sha256=" + "0" * 64},
    ):
        r = await github.client.post("/api/v1/webhooks/github", content=body, headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    tampered = body.replace(b"Codertocat", b"Mallory")
    r = await github.client.post(
        "/api/v1/webhooks/github",
        content=tampered,
        headers=hook_headers(SECRET, "pull_request", body, "bad-4"),
    )
    assert r.status_code == 401
    assert await _count(github, Delivery) == 0


async def test_github_same_delivery_five_times_has_one_effect(github: GitHubEnv, factory):
    task_id, _, agent_h = await published_task(github, factory)
    async with github.fake.client("alice-token") as alice:
        await alice.post(
            f"/repos/{REPO}/pulls/1/reviews", json={"event": "REQUEST_CHANGES", "body": "Please rename."}
        )
    [(headers, body)] = github.fake.outbox
    github.fake.outbox.clear()
    for _ in range(5):
        r = await github.client.post("/api/v1/webhooks/github", content=body, headers=headers)
        assert r.status_code == 202
    await github.drain()
    assert await _count(github, Delivery) == 1
    r = await github.client.get(f"/api/v1/tasks/{task_id}/messages", headers=agent_h)
    assert [m["body"] for m in r.json()] == ["Please rename."]
    task = await read_task(github, task_id, agent_h)
    assert task["status"] == "IN_PROGRESS"


async def test_github_comments_commands_and_authorisation(github: GitHubEnv, factory):
    task_id, admin_h, agent_h = await published_task(github, factory)
    github.fake.tokens["bob-token"] = "bob"  # a GitHub user OSIRIS does not know
    async with github.fake.client("bob-token") as bob:
        await bob.post(f"/repos/{REPO}/issues/1/comments", json={"body": "/approve"})
        await bob.post(f"/repos/{REPO}/pulls/1/reviews", json={"event": "APPROVE", "body": "lgtm"})
    await github.deliver()
    await github.drain()
    assert (await read_task(github, task_id, admin_h))["status"] == "REVIEW"  # bob cannot approve
    r = await github.client.get(f"/api/v1/tasks/{task_id}/messages", headers=agent_h)
    bodies = [m["body"] for m in r.json()]
    assert any(b.startswith("/approve") and "not mapped" in b for b in bodies)
    assert any("Approval by @bob not counted" in b for b in bodies)

    # A portal message is mirrored on the PR once, and its webhook echo is not imported back.
    r = await github.client.post(
        f"/api/v1/tasks/{task_id}/messages", json={"body": "Looking now."}, headers=admin_h
    )
    assert r.status_code == 201
    await github.drain()
    mirrored = [c for c in github.fake.comments if "Looking now." in c["body"]]
    assert len(mirrored) == 1
    await github.deliver()
    await github.drain()
    async with github.runtime.sessions() as session:
        rows = (await session.execute(select(Message).where(Message.task_id == task_id))).scalars().all()
    assert [m.body for m in rows].count("Looking now.") == 1
    assert next(m for m in rows if m.body == "Looking now.").provider_id == str(mirrored[0]["id"])

    # alice is mapped: an inline review comment becomes a message with its place in the diff.
    async with github.fake.client("alice-token") as alice:
        await alice.post(
            f"/repos/{REPO}/pulls/1/reviews",
            json={
                "event": "COMMENT",
                "body": "",
                "comments": [{"path": "src/app.py", "line": 2, "body": "nit"}],
            },
        )
        await alice.post(f"/repos/{REPO}/issues/1/comments", json={"body": "/reject not needed any more"})
    await github.deliver()
    await github.drain()
    task = await read_task(github, task_id, admin_h)
    assert task["status"] == "REJECTED"
    r = await github.client.get(f"/api/v1/tasks/{task_id}/messages", headers=agent_h)
    nit = next(m for m in r.json() if m["body"] == "nit")
    assert (
        nit["source"] == "github_review" and nit["meta"]["path"] == "src/app.py" and nit["meta"]["line"] == 2
    )
    await github.drain()
    assert github.pr(1).state == "closed"  # the rejection closed the PR; its echo changes nothing
    await github.deliver()
    await github.drain()

    # Reopened on GitHub by a person → back to REVIEW; merged there by a person → DONE.
    async with github.fake.client("alice-token") as alice:
        await alice.patch(f"/repos/{REPO}/pulls/1", json={"state": "open"})
    await github.deliver()
    await github.drain()
    assert (await read_task(github, task_id, admin_h))["status"] == "REVIEW"


async def test_github_pr_closed_or_merged_by_a_person(github: GitHubEnv, factory):
    task_id, admin_h, _ = await published_task(github, factory)
    async with github.fake.client("alice-token") as alice:
        # A person merges the draft on GitHub (after marking it ready there).
        github.pr(1).draft = False
        r = await alice.put(f"/repos/{REPO}/pulls/1/merge", json={"merge_method": "merge"})
        assert r.status_code == 200, r.text
    await github.deliver()
    await github.drain()
    assert (await read_task(github, task_id, admin_h))["status"] == "DONE"
    assert github.fake.read_file(REPO, "main", "src/app.py").splitlines()[1] == "    return f'hello {name}'"


@pytest.mark.parametrize("approvers", ["mapped", "write"])
async def test_github_write_access_policy(github: GitHubEnv, factory, monkeypatch, approvers):
    monkeypatch.setattr(github.runtime.settings.github, "approvers", approvers)
    task_id, admin_h, _ = await published_task(github, factory)
    github.fake.tokens["carol-token"] = "carol"
    github.fake.permissions["carol"] = "write"
    async with github.fake.client("carol-token") as carol:
        await carol.post(f"/repos/{REPO}/pulls/1/reviews", json={"event": "APPROVE", "body": "ok"})
    await github.deliver()
    await github.drain()
    expected = "DONE" if approvers == "write" else "REVIEW"
    assert (await read_task(github, task_id, admin_h))["status"] == expected
    if approvers == "write":
        assert github.pr(1).merged


async def test_github_merge_conflict_sends_the_task_back(github: GitHubEnv, factory):
    task_id, admin_h, agent_h = await published_task(github, factory)
    github.fake.commit_files(
        REPO, "main", {"src/app.py": "def greet(name):\n    return 'hi ' + name\n"}, "someone else"
    )
    r = await github.client.post(f"/api/v1/tasks/{task_id}/approve", headers=admin_h)
    assert r.status_code == 200
    await github.drain()
    task = await read_task(github, task_id, agent_h)
    assert task["status"] == "IN_PROGRESS"
    r = await github.client.get(f"/api/v1/tasks/{task_id}/messages", headers=agent_h)
    feedback = [m for m in r.json() if m["meta"].get("kind") == "feedback"]
    assert feedback and "src/app.py" in feedback[-1]["body"]
    assert not github.pr(1).merged


async def test_github_patch_that_does_not_apply_is_refused_before_storing(github: GitHubEnv, factory):
    admin_h, agent_h, _ = await github_people(factory)
    task_id = await claim_new_task(github, admin_h, agent_h)
    bad = PATCH_V1.replace("-    return 'hello ' + name", "-    return 'bonjour ' + name")
    r = await github.client.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": bad}, headers=agent_h)
    assert r.status_code == 422 and r.json()["code"] == "patch_does_not_apply", r.text
    assert (await read_task(github, task_id, agent_h))["status"] == "IN_PROGRESS"
    assert github.fake.pulls == {}


async def test_github_app_installation_token(github: GitHubEnv, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from osiris.app.config import Settings
    from osiris.github_bridge.github_client import GitHub

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    github.fake.installations["42"] = public
    settings = Settings(
        db={"url": "postgresql://x/y"},
        auth={"secret_key": "k" * 32},
        github={
            "app_id": "7",
            "private_key": pem,
            "installation_id": 42,
            "api_url": "https://api.github.test",
        },
    )
    import httpx

    async with httpx.AsyncClient(transport=github.fake.transport()) as http:
        gh = GitHub(settings, client=http)
        first = await gh.get(f"/repos/{REPO}/branches/main")
        again = await gh.get(f"/repos/{REPO}/branches/main")
        assert first["commit"]["sha"] == again["commit"]["sha"]
    assert github.fake.calls["POST /app/installations/{installation_id}/access_tokens"] == 1  # cached
