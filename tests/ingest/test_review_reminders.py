"""Review reminders: a review waiting longer than the interval is announced again to its reviewers on
every channel they registered (the channel fakes at the HTTP and SMTP boundary), once per interval
across replicas, escalated to admins at the second interval, held in quiet hours, stopped the moment
anyone acts."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime, time, timedelta
from unittest.mock import ANY

import pytest
from sqlalchemy import func, select, text

from osiris.app import db, reminders
from osiris.app.models import ReviewReminder, Role, TaskEvent
from osiris.app.ratelimit import RateLimiter
from tests.support.rest import claimed_task

from .review_helpers import (
    event_kinds,
    fresh_task_ids,
    in_review,
    phone,
    scan,
    set_org,
    slack_address,
    submit,
    verified,
)
from .review_helpers import task as _task


@pytest.fixture(autouse=True)
def _fresh_rate_limit(request, monkeypatch):
    if "runtime" in request.fixturenames:
        runtime = request.getfixturevalue("runtime")
        monkeypatch.setattr(runtime.services, "channel_limiter", RateLimiter(1000))


@pytest.fixture(autouse=True)
async def _fresh_task_ids(runtime):
    await fresh_task_ids(runtime)


async def test_a_waiting_review_reaches_the_reviewer_on_every_channel_once(
    client, factory, runtime, drain, fake_slack, fake_twilio, fake_telegram, smtp_sink
):
    _, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    slack = await verified(runtime, reviewer, "slack", slack_address())
    number = phone()
    await verified(runtime, reviewer, "whatsapp", f"whatsapp:{number}")
    await verified(runtime, reviewer, "telegram", "telegram:777888999")
    await verified(runtime, reviewer, "email", "rita@example.com")
    task_id = await in_review(client, agent, files={"a.py": "x = 1\ny = 2\n", "b.py": "z = 3\n"})
    await drain()

    assert await scan(runtime, hours=3) == []  # not yet: the interval is four hours
    claimed = await scan(runtime, hours=5)
    assert len(claimed) == 1
    assert await scan(runtime, hours=5) == []  # the same interval is claimed once
    assert await scan(runtime, hours=7.9) == []
    await drain()

    url = f"https://osiris.example.com/tasks/{task_id}"
    [post] = fake_slack.posts
    assert post["channel"] == slack.split(":")[1]  # a direct message from the bot
    assert f"task #{task_id}" in post["text"] and "2 files, +3" in post["text"] and url in post["text"]
    blocks = post["blocks"] if isinstance(post["blocks"], list) else json.loads(post["blocks"])
    button = blocks[1]["elements"][0]
    assert button["action_id"] == "osiris_approve"
    assert json.loads(button["value"])["version"] == 1
    [sms] = fake_twilio.calls
    assert sms["form"]["To"] == f"whatsapp:{number}" and f"approve #{task_id}" in sms["form"]["Body"]
    [tg] = fake_telegram.sent
    assert int(tg["chat_id"]) == 777888999 and url in tg["text"]
    [mail] = smtp_sink.messages
    assert mail["to"] == ["rita@example.com"] and f"#{task_id}" in mail["message"].get_content()
    assert "Reply-To" not in mail["message"]  # a reviewer's reply is never the requester's follow-up
    # The email alone carries the code an answer by email must quote (From proves nothing).
    code_lines = [
        ln for ln in mail["message"].get_content().splitlines() if ln.startswith("osiris-review-code: ")
    ]
    assert len(code_lines) == 1 and len(code_lines[0].split(": ")[1]) == 32
    assert "osiris-review-code" not in post["text"] + sms["form"]["Body"] + tg["text"]
    assert (await event_kinds(runtime, task_id)).count("review_reminded") == 1

    await drain()  # nothing is sent twice
    assert len(fake_slack.posts) == 1 and len(fake_twilio.calls) == 1 and len(smtp_sink.messages) == 1


async def test_the_second_interval_escalates_to_admins(client, factory, runtime, drain, smtp_sink):
    _, agent = await factory.member(Role.AGENT)
    reviewer = await factory.user(Role.REVIEWER)
    admin = await factory.user(Role.ADMIN)
    await verified(runtime, reviewer, "email", "rev@example.com")
    await verified(runtime, admin, "email", "boss@example.com")
    task_id = await in_review(client, agent)
    await drain()

    await scan(runtime, hours=5)
    await drain()
    assert [m["to"] for m in smtp_sink.messages] == [["rev@example.com"]]
    smtp_sink.messages.clear()
    await scan(runtime, hours=9)
    await drain()
    assert sorted(m["to"][0] for m in smtp_sink.messages) == ["boss@example.com", "rev@example.com"]
    assert all(m["message"].get_content().startswith("Escalation") for m in smtp_sink.messages)
    async with runtime.sessions() as session:
        rows = (
            await session.execute(select(ReviewReminder).where(ReviewReminder.task_id == task_id))
        ).scalars()
        assert [(r.interval_no, r.escalated) for r in rows] == [(1, False), (2, True)]


async def test_reminders_stop_the_moment_anyone_acts(client, factory, runtime, drain, smtp_sink):
    _, agent = await factory.member(Role.AGENT)
    reviewer, reviewer_h = await factory.member(Role.REVIEWER)
    await verified(runtime, reviewer, "email", "rev2@example.com")
    task_id = await in_review(client, agent)
    await drain()

    assert len(await scan(runtime, hours=5)) == 1  # claimed and queued …
    r = await client.post(
        f"/api/v1/tasks/{task_id}/messages", json={"body": "looking now"}, headers=reviewer_h
    )
    assert r.status_code in (200, 201), r.text
    await drain()  # … but someone acted before it went out: nothing is sent
    assert smtp_sink.messages == []
    assert "review_reminded" not in await event_kinds(runtime, task_id)
    assert await scan(runtime, hours=3) == []  # the clock starts again from the message

    r = await client.post(
        f"/api/v1/tasks/{task_id}/request-changes", json={"feedback": "rename it"}, headers=reviewer_h
    )
    assert r.status_code == 200, r.text
    assert await scan(runtime, hours=50) == []  # not in review any more


async def test_quiet_hours_hold_reminders_until_they_end(client, factory, runtime, drain):
    _, agent = await factory.member(Role.AGENT)
    org = await factory.org()
    await in_review(client, agent)
    await drain()
    start = datetime.now(UTC) + timedelta(hours=5)
    quiet_from = (start - timedelta(hours=1)).time().replace(microsecond=0)
    quiet_to = (start + timedelta(hours=1)).time().replace(microsecond=0)
    await set_org(runtime, org.id, quiet_hours_start=quiet_from, quiet_hours_end=quiet_to, timezone="UTC")
    assert await scan(runtime, hours=5) == []  # inside the quiet hours (wrapping past midnight or not)
    assert len(await scan(runtime, hours=6.5)) == 1  # after them, in the same interval
    # the organization's own interval, and a repository's over it; 0 turns them off
    await set_org(runtime, org.id, quiet_hours_start=None, quiet_hours_end=None)


async def test_organization_and_repository_intervals(client, factory, runtime, drain):
    _, agent = await factory.member(Role.AGENT)
    org = await factory.org()
    task_id = await in_review(client, agent)
    await drain()
    await set_org(runtime, org.id, review_remind_after_seconds=3600)
    assert len(await scan(runtime, hours=1.5)) == 1
    await set_org(runtime, org.id, review_remind_after_seconds=0)
    assert await scan(runtime, hours=30) == []  # off for the organization
    async with db.transaction(runtime.sessions) as session:
        await session.execute(
            text("UPDATE repositories SET review_remind_after_seconds = 600 WHERE org_id = :o"), {"o": org.id}
        )
    claimed = await scan(runtime, hours=0.5)  # the repository's ten minutes win over the organization's off
    assert len(claimed) == 1
    async with runtime.sessions() as session:
        row = await session.get(ReviewReminder, claimed[0])
        assert (row.task_id, row.interval_no) == (task_id, 3)


async def test_replicas_scanning_at_once_claim_each_interval_once(client, factory, runtime, drain):
    _, agent = await factory.member(Role.AGENT)
    for _ in range(3):
        await in_review(client, agent)
    await drain()
    moment = datetime.now(UTC) + timedelta(hours=5)

    async def replica() -> list[int]:
        async with db.transaction(runtime.sessions) as session:
            return await reminders.scan_due(session, runtime.settings, now=moment)

    results = await asyncio.gather(*(replica() for _ in range(6)))
    assert sorted(i for r in results for i in r) == sorted({i for r in results for i in r})
    assert sum(len(r) for r in results) == 3
    async with runtime.sessions() as session:
        jobs = await session.scalar(
            text("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'remind_reviewers'")
        )
        assert jobs == 3
        assert await session.scalar(select(func.count()).select_from(ReviewReminder)) == 3


async def test_admins_set_the_policy_over_rest(client, factory):
    _, admin = await factory.member(Role.ADMIN)
    _, reviewer = await factory.member(Role.REVIEWER)
    body = {
        "remind_after_seconds": 7200,
        "quiet_hours_start": "22:00",
        "quiet_hours_end": "07:00",
        "timezone": "Europe/Paris",
    }
    r = await client.put("/api/v1/review-reminders", json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["quiet_hours_start"] == str(time(22, 0))
    assert (await client.put("/api/v1/review-reminders", json=body, headers=reviewer)).status_code == 403
    bad = {**body, "timezone": "Mars/Olympus"}
    assert (await client.put("/api/v1/review-reminders", json=bad, headers=admin)).status_code == 422
    r = await client.put(
        "/api/v1/review-reminders/repository",
        json={"name": "nope", "remind_after_seconds": 60},
        headers=admin,
    )
    assert r.status_code == 404


# --- a Slack channel of the organization or the repository --------------------------------------


async def test_the_review_channel_gets_every_interval_once_and_the_repositorys_wins(
    client, factory, runtime, drain, fake_slack, smtp_sink
):
    _, agent = await factory.member(Role.AGENT)
    _, admin = await factory.member(Role.ADMIN)
    reviewer = await factory.user(Role.REVIEWER)
    await verified(runtime, reviewer, "email", "rev-channel@example.com")
    policy = {"remind_after_seconds": None, "slack_channel": "T0001:C0ORGWIDE"}
    r = await client.put("/api/v1/review-reminders", json=policy, headers=admin)
    assert r.status_code == 200 and r.json()["slack_channel"] == "T0001:C0ORGWIDE", r.text
    for bad in ("C0ORGWIDE", "T0001:U0PERSON", "T0001:C0X <!channel>"):  # a channel, of a team
        r = await client.put("/api/v1/review-reminders", json={**policy, "slack_channel": bad}, headers=admin)
        assert r.status_code == 422, bad
    # the title is the requester's words: in a channel it must not ping everyone or link anywhere
    task_id = await in_review(client, agent, title="<!channel> urgent <https://evil.example|docs> & co")
    await drain()

    assert len(await scan(runtime, hours=5)) == 1
    await drain()
    [post] = fake_slack.posts  # the channel's message (the reviewer has email only)
    assert post["channel"] == "C0ORGWIDE" and f"task #{task_id}" in post["text"]
    blocks = post["blocks"] if isinstance(post["blocks"], list) else json.loads(post["blocks"])
    for words in (post["text"], blocks[0]["text"]["text"]):
        assert "<!channel>" not in words and "<https://evil" not in words
        assert "&lt;!channel&gt; urgent &lt;https://evil.example|docs&gt; &amp; co" in words
    assert json.loads(blocks[1]["elements"][0]["value"]) == {"task": task_id, "version": 1, "head": ANY}
    assert [m["to"] for m in smtp_sink.messages] == [["rev-channel@example.com"]]  # and the reviewer
    async with runtime.sessions() as session:
        data = await session.scalar(
            select(TaskEvent.data).where(TaskEvent.task_id == task_id, TaskEvent.kind == reminders.REMINDED)
        )
    assert {"review_channel": "T0001:C0ORGWIDE", "channel": "slack", "ok": True} in data["sent"]
    await drain()
    assert await scan(runtime, hours=7.9) == []
    await drain()
    assert len(fake_slack.posts) == 1  # once per interval, a retried job included

    # the repository's own channel wins over the organization's, from the next interval
    r = await client.post("/api/v1/repositories", json={"name": "default"}, headers=admin)
    assert r.status_code in (201, 409), r.text
    r = await client.put(
        "/api/v1/review-reminders/repository",
        json={"name": "default", "slack_channel": "T0001:C0REPO"},
        headers=admin,
    )
    assert r.status_code == 200 and r.json()["slack_channel"] == "T0001:C0REPO", r.text
    assert len(await scan(runtime, hours=9)) == 1
    await drain()
    assert [p["channel"] for p in fake_slack.posts] == ["C0ORGWIDE", "C0REPO"]
    assert fake_slack.posts[-1]["text"].startswith("Escalation")

    # nobody waits any more: no channel message either
    assert len(await scan(runtime, hours=13)) == 1
    reviewer_h = {"Authorization": f"Bearer {await factory.token(reviewer)}"}
    r = await client.post(f"/api/v1/tasks/{task_id}/messages", json={"body": "on it"}, headers=reviewer_h)
    assert r.status_code in (200, 201), r.text
    await drain()
    assert len(fake_slack.posts) == 2


# --- GitHub: the reminder is also a review request on the pull request ---------------------------

REQUESTED = "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers"
WITHDRAWN = "DELETE /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers"


def _notified(github) -> list[str]:
    """Whom GitHub notified of a review request, in order (not yet delivered): GitHub sends a
    `review_requested` webhook, as its notification, only when a login becomes requested."""
    out = []
    for headers, body in github.fake.outbox:
        payload = json.loads(body)
        if headers["x-github-event"] == "pull_request" and payload["action"] == "review_requested":
            out.append(payload["requested_reviewer"]["login"])
    return out


async def _person(factory, role: Role, login: str | None = None) -> tuple:
    user = await factory.user(role, github_login=login)
    return user, {"Authorization": f"Bearer {await factory.token(user)}"}


async def _on_github(github, client, factory) -> tuple[int, dict, str, str]:
    """A task filed by a reviewer mapped to a GitHub login, claimed by an agent mapped to another, in
    review as a draft PR on the fake: (task id, the requester's headers, their login, the agent's)."""
    tag = secrets.token_hex(3)
    requester_login, agent_login = f"req-{tag}", f"bot-agent-{tag}"
    _, requester_h = await _person(factory, Role.REVIEWER, requester_login)
    _, agent_h = await _person(factory, Role.AGENT, agent_login)
    task_id = await claimed_task(client, agent_h, creator_h=requester_h, title="tidy the readme")
    await submit(client, agent_h, task_id, {"README.md": "# widgets\n\nnow tidy\n"})
    await github.drain()
    return task_id, requester_h, requester_login, agent_login


async def _reminded(runtime, task_id: int) -> list[dict]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(TaskEvent.data)
            .where(TaskEvent.task_id == task_id, TaskEvent.kind == reminders.REMINDED)
            .order_by(TaskEvent.id)
        )
        return list(rows)


async def test_github_reviewers_get_one_review_request_per_interval(
    github, client, factory, runtime, smtp_sink
):
    tag = secrets.token_hex(3)
    rita, _ = await _person(factory, Role.REVIEWER, f"rita-{tag}")
    await _person(factory, Role.REVIEWER, f"bob-{tag}")
    await _person(factory, Role.ADMIN, f"boss-{tag}")
    await verified(runtime, rita, "email", f"rita-{tag}@example.com")
    task_id, requester_h, requester_login, agent_login = await _on_github(github, client, factory)

    assert len(await scan(runtime, hours=5)) == 1
    github.fake.outbox.clear()
    await github.drain()
    assert github.fake.calls[REQUESTED] == 1
    assert github.pr().requested_reviewers == [
        f"bob-{tag}",
        f"rita-{tag}",
    ]  # not the requester, not the agent
    assert _notified(github) == [f"bob-{tag}", f"rita-{tag}"]
    assert [m["to"] for m in smtp_sink.messages] == [[f"rita-{tag}@example.com"]]  # the chat reminder too
    [data] = await _reminded(runtime, task_id)
    assert data["sent"][-1]["code_host"] == {
        "pr_number": 1,
        "ok": True,
        "requested": [f"bob-{tag}", f"rita-{tag}"],
        "refused": [],
    }
    # GitHub's review_requested webhooks reach OSIRIS and change nothing (not someone acting)
    assert all(r.status_code < 300 for r in await github.deliver())
    assert await scan(runtime, hours=5) == [] and await scan(runtime, hours=7.9) == []
    await github.drain()
    assert github.fake.calls[REQUESTED] == 1  # one per interval

    assert len(await scan(runtime, hours=9)) == 1  # the second interval escalates: admins too
    await github.drain()
    assert github.fake.calls[REQUESTED] == 2
    assert github.pr().requested_reviewers == [f"bob-{tag}", f"boss-{tag}", f"rita-{tag}"]
    # GitHub would not notify bob and rita of a request they already have: theirs was removed and
    # made again (the fake checks both calls against GitHub's OpenAPI description), so all three
    # are notified now
    assert github.fake.calls[WITHDRAWN] == 2
    assert _notified(github) == [f"bob-{tag}", f"boss-{tag}", f"rita-{tag}"]
    assert not github.fake.violations
    assert requester_login not in github.pr().requested_reviewers
    assert agent_login not in github.pr().requested_reviewers

    assert len(await scan(runtime, hours=13)) == 1  # claimed and queued …
    r = await client.post(f"/api/v1/tasks/{task_id}/messages", json={"body": "on it"}, headers=requester_h)
    assert r.status_code in (200, 201), r.text
    await github.drain()  # … but someone acted before it went out: no request
    assert github.fake.calls[REQUESTED] == 2
    assert len(await _reminded(runtime, task_id)) == 2


async def test_github_request_review_keeps_to_the_tasks_reviewers(github, client, factory, runtime):
    tag = secrets.token_hex(3)
    await _person(factory, Role.REVIEWER, f"rita-{tag}")
    other = await factory.org(f"other-{tag}")
    await factory.user(Role.REVIEWER, org=other, github_login=f"elsewhere-{tag}")
    task_id, _, requester_login, agent_login = await _on_github(github, client, factory)
    task = await _task(runtime, task_id)
    asked = [requester_login, agent_login, f"elsewhere-{tag}", f"nobody-{tag}", f"rita-{tag}"]
    result = await github.host.request_review(task, asked)
    assert result["requested"] == [f"rita-{tag}"] and github.fake.calls[REQUESTED] == 1
    again = await github.host.request_review(task, asked)  # idempotent: GitHub keeps one request
    assert again["ok"] and github.pr().requested_reviewers == [f"rita-{tag}"]
    assert await github.host.request_review(task, [requester_login, agent_login]) == {
        "skipped": "no reviewer with a GitHub login"
    }
    assert github.fake.calls[REQUESTED] == 2


async def test_a_422_from_github_does_not_stop_the_other_reminders(
    github, client, factory, runtime, smtp_sink
):
    tag = secrets.token_hex(3)
    rita, _ = await _person(factory, Role.REVIEWER, f"rita-{tag}")
    await _person(factory, Role.REVIEWER, f"outsider-{tag}")
    await verified(runtime, rita, "email", f"rita-{tag}@example.com")
    github.fake.permissions[f"outsider-{tag}"] = "none"  # not a collaborator of the repository: 422
    task_id, *_ = await _on_github(github, client, factory)

    assert len(await scan(runtime, hours=5)) == 1
    await github.drain()
    assert [m["to"] for m in smtp_sink.messages] == [[f"rita-{tag}@example.com"]]
    assert github.fake.calls[REQUESTED] == 3  # both (refused), then each alone
    assert github.pr().requested_reviewers == [f"rita-{tag}"]
    [data] = await _reminded(runtime, task_id)
    assert data["sent"][-1]["code_host"]["refused"] == [f"outsider-{tag}"]

    rita_only = await _task(runtime, task_id)
    github.fake.permissions[f"rita-{tag}"] = "none"  # everyone refused: recorded, never raised
    result = await github.host.request_review(rita_only, [f"rita-{tag}", f"outsider-{tag}"])
    assert result["ok"] is False and result["refused"] == [f"outsider-{tag}", f"rita-{tag}"]


async def test_github_asking_to_wait_runs_the_reminder_again_later(
    github, client, factory, runtime, smtp_sink
):
    tag = secrets.token_hex(3)
    rita, _ = await _person(factory, Role.REVIEWER, f"rita-{tag}")
    await verified(runtime, rita, "email", f"rita-{tag}@example.com")
    task_id, *_ = await _on_github(github, client, factory)
    github.fake.fail(r"^POST /repos/.*/requested_reviewers$", "429")  # Retry-After: 1

    assert len(await scan(runtime, hours=5)) == 1
    await github.drain()
    assert github.pr().requested_reviewers == [f"rita-{tag}"]
    assert github.fake.calls[REQUESTED] == 1  # the 429 never reached GitHub's state
    assert len(smtp_sink.messages) == 1  # the retried job did not send the email again
    [data] = await _reminded(runtime, task_id)
    assert data["sent"][-1]["code_host"]["ok"] is True
