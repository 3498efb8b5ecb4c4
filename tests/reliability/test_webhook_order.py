"""GitHub webhooks redelivered, reordered, or about pull requests OSIRIS does not know: each has the
right single effect or is cleanly ignored. GitHub's own example payloads (patched by the GitHub fake
with its state), signed with the webhook secret, posted to the real webhook route; jobs drained."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from osiris.app.models import Artifact, Delivery, Message, Task, TaskEvent
from tests.support.fake_github import BOT, example, hook_headers
from tests.support.github_harness import (
    PATCH_V1,
    PATCH_V2,
    REPO,
    SECRET,
    GitHubEnv,
    claim_new_task,
    github_people,
    published_task,
    read_task,
    submit_version,
)

HOOK = "/api/v1/webhooks/github"


# --- helpers -------------------------------------------------------------------------------------


async def _post(env: GitHubEnv, headers: dict[str, str], body: bytes) -> int:
    r = await env.client.post(HOOK, content=body, headers=headers)
    return r.status_code


def _take(env: GitHubEnv, event: str | None = None) -> list[tuple[dict[str, str], bytes]]:
    """The queued webhooks (of one event name), removed from the fake's outbox."""
    taken = [(h, b) for h, b in env.fake.outbox if event is None or h["x-github-event"] == event]
    env.fake.outbox = [x for x in env.fake.outbox if x not in taken]
    return taken


def _signed(event: str, payload: dict[str, Any], delivery: str | None = None) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return hook_headers(SECRET, event, body, delivery), body


async def _snapshot(env: GitHubEnv) -> dict[str, Any]:
    """Everything a webhook could change in OSIRIS, and what OSIRIS asked of GitHub."""
    async with env.runtime.sessions() as s:
        tasks = (await s.execute(select(Task.id, Task.status).order_by(Task.id))).all()
        events = (await s.execute(select(TaskEvent.id, TaskEvent.kind).order_by(TaskEvent.id))).all()
        messages = (await s.execute(select(Message.id, Message.body).order_by(Message.id))).all()
        artifacts = (
            await s.execute(
                select(Artifact.id, Artifact.commit_sha, Artifact.pr_number).order_by(Artifact.id)
            )
        ).all()
        deliveries = await s.scalar(select(func.count()).select_from(Delivery))
    return {
        "tasks": tasks,
        "events": events,
        "messages": messages,
        "artifacts": artifacts,
        "deliveries": deliveries,
        "github_calls": env.osiris_calls,
        "comments": len(env.fake.comments),
        "merged": sorted(n for (_, n), pr in env.fake.pulls.items() if pr.merged),
    }


async def _kinds(env: GitHubEnv, task_id: int) -> list[str]:
    async with env.runtime.sessions() as s:
        rows = await s.execute(
            select(TaskEvent.kind).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)
        )
        return list(rows.scalars())


async def _messages(env: GitHubEnv, task_id: int) -> list[Message]:
    async with env.runtime.sessions() as s:
        rows = await s.execute(select(Message).where(Message.task_id == task_id).order_by(Message.id))
        return list(rows.scalars())


def _merge_calls(env: GitHubEnv) -> int:
    """Merges OSIRIS made (GitHub refuses a merge document's merge of a PR merged already)."""
    return len([who for who, why in env.fake.merges if who == BOT and why is None])


# --- reordered -----------------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", ["APPROVE", "REQUEST_CHANGES"])
async def test_review_delivered_before_the_pr_opened_event_counts_once(
    github: GitHubEnv, factory, verdict, record_property
):
    """A review (approved / changes requested) arrives before `pull_request.opened` for OSIRIS's own PR,
    and is redelivered after it: the review counts once; the late opened event changes nothing."""
    task_id, admin_h, _ = await published_task(github, factory)
    github.fake.emit_pr("opened", github.pr(1), BOT)  # GitHub's opened event, still undelivered
    [opened] = _take(github, "pull_request")
    async with github.fake.client("alice-token") as alice:
        r = await alice.post(f"/repos/{REPO}/pulls/1/reviews", json={"event": verdict, "body": "Reviewed."})
        assert r.status_code == 200, r.text
    [review] = _take(github, "pull_request_review")

    assert await _post(github, *review) == 202
    await github.drain()
    expected = "DONE" if verdict == "APPROVE" else "IN_PROGRESS"
    assert (await read_task(github, task_id, admin_h))["status"] == expected
    echoes = _take(github)  # the merge's own `closed` echo, delivered with the late ones
    before = await _snapshot(github)

    assert await _post(github, *opened) == 202  # the opened event, late
    assert await _post(github, *review) == 202  # and GitHub redelivers the review
    for echo in echoes:
        assert await _post(github, *echo) == 202
    await github.drain()
    after = await _snapshot(github)
    # nothing changed but the new deliveries' rows (the redelivered review adds none)
    assert after == {**before, "deliveries": before["deliveries"] + 1 + len(echoes)}
    kinds = await _kinds(github, task_id)
    move = "approve" if verdict == "APPROVE" else "request_changes"
    assert kinds.count(move) == 1, kinds
    if verdict == "APPROVE":
        assert _merge_calls(github) == 1 and github.pr(1).merged
        assert kinds.count("merged") == 1
    else:
        feedback = [m for m in await _messages(github, task_id) if m.meta.get("kind") == "feedback"]
        assert [m.body for m in feedback] == ["Reviewed."]
        assert not github.pr(1).merged
    record_property("order", "review, opened, review again")
    record_property("task events after the late deliveries", "unchanged")


async def test_merge_on_github_delivered_before_the_approving_review_is_done_once(
    github: GitHubEnv, factory, record_property
):
    """A person approves and merges on GitHub; the `closed` (merged) webhook arrives before the review,
    both are redelivered: DONE once, no merge attempted by OSIRIS, the late approval changes nothing."""
    task_id, admin_h, _ = await published_task(github, factory)
    async with github.fake.client("alice-token") as alice:
        r = await alice.post(f"/repos/{REPO}/pulls/1/reviews", json={"event": "APPROVE", "body": "ok"})
        assert r.status_code == 200, r.text
        github.pr(1).draft = False
        r = await alice.put(f"/repos/{REPO}/pulls/1/merge", json={"merge_method": "merge"})
        assert r.status_code == 200, r.text
    [review] = _take(github, "pull_request_review")
    [closed] = _take(github, "pull_request")
    for hook in (closed, review, closed, review):
        assert await _post(github, *hook) == 202
    await github.drain()
    assert (await read_task(github, task_id, admin_h))["status"] == "DONE"
    kinds = await _kinds(github, task_id)
    assert kinds.count("approve") == 1, kinds
    assert kinds.count("merged") == 1, kinds
    assert _merge_calls(github) == 0  # alice merged; OSIRIS only recorded it
    assert len(github.fake.pulls) == 1
    async with github.runtime.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Delivery)) == 2
    # (the jobs may run in either order: the review approves and the close finds it DONE, or the
    # close approves and the review is a note "not counted: task is DONE")
    record_property("order", "closed (merged), review, both again")


# --- not ours ------------------------------------------------------------------------------------


def _pr_event(kind: str, action: str, repo: str, number: int, head: str, login: str) -> dict[str, Any]:
    """A GitHub example payload of `kind`/`action`, moved to `repo`#`number` on branch `head`."""
    payload = example(kind, action)
    owner, name = repo.split("/")
    payload["repository"].update({"full_name": repo, "name": name})
    payload["repository"]["owner"]["login"] = owner
    payload["sender"]["login"] = login
    if "pull_request" in payload:
        pr = payload["pull_request"]
        pr.update({"number": number, "state": "open", "merged": False})
        pr["head"] = {**pr["head"], "ref": head}
        pr["user"] = {**pr["user"], "login": BOT}
    if "issue" in payload:
        payload["issue"].update({"number": number})
        payload["issue"]["pull_request"] = {"url": f"https://api.github.test/repos/{repo}/pulls/{number}"}
    return payload


def _foreign_events(repo: str, number: int, head: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for state in ("approved", "changes_requested", "commented"):
        p = _pr_event("pull_request_review", "submitted", repo, number, head, "alice")
        p["review"].update({"state": state, "body": f"{state} on {repo}#{number}", "id": 900000 + number})
        p["review"]["user"] = {**p["review"]["user"], "login": "alice"}
        out.append(("pull_request_review", p))
    p = _pr_event("pull_request_review_comment", "created", repo, number, head, "alice")
    p["comment"].update({"body": f"inline on {repo}#{number}", "id": 910000 + number})
    p["comment"]["user"] = {**p["comment"]["user"], "login": "alice"}
    out.append(("pull_request_review_comment", p))
    for i, body in enumerate(("/approve", f"plain comment on {repo}#{number}")):
        p = _pr_event("issue_comment", "created", repo, number, head, "alice")
        p["comment"].update({"body": body, "id": 920000 + 10 * number + i})
        p["comment"]["user"] = {**p["comment"]["user"], "login": "alice"}
        out.append(("issue_comment", p))
    for merged in (False, True):
        p = _pr_event("pull_request", "closed", repo, number, head, "alice")
        p["pull_request"].update({"state": "closed", "merged": merged})
        p["pull_request"]["merged_by"] = {**p["sender"], "login": "alice"} if merged else None
        out.append(("pull_request", p))
    p = _pr_event("pull_request", "reopened", repo, number, head, "alice")
    out.append(("pull_request", p))
    return out


async def test_events_for_an_unknown_pr_or_an_unserved_repository_change_nothing(
    github: GitHubEnv, factory, record_property
):
    """Reviews (approve, request changes, comment), inline and PR comments (`/approve` too), closes
    (merged or not) and reopens for PR numbers OSIRIS never opened in its repository, and for a
    repository it does not serve (even on a branch named like one of its tasks): 2xx; only the
    served repository's deliveries are recorded; no task, event, message or GitHub call follows."""
    task_id, admin_h, _ = await published_task(github, factory)
    async with github.fake.client("alice-token") as alice:  # a task in REVIEW that a stray /approve could hit
        await alice.post(f"/repos/{REPO}/issues/1/comments", json={"body": "hello"})
    await github.deliver()
    await github.drain()
    before = await _snapshot(github)
    assert before["tasks"] == [(task_id, "REVIEW")]

    served = [
        *_foreign_events(REPO, 77, "feature/by-hand"),  # a person's PR in the same repository
        *_foreign_events(REPO, 78, "osiris/task-999999"),  # named like a task that does not exist
        *_foreign_events(REPO, 79, f"osiris/task-{task_id}"),  # our task's branch name, another PR
    ]
    unserved = [
        *_foreign_events("someone/else", 1, f"osiris/task-{task_id}"),  # same number and branch name
        *_foreign_events("someone/else", 2, "main"),
    ]
    statuses = []
    for event, payload in [*served, *unserved]:
        statuses.append(await _post(github, *_signed(event, payload)))
    assert set(statuses) <= {200, 202}, statuses
    await github.drain()
    after = await _snapshot(github)
    assert after == {**before, "deliveries": before["deliveries"] + len(served)}
    record_property("deliveries sent", len(served) + len(unserved))
    record_property("recorded (served repository)", len(served))


# --- redelivered ---------------------------------------------------------------------------------


async def test_the_same_delivery_five_times_interleaved_with_others_has_one_effect(
    github: GitHubEnv, factory, record_property
):
    """One `changes_requested` review delivered five times, concurrently and interleaved with other
    deliveries for the same and another task (each of those also sent twice): each has one effect."""
    admin_h, agent_h, _ = await github_people(factory)
    github.fake.tokens["alice-token"] = "alice"
    first = await claim_new_task(github, admin_h, agent_h)
    await submit_version(github, first, agent_h, PATCH_V1, "v1")
    _, other_agent = await factory.member("agent")
    second = await claim_new_task(github, admin_h, other_agent)
    await submit_version(github, second, other_agent, {"notes/b.txt": "b\n"}, "files")
    await github.drain()
    assert {github.pr(1).head, github.pr(2).head} == {f"osiris/task-{first}", f"osiris/task-{second}"}
    n1 = 1 if github.pr(1).head == f"osiris/task-{first}" else 2
    n2 = 3 - n1

    async with github.fake.client("alice-token") as alice:
        await alice.post(
            f"/repos/{REPO}/pulls/{n1}/reviews", json={"event": "REQUEST_CHANGES", "body": "Redo."}
        )
        for i in range(3):
            await alice.post(f"/repos/{REPO}/issues/{n2}/comments", json={"body": f"note {i} on the other"})
            await alice.post(f"/repos/{REPO}/issues/{n1}/comments", json={"body": f"note {i} on the first"})
    [review] = _take(github, "pull_request_review")
    others = _take(github)
    sends = [review] * 5 + others * 2
    order = [sends[i] for i in (0, 5, 1, 6, 7, 2, 8, 9, 3, 10, 11, 4, 12, 13, 14, 15, 16)]
    assert sorted(map(id, order)) == sorted(map(id, sends))
    statuses = await asyncio.gather(*(_post(github, h, b) for h, b in order))
    assert set(statuses) == {202}
    await github.drain()

    assert (await read_task(github, first, agent_h))["status"] == "IN_PROGRESS"
    assert (await read_task(github, second, agent_h))["status"] == "REVIEW"
    assert (await _kinds(github, first)).count("request_changes") == 1
    first_bodies = [m.body for m in await _messages(github, first)]
    second_bodies = [m.body for m in await _messages(github, second)]
    assert first_bodies.count("Redo.") == 1
    assert sorted(b for b in first_bodies if b.startswith("note")) == [
        f"note {i} on the first" for i in range(3)
    ]
    assert sorted(second_bodies) == [f"note {i} on the other" for i in range(3)]
    async with github.runtime.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Delivery)) == 1 + len(others)
    record_property("posts", len(order))
    record_property("distinct deliveries", 1 + len(others))


# --- stale approvals -----------------------------------------------------------------------------


@pytest.mark.parametrize("newer", ["published", "not yet published"])
async def test_an_approval_of_an_older_version_does_not_approve_the_newer(
    github: GitHubEnv, factory, newer, record_property
):
    """Version 1 is sent back, version 2 is submitted, then an approval for version 1's head commit
    arrives (late, or from a reviewer looking at the old diff) — before and after version 2 reached
    GitHub. It must not approve (and merge) version 2, which nobody reviewed; an approval of version
    2's own head still does."""
    task_id, admin_h, agent_h = await published_task(github, factory)
    v1_sha = github.fake.repos[REPO].rev(f"refs/heads/osiris/task-{task_id}")
    async with github.fake.client("alice-token") as alice:
        await alice.post(f"/repos/{REPO}/pulls/1/reviews", json={"event": "REQUEST_CHANGES", "body": "No."})
    await github.deliver()
    await github.drain()
    assert (await read_task(github, task_id, agent_h))["status"] == "IN_PROGRESS"

    await submit_version(github, task_id, agent_h, PATCH_V2, "v2")
    if newer == "published":
        await github.drain()
        assert github.fake.repos[REPO].rev(f"refs/heads/osiris/task-{task_id}") != v1_sha
    else:  # GitHub is slow to take version 2: its publish job keeps retrying meanwhile
        github.fake.fail("POST .*/git/trees", "500", 3)
    async with github.fake.client("alice-token") as alice:
        r = await alice.post(
            f"/repos/{REPO}/pulls/1/reviews",
            json={"event": "APPROVE", "body": "v1 is fine", "commit_id": v1_sha},
        )
        assert r.status_code == 200, r.text
    [stale] = _take(github, "pull_request_review")
    assert await _post(github, *stale) == 202
    await github.drain()

    task = await read_task(github, task_id, admin_h)
    assert task["status"] == "REVIEW", "an approval of version 1 approved version 2"
    assert "approve" not in await _kinds(github, task_id)
    assert not github.pr(1).merged and _merge_calls(github) == 0
    messages = await _messages(github, task_id)
    notes = [m.body for m in messages if "not counted" in m.body and m.source == "github_review"]
    code = "stale_approval" if newer == "published" else "not_published"
    assert len(notes) == 1 and code in notes[0], notes
    replies = [m.body for m in messages if m.source == "approvals"]  # mirrored on the PR
    assert len(replies) == 1 and code in replies[0], replies

    v2_sha = github.fake.repos[REPO].rev(f"refs/heads/osiris/task-{task_id}")
    assert v2_sha != v1_sha
    async with github.fake.client("alice-token") as alice:
        await alice.post(
            f"/repos/{REPO}/pulls/1/reviews", json={"event": "APPROVE", "body": "v2 ok", "commit_id": v2_sha}
        )
    await github.deliver()
    await github.drain()
    assert (await read_task(github, task_id, admin_h))["status"] == "DONE"
    assert github.pr(1).merged
    record_property("version 2 when the stale approval came", newer)
