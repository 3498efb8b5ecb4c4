"""How many GitHub API calls a task's whole life costs (issue 17): counted by the fake, never timed.

The lifecycle is bench/github_sync_github.py's: version 1, a review requesting changes with an inline
comment, version 2, approval, merge. Webhooks are delivered as GitHub sends them, one at a time, each
handled before the next (the review's inline comment first, then the review), so the count does not
depend on how the job worker happens to interleave them. A call added to any step fails this test;
lower the limits when a step gets cheaper. Zero polling: no GET of the same URL (nor a GraphQL query) twice.
"""

from __future__ import annotations

from collections import Counter

import httpx

from tests.support.fake_github import graphql_operation
from tests.support.github_harness import (
    PATCH_V1,
    REPO,
    GitHubEnv,
    claim_new_task,
    github_people,
    read_task,
    submit_version,
)

PATCH_V2 = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1,2 +1,2 @@
 def greet(name):
-    return f'hello {name}'
+    return f'Hello, {name}!'
"""
FILES_V1 = {"src/app.py": "def greet(name):\n    return f'hello {name}'\n"}
FILES_V2 = {"src/app.py": "def greet(name):\n    return f'Hello, {name}!'\n"}

# Today's counts (issue 17's goal: at most 12; they were 16 and 15). Where they go, version 1: one
# GraphQL query reads the base branch's head with the patch's touched files and `.osiris.yml` at that
# commit (the check, the publish and the pre-review checks share it); a tree, a commit, the branch, the
# draft PR and its label. Version 2: a tree, a commit, the branch moved, and one GraphQL document with
# the PR's new body and the "version 2 pushed" comment (a patch applies to what version 1 wrote, known
# without a read). The review's inline comment comes with its own webhook. The merge: one GraphQL
# document (ready for review, then the merge pinned to the approved head), and the branch deleted.
LIMIT = {"patch": 12, "files": 12}


def record_calls(env: GitHubEnv) -> list[str]:
    """Every request OSIRIS's token sends to the fake, as "METHOD url"."""
    sent: list[str] = []
    handle = env.fake.handle

    async def recording(request: httpx.Request) -> httpx.Response:
        if "osiris-token" in request.headers.get("authorization", ""):
            what = f" {graphql_operation(request.content)}" if request.url.path == "/graphql" else ""
            sent.append(f"{request.method} {request.url}{what}")
        return await handle(request)

    env.fake.handle = recording  # type: ignore[method-assign]
    return sent


async def deliver_in_turn(env: GitHubEnv) -> None:
    """Each queued webhook, handled (its job run) before the next is delivered."""
    while env.fake.outbox:
        headers, body = env.fake.outbox.pop(0)
        r = await env.client.post("/api/v1/webhooks/github", content=body, headers=headers)
        assert r.status_code in (200, 202), r.text
        await env.drain()


async def lifecycle(env: GitHubEnv, factory, first, second) -> list[str]:
    admin_h, agent_h, _ = await github_people(factory)
    env.fake.tokens["alice-token"] = "alice"
    task_id = await claim_new_task(env, admin_h, agent_h)
    sent = record_calls(env)
    await submit_version(env, task_id, agent_h, first, "version one")
    await env.drain()
    await deliver_in_turn(env)
    async with env.fake.client("alice-token") as alice:
        r = await alice.post(
            f"/repos/{REPO}/pulls/1/reviews",
            json={
                "event": "REQUEST_CHANGES",
                "body": "again",
                "comments": [{"path": "src/app.py", "line": 2, "body": "this line"}],
            },
        )
        assert r.status_code == 200, r.text
    await deliver_in_turn(env)
    assert (await read_task(env, task_id, agent_h))["status"] == "IN_PROGRESS"
    await submit_version(env, task_id, agent_h, second, "version two")
    await env.drain()
    await deliver_in_turn(env)
    r = await env.client.post(f"/api/v1/tasks/{task_id}/approve", json={}, headers=admin_h)
    assert r.status_code == 200, r.text
    await env.drain()
    await deliver_in_turn(env)
    assert env.pr(1).merged
    assert (await read_task(env, task_id, admin_h))["status"] == "DONE"
    return sent


def _no_polling(sent: list[str]) -> None:
    reads = [c for c in sent if c.startswith("GET ") or c.endswith("/graphql query")]
    repeated = {call: n for call, n in Counter(reads).items() if n > 1}
    assert not repeated, repeated


async def test_a_patch_lifecycle_costs_at_most_its_calls(github: GitHubEnv, factory):
    sent = await lifecycle(github, factory, PATCH_V1, PATCH_V2)
    assert len(sent) <= LIMIT["patch"], "\n".join(sent)
    _no_polling(sent)
    # the review's inline comment came with its own webhook: not read again from GitHub
    assert not [c for c in sent if c.startswith("GET") and "/pulls/1/comments" in c]
    # ready for review and the merge are one document; the body and the version comment another
    graphql = [c.split("/graphql ")[1] for c in sent if "/graphql " in c]
    assert graphql == [
        "query",
        "updatePullRequest addComment",
        "markPullRequestReadyForReview mergePullRequest",
    ], graphql


async def test_a_files_lifecycle_costs_at_most_its_calls(github: GitHubEnv, factory):
    sent = await lifecycle(github, factory, FILES_V1, FILES_V2)
    assert len(sent) <= LIMIT["files"], "\n".join(sent)
    _no_polling(sent)


async def test_a_review_that_comes_before_its_comments_reads_them_from_github(github: GitHubEnv, factory):
    """GitHub does not promise the order: when the review's webhook is first, its inline comments
    are read from the pull request (a 500 there is retried), and arrive in the agent's feedback."""
    admin_h, agent_h, _ = await github_people(factory)
    github.fake.tokens["alice-token"] = "alice"
    task_id = await claim_new_task(github, admin_h, agent_h)
    await submit_version(github, task_id, agent_h, PATCH_V1, "version one")
    await github.drain()
    await deliver_in_turn(github)
    async with github.fake.client("alice-token") as alice:
        r = await alice.post(
            f"/repos/{REPO}/pulls/1/reviews",
            json={
                "event": "REQUEST_CHANGES",
                "body": "Nearly there.",
                "comments": [{"path": "src/app.py", "line": 2, "body": "Capitalise."}],
            },
        )
        assert r.status_code == 200, r.text
    github.fake.outbox.reverse()  # the review, then its comment
    github.fake.fail("GET .*/pulls/1/comments", "500", 1)
    await deliver_in_turn(github)
    assert all(f.times == 0 for f in github.fake.faults)
    r = await github.client.get(f"/api/v1/tasks/{task_id}/messages", headers=agent_h)
    feedback = [m for m in r.json() if m["meta"].get("kind") == "feedback"]
    assert len(feedback) == 1 and "src/app.py:2: Capitalise." in feedback[0]["body"]
    assert [c["path"] for c in feedback[0]["meta"]["comments"]] == ["src/app.py"]
    assert (await read_task(github, task_id, agent_h))["status"] == "IN_PROGRESS"
