"""GitHub issues as a way in: GitHub's own `issues` / `issue_comment` example payloads, signed, and the
whole loop from a labelled issue to a merged PR and a closed issue against the GitHub fake."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from osiris.app.models import Delivery, Message, Role, Task
from tests.support.fake_github import BOT, Issue, example
from tests.support.github_harness import PATCH_V1 as PATCH
from tests.support.github_harness import PATCH_V2, REPO, GitHubEnv, post_webhook

from .ingest_helpers import issue_event


async def post(env: GitHubEnv, event: str, payload: dict, delivery: str):
    r = await post_webhook(env, event, payload, delivery)
    assert r.status_code in (200, 202), r.text
    return r


def comment_event(*, number: int, login: str, body: str, comment_id: int) -> dict:
    payload = example("issue_comment", "created")
    payload["repository"].update(full_name=REPO, name=REPO.split("/")[1])
    payload["issue"].update(number=number, state="open")
    payload["issue"].pop("pull_request", None)
    payload["comment"].update(id=comment_id, body=body)
    payload["comment"]["user"]["login"] = login
    payload["sender"]["login"] = login
    return payload


async def tasks(env: GitHubEnv) -> list[Task]:
    async with env.runtime.sessions() as session:
        return list((await session.execute(select(Task).order_by(Task.id))).scalars())


async def messages(env: GitHubEnv, task_id: int) -> list[Message]:
    async with env.runtime.sessions() as session:
        stmt = select(Message).where(Message.task_id == task_id).order_by(Message.id)
        return list((await session.execute(stmt)).scalars())


def issue_comments(env: GitHubEnv, number: int) -> list[dict]:
    return [c for c in env.fake.comments if c["_pr"] == (REPO, number)]


async def test_github_issue_examples_create_one_task_and_comments_follow_up(github: GitHubEnv, monkeypatch):
    monkeypatch.setattr(github.runtime.settings.github, "bot_login", BOT)
    github.fake.issues[(REPO, 7)] = Issue(REPO, 7, "Greeting should use an f-string", "", "carol", 4242)
    opened = issue_event("opened", number=7, login="carol", body="Please use an f-string in greet().")
    await post(github, "issues", opened, "d-opened")
    labeled = issue_event("labeled", number=7, login="carol", label="osiris", body=opened["issue"]["body"])
    for _ in range(3):  # GitHub redelivers: the same X-GitHub-Delivery each time
        await post(github, "issues", labeled, "d-labeled")
    await github.drain()
    [task] = await tasks(github)
    assert task.channel == "github" and task.channel_thread == f"{REPO}#7"
    assert task.requester == "github:carol" and task.status == "PENDING"
    assert task.title == "Greeting should use an f-string"
    assert task.description == "Please use an f-string in greet()."
    assert task.repo == github.runtime.settings.repos.default_repo
    async with github.runtime.sessions() as session:
        deliveries = (await session.execute(select(Delivery.provider))).scalars().all()
    assert sorted(deliveries) == ["github", "github", "github-issue"]  # two GitHub deliveries, one task
    [created] = issue_comments(github, 7)
    assert created["body"].startswith(f"Task #{task.id} created: {task.title}")
    assert created["user"]["login"] == BOT

    # The author's comment is a message for the agent; OSIRIS's own login and echo are not.
    await post(
        github,
        "issue_comment",
        comment_event(number=7, login="carol", body="Keep it short", comment_id=1),
        "c1",
    )
    await post(
        github, "issue_comment", comment_event(number=7, login=BOT, body="I am OSIRIS", comment_id=2), "c2"
    )
    echo = comment_event(number=7, login="someone", body="no marker, but our id", comment_id=created["id"])
    await post(github, "issue_comment", echo, "c3")
    await github.drain()
    [msg] = await messages(github, task.id)
    assert msg.body == "Keep it short" and msg.source == "github" and msg.direction == "to_agent"
    assert msg.author_name == "carol"

    # Another label later changes nothing; an unrelated issue without the label is ignored.
    await post(github, "issues", issue_event("labeled", number=7, login="carol", label="bug"), "d-bug")
    await post(github, "issues", issue_event("opened", number=8, login="dan", labels=("bug",)), "d-other")
    await github.drain()
    assert len(await tasks(github)) == 1

    # Taking the label off before work starts withdraws the request.
    await post(
        github, "issues", issue_event("unlabeled", number=7, login="maintainer", label="osiris"), "d-un"
    )
    await github.drain()
    [task] = await tasks(github)
    assert task.status == "REJECTED"
    assert "label was removed" in issue_comments(github, 7)[-1]["body"]


async def test_github_issue_full_loop_to_merged_pr_and_closed_issue(github: GitHubEnv, factory):
    fake = github.fake
    _, agent_h = await factory.member(Role.AGENT)
    await factory.user(Role.REVIEWER, github_login="alice")
    fake.tokens["carol-token"] = "carol"
    fake.tokens["alice-token"] = "alice"
    async with fake.client("carol-token") as carol:
        r = await carol.post(
            f"/repos/{REPO}/issues",
            json={"title": "Friendlier greeting", "body": "Use an f-string, asap", "labels": ["osiris"]},
        )
        assert r.status_code == 201, r.text
        number = r.json()["number"]

    async def settle() -> None:
        for _ in range(4):  # webhooks → jobs → comments → their echoes …
            await github.deliver()
            await github.drain()

    await settle()
    [task] = await tasks(github)
    assert (
        task.requester == "github:carol" and task.priority == 3 and task.channel_thread == f"{REPO}#{number}"
    )

    async with fake.client("carol-token") as carol:
        await carol.post(f"/repos/{REPO}/issues/{number}/comments", json={"body": "Also for main()"})
    await settle()
    assert [m.body for m in await messages(github, task.id)] == ["Also for main()"]

    r = await github.client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent_h)
    assert r.status_code == 200, r.text
    await settle()
    r = await github.client.post(
        f"/api/v1/tasks/{task.id}/artifacts", json={"content": PATCH, "summary": "f-string"}, headers=agent_h
    )
    assert r.status_code == 201, r.text
    await settle()
    [pr] = [p for (repo, _), p in fake.pulls.items() if repo == REPO]
    assert f"Closes #{number}" in pr.body.splitlines()
    pr_url = f"https://github.test/{REPO}/pull/{pr.number}"

    # The issue's author approving their own request does not count (separation of duties).
    await factory.user(Role.REVIEWER, github_login="carol")
    async with fake.client("carol-token") as carol:
        await carol.post(f"/repos/{REPO}/pulls/{pr.number}/reviews", json={"event": "APPROVE", "body": "ok!"})
    await settle()
    assert (await tasks(github))[0].status == "REVIEW"

    async with fake.client("alice-token") as alice:
        await alice.post(
            f"/repos/{REPO}/pulls/{pr.number}/reviews",
            json={"event": "REQUEST_CHANGES", "body": "Capitalise"},
        )
    await settle()
    assert (await tasks(github))[0].status == "IN_PROGRESS"
    r = await github.client.post(
        f"/api/v1/tasks/{task.id}/artifacts", json={"content": PATCH_V2, "summary": "v2"}, headers=agent_h
    )
    assert r.status_code == 201, r.text
    await settle()
    async with fake.client("alice-token") as alice:
        await alice.post(
            f"/repos/{REPO}/pulls/{pr.number}/reviews", json={"event": "APPROVE", "body": "lgtm"}
        )
    await settle()

    [task] = await tasks(github)
    assert task.status == "DONE" and pr.merged
    assert fake.issues[(REPO, number)].state == "closed"  # "Closes #N" closed it on merge
    assert fake.read_file(REPO, "main", "src/app.py").splitlines()[1] == "    return f'Hello, {name}!'"
    said = [
        c["body"].split("\n\n<!--")[0] for c in issue_comments(github, number) if c["user"]["login"] == BOT
    ]
    name = f"Task #{task.id} ({task.title})"
    assert said == [
        f"Task #{task.id} created: {task.title}",
        f"{name} was picked up by an agent and is being worked on.",
        f"{name} is ready for review. {pr_url}",
        f"{name}: the reviewer asked for changes; the agent is on it.",
        f"{name} is ready for review. {pr_url}",
        f"{name} is done and merged. {pr_url}",
    ]
    # None of OSIRIS's own comments came back as messages.
    assert [m.body for m in await messages(github, task.id) if m.source == "github"] == ["Also for main()"]


@pytest.mark.parametrize("separation", [True, False])
async def test_github_separation_of_duties_setting(github: GitHubEnv, factory, monkeypatch, separation):
    monkeypatch.setattr(github.runtime.settings.tasks, "separation_of_duties", separation)
    fake = github.fake
    _, agent_h = await factory.member(Role.AGENT)
    await factory.user(Role.REVIEWER, github_login="carol")  # a reviewer who also files issues
    fake.tokens["carol-token"] = "carol"
    async with fake.client("carol-token") as carol:
        await carol.post(
            f"/repos/{REPO}/issues", json={"title": "Tidy", "body": "tidy it", "labels": ["osiris"]}
        )
    await github.deliver()
    await github.drain()
    [task] = await tasks(github)
    await github.client.post(f"/api/v1/tasks/{task.id}/claim", headers=agent_h)
    r = await github.client.post(
        f"/api/v1/tasks/{task.id}/artifacts", json={"content": PATCH}, headers=agent_h
    )
    assert r.status_code == 201, r.text
    await github.drain()
    [pr] = fake.pulls.values()
    async with fake.client("carol-token") as carol:
        await carol.post(
            f"/repos/{REPO}/pulls/{pr.number}/reviews", json={"event": "APPROVE", "body": "mine"}
        )
    await github.deliver()
    await github.drain()
    assert (await tasks(github))[0].status == ("REVIEW" if separation else "DONE")


async def test_github_closing_the_issue_cancels_only_before_work_starts(github: GitHubEnv, factory):
    fake = github.fake
    _, agent_h = await factory.member(Role.AGENT)
    fake.tokens["carol-token"] = "carol"
    async with fake.client("carol-token") as carol:
        for title in ("First", "Second"):
            await carol.post(
                f"/repos/{REPO}/issues", json={"title": title, "body": "x", "labels": ["osiris"]}
            )
    await github.deliver()
    await github.drain()
    first, second = await tasks(github)
    r = await github.client.post(f"/api/v1/tasks/{second.id}/claim", headers=agent_h)
    assert r.status_code == 200
    async with fake.client("carol-token") as carol:
        for task in (first, second):
            number = int(task.channel_thread.rpartition("#")[2])
            await carol.patch(f"/repos/{REPO}/issues/{number}", json={"state": "closed"})
    await github.deliver()
    await github.drain()
    first, second = await tasks(github)
    assert first.status == "REJECTED" and second.status == "IN_PROGRESS"
