"""GitHub, Twilio and Slack each fail a seeded share of OSIRIS's calls — 5xx, 429 with Retry-After,
GitHub's secondary and primary rate limits, timeouts and connection resets — while several lifecycles
run at once, from a WhatsApp or Slack request to a merged pull request and the requester's last
message. Everything is real except the providers, which are faked at the HTTP boundary."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from osiris.app import effects, jobs
from osiris.app.models import ChannelNotification, TaskEvent
from osiris.github_bridge.github_client import GitHub
from osiris.github_bridge.github_host import GitHubHost
from osiris.ingest import extension
from osiris.server import create_app
from tests.support.channel_fakes import FakeSlack, FakeTwilio, fixture
from tests.support.fake_github import FakeGitHub
from tests.support.github_harness import REPO as REPO_GH
from tests.support.github_harness import GitHubEnv, claim_new_task, github_people, read_task, submit_version

from .chaos import BEFORE, GITHUB, ChaosProxy, ChaosTransport, Schedule

SEED = 20261125
RATES = {"github": 0.15, "twilio": 0.35, "slack": 0.35}  # share of each provider's calls that fail
LIFECYCLES = 6
BOUND = 60.0  # seconds for all of them, faults included
REPO = "acme/widgets"
GH_SECRET = "whsec-" + secrets.token_hex(8)
PUBLIC = "https://osiris.example.com"
TWILIO_SID = "AC" + "b" * 32
TWILIO_TOKEN = "twilio-" + secrets.token_hex(8)
SLACK_SECRET = "slack-" + secrets.token_hex(8)
SLACK_TOKEN = "xoxb-" + secrets.token_hex(8)


class World:
    def __init__(self, tmp: Path, schedule: Schedule) -> None:
        self.schedule = schedule
        self.github = FakeGitHub(tmp, secret=GH_SECRET)
        self.github.create_repo(REPO, {"README.md": "# widgets\n"})
        self.github.tokens["alice-token"] = "alice"
        self.github_chaos = ChaosTransport(self.github.transport(), schedule, "github", GITHUB)
        self.twilio = FakeTwilio(TWILIO_SID, TWILIO_TOKEN)
        self.twilio_chaos = ChaosTransport(
            httpx.ASGITransport(app=self.twilio.app), schedule, "twilio", BEFORE
        )
        self.slack = FakeSlack(token=SLACK_TOKEN)
        self.slack_proxy = ChaosProxy(self.slack.port, schedule, "slack", ("503", "429", "reset-before"))


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[World]:
    w = World(tmp_path, Schedule(SEED, RATES))
    await w.slack.start()
    await w.slack_proxy.start()
    yield w
    await w.slack_proxy.stop()
    await w.slack.stop()


@pytest.fixture
async def osiris(settings, world: World) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    s = settings.model_copy(
        update={
            "server": {"public_url": PUBLIC},
            "github": {
                "webhook_secret": SecretStr(GH_SECRET),
                "token": SecretStr("osiris-token"),
                "api_url": "https://api.github.test",
                "repo": {"*": REPO},
                "retry_seconds": 1.0,
            },
            "twilio": {
                "auth_token": SecretStr(TWILIO_TOKEN),
                "account_sid": TWILIO_SID,
                "whatsapp_from": "whatsapp:+14155238886",
            },
            "slack": {
                "signing_secret": SecretStr(SLACK_SECRET),
                "bot_token": SecretStr(SLACK_TOKEN),
                "api_url": world.slack_proxy.url,
            },
            "channel": {"retry_seconds": 1.0, "rate_per_minute": 1000},
            # a retry is picked when its delay runs out, not at the next 5 s poll
            "job": {"poll_seconds": 0.5},
            "data_dir": settings.data_dir.parent / f"faults-{secrets.token_hex(4)}",
        }
    )
    app = create_app(s, run_background=False)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        runtime = app.state.runtime
        gh_http = httpx.AsyncClient(transport=world.github_chaos, timeout=5)
        runtime.services.code_host = GitHubHost(s, runtime.sessions, gh=GitHub(s, client=gh_http))
        await extension.services(runtime, twilio_transport=world.twilio_chaos)
        worker = jobs.Worker(runtime.dsn, jobs.JobContext(runtime.sessions, s, runtime.services))
        running = asyncio.create_task(worker.run(reconnect_seconds=0.2))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as client:
            yield client, runtime
        worker.stop()
        await asyncio.wait_for(running, 15)
        await gh_http.aclose()


# --- the people ----------------------------------------------------------------------------------


async def _people(client: httpx.AsyncClient, settings) -> dict[str, dict[str, str]]:
    login = {"username": "admin", "password": settings.auth.admin_password.get_secret_value()}
    r = await client.post("/api/v1/auth/token", data=login)
    admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
    out = {"admin": admin}
    for name, role, gh in [
        ("alice", "reviewer", "alice"),
        *[(f"agent{i}", "agent", None) for i in range(LIFECYCLES)],
    ]:
        r = await client.post(
            "/api/v1/users", json={"username": name, "role": role, "github_login": gh}, headers=admin
        )
        assert r.status_code == 201, r.text
        r = await client.post("/api/v1/tokens", json={"name": name, "username": name}, headers=admin)
        assert r.status_code == 201, r.text
        out[name] = {"Authorization": f"Bearer {r.json()['token']}"}
    return out


async def _whatsapp(client: httpx.AsyncClient, text: str, sender: str) -> httpx.Response:
    form = fixture("twilio_whatsapp_inbound.json")
    sid = "SM" + secrets.token_hex(16)
    form.update(Body=text, From=f"whatsapp:{sender}", WaId=sender.lstrip("+"), MessageSid=sid, SmsSid=sid)
    form["SmsMessageSid"] = sid
    path = "/api/v1/webhooks/twilio"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + path, form)
    return await client.post(path, data=form, headers={"X-Twilio-Signature": signature})


async def _slack(client: httpx.AsyncClient, text: str, user: str) -> tuple[httpx.Response, dict]:
    payload = fixture("slack_app_mention.json")
    payload["event_id"] = "Ev" + secrets.token_hex(5)
    payload["event"].update(text=f"<@U0LAN0Z89> {text}", user=user, ts=f"{time.time():.6f}")
    body = json.dumps(payload).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=ts, body=body),
    }
    return await client.post("/api/v1/webhooks/slack/events", content=body, headers=headers), payload


async def _until(what: str, check, *, every: float = 0.2) -> Any:
    while True:
        found = await check()
        if found:
            return found
        await asyncio.sleep(every)


async def _pump_webhooks(client: httpx.AsyncClient, fake: FakeGitHub) -> None:
    """GitHub delivering its webhooks to OSIRIS as they happen."""
    while True:
        sent, fake.outbox = fake.outbox, []
        for headers, body in sent:
            r = await client.post("/api/v1/webhooks/github", content=body, headers=headers)
            assert r.status_code in (200, 202), r.text
        await asyncio.sleep(0.1)


async def _lifecycle(i: int, client: httpx.AsyncClient, people: dict, world: World) -> dict[str, Any]:
    admin, agent = people["admin"], people[f"agent{i}"]
    title = f"chaos request {i}"
    if i % 2 == 0:
        sender = f"+1555000{i:04d}"
        r = await _whatsapp(client, title, sender)
        assert r.status_code == 200, r.text
        task_id = int(re.search(r"Task #(\d+) created", r.text).group(1))
        where = ("whatsapp", f"whatsapp:{sender}")
    else:
        r, payload = await _slack(client, title, f"UCHAOS{i}")
        assert r.status_code == 200, r.text

        async def created() -> int | None:
            listed = (await client.get("/api/v1/tasks?limit=200", headers=admin)).json()["items"]
            return next((t["id"] for t in listed if t["title"] == title), None)

        task_id = await _until("created", created)
        where = ("slack", payload["event"]["channel"], payload["event"]["ts"])

    r = await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)
    assert r.status_code == 200, r.text
    body = {
        "content": {f"chaos/{i}.txt": f"change {i}\n"},
        "summary": f"v1 of {i}",
        "idempotency_key": f"k{i}",
    }
    r = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json=body, headers=agent)
    assert r.status_code == 201, r.text
    again = await client.post(f"/api/v1/tasks/{task_id}/artifacts", json=body, headers=agent)  # a retry
    assert again.status_code == 200 and again.json()["created"] is False, again.text
    r = await client.post(f"/api/v1/tasks/{task_id}/messages", json={"body": f"question {i}?"}, headers=agent)
    assert r.status_code == 201, r.text

    if i % 3 == 0:  # the reviewer approves in OSIRIS, trying before the PR even exists

        async def approved() -> bool:
            r = await client.post(
                f"/api/v1/tasks/{task_id}/approve", json={"comment": "ok"}, headers=people["alice"]
            )
            if r.status_code == 409 and r.json()["code"] == "not_published":
                return False  # nothing shown to approve yet: approval waits for the publish job
            assert r.status_code == 200, r.text
            return True

        await _until("approved", approved)
    else:  # on GitHub, once the PR is there

        async def published() -> bool:
            versions = (await client.get(f"/api/v1/tasks/{task_id}/artifacts", headers=admin)).json()
            return bool(versions and versions[0]["pr_number"] and versions[0]["commit_sha"])

        await _until("published", published)
        versions = (await client.get(f"/api/v1/tasks/{task_id}/artifacts", headers=admin)).json()
        async with world.github.client("alice-token") as alice:
            r = await alice.post(
                f"/repos/{REPO}/pulls/{versions[0]['pr_number']}/reviews",
                json={"event": "APPROVE", "body": "lgtm"},
            )
            assert r.status_code == 200, r.text

    async def finished() -> bool:
        task = (await client.get(f"/api/v1/tasks/{task_id}", headers=admin)).json()
        kinds = [
            e["kind"] for e in (await client.get(f"/api/v1/tasks/{task_id}/events", headers=admin)).json()
        ]
        told = _received(world, where, task_id)
        return (
            task["status"] == "DONE"
            and "merged" in kinds
            and "message_delivered" in kinds  # the agent's question reached the PR and the requester
            and any("done and merged" in t for t in told)
        )

    await _until("done", finished)
    return {"task": task_id, "where": where}


def _received(world: World, where: tuple, task_id: int) -> list[str]:
    """What the requester of `task_id` received about it, in their channel (and Slack thread)."""
    about = re.compile(rf"Task #{task_id}\b")
    if where[0] == "whatsapp":
        texts = [c["form"]["Body"] for c in world.twilio.calls if c["form"]["To"] == where[1]]
    else:
        texts = [
            p["text"]
            for p in world.slack.posts
            if p["channel"] == where[1] and p.get("thread_ts") == where[2]
        ]
    return [t for t in texts if about.match(t)]


async def test_lifecycles_complete_while_every_provider_fails_a_share_of_calls(
    osiris, world: World, settings, record_property
):
    """Six lifecycles at once (three from WhatsApp, three from Slack; agents over REST, retrying
    a submission with the same key, asking a question; half approved by a GitHub review, half in
    OSIRIS, some before the PR exists) while GitHub, Twilio and Slack fail a seeded share of their
    calls (GitHub 15 %, the chat providers 35 %): every lifecycle ends DONE within the bound, with
    one branch and one PR per task, each notification the ledger calls sent received exactly once,
    and no PR comment twice."""
    client, runtime = osiris
    people = await _people(client, settings)
    pump = asyncio.create_task(_pump_webhooks(client, world.github))
    started = time.monotonic()
    try:
        done = await asyncio.wait_for(
            asyncio.gather(*(_lifecycle(i, client, people, world) for i in range(LIFECYCLES))), BOUND
        )
    finally:
        pump.cancel()
    took = time.monotonic() - started
    await asyncio.sleep(1.0)  # let any straggling job show itself

    tasks = {d["task"] for d in done}
    # GitHub: one branch (created once, whatever was retried) and one PR per task, all merged.
    created = Counter(
        c["body"]["ref"]
        for c in world.github_chaos.reached
        if c["key"] == f"POST /repos/{REPO}/git/refs" and c["status"] == 201
    )
    assert created == {f"refs/heads/osiris/task-{t}": 1 for t in tasks}, created
    heads = Counter(pr.head for pr in world.github.pulls.values())
    assert heads == {f"osiris/task-{t}": 1 for t in tasks}, heads
    assert all(pr.merged for pr in world.github.pulls.values())
    for i in range(LIFECYCLES):
        assert world.github.read_file(REPO, "main", f"chaos/{i}.txt") == f"change {i}\n"
    bodies = Counter(c["body"] for c in world.github.comments)
    assert all(n == 1 for n in bodies.values()), [b for b, n in bodies.items() if n > 1]
    for i, d in enumerate(done):
        mirrored = [b for b in bodies if f"question {i}?" in b]
        assert len(mirrored) == 1, (d, mirrored)

    # Channels: each message the ledger says was sent arrived once; nothing arrived that it does not know.
    async with runtime.sessions() as s:
        ledger = (await s.execute(select(ChannelNotification))).scalars().all()
        notified = await s.scalar(select(TaskEvent.id).where(TaskEvent.kind == "requester_notified").limit(1))
    assert notified is not None
    assert {r.state for r in ledger} == {"sent"}, [
        (r.key, r.state, r.detail) for r in ledger if r.state != "sent"
    ]
    twilio_sids = Counter(f"{c['form']['To']}|{c['form']['Body']}" for c in world.twilio.calls)
    slack_posts = Counter(f"{p['channel']}|{p.get('thread_ts')}|{p['text']}" for p in world.slack.posts)
    assert all(n == 1 for n in twilio_sids.values()), [k for k, n in twilio_sids.items() if n > 1]
    assert all(n == 1 for n in slack_posts.values()), [k for k, n in slack_posts.items() if n > 1]
    sent = Counter(r.channel for r in ledger)
    assert sent["whatsapp"] == len(world.twilio.calls) and sent["slack"] == len(world.slack.posts), sent
    for d in done:
        told = _received(world, d["where"], d["task"])
        assert sum("done and merged" in t for t in told) == 1, told
        assert sum("question" in t for t in told) == 1, told  # the agent's question, relayed once

    injected = world.schedule.injected
    for provider in ("github", "twilio", "slack"):
        assert sum(n for (p, _), n in injected.items() if p == provider) > 0, f"no fault reached {provider}"
    record_property(
        "lifecycles", f"{LIFECYCLES} (3 WhatsApp, 3 Slack), all DONE in {took:.1f} s (bound {BOUND:.0f} s)"
    )
    record_property(
        "seed, share of calls failed", f"{SEED}, " + ", ".join(f"{p} {r:.0%}" for p, r in RATES.items())
    )
    record_property(
        "faults injected",
        ", ".join(f"{p} {k}: {n}" for (p, k), n in sorted(injected.items())),
    )
    record_property("GitHub calls that reached the fake", len(world.github_chaos.reached))
    record_property(
        "notifications sent (ledger = received)", f"WhatsApp {sent['whatsapp']}, Slack {sent['slack']}"
    )
    record_property(
        "not injected",
        "a Twilio or Slack answer lost after the message went out: neither API takes an idempotency "
        "key, so a resend would duplicate it (notify.deliver_once: at least once at that point)",
    )


# --- one interleaving, made certain --------------------------------------------------------------


async def test_a_publish_still_retrying_when_the_task_is_approved_opens_nothing_again(
    github: GitHubEnv, factory, record_property
):
    """GitHub fails the publish job's first call; a reviewer tries to approve before the job's
    retry and is refused (`not_published`: nothing was shown to approve). Once published, the
    approval merges it and deletes the branch; a late, duplicate run of the publish job must not
    push the branch again nor open a second pull request."""
    admin_h, agent_h, _ = await github_people(factory)
    task_id = await claim_new_task(github, admin_h, agent_h)
    github.fake.fail("POST .*/git/trees", "500", 1)  # the publish job's first try fails ...
    github.host.gh.api.retry_seconds = 3.0  # ... and it retries in 3 s, when the merge is long done
    # whole files (a patch would no longer apply on the merged base, which hides the problem)
    submitted = await submit_version(github, task_id, agent_h, {"notes/late.txt": "late\n"}, "v1")
    r = await github.client.post(f"/api/v1/tasks/{task_id}/approve", json={"comment": "ok"}, headers=admin_h)
    assert r.status_code == 409 and r.json()["code"] == "not_published", r.text
    await github.drain()  # the first, failed publish
    await asyncio.sleep(3.5)
    await github.drain()  # the publish job's retry
    r = await github.client.post(f"/api/v1/tasks/{task_id}/approve", json={"comment": "ok"}, headers=admin_h)
    assert r.status_code == 200, r.text
    await github.drain()  # the merge
    ctx = jobs.JobContext(github.runtime.sessions, github.runtime.settings, github.runtime.services)
    payload = {"artifact_id": submitted["artifact"]["id"], "task_id": task_id}
    await effects.publish_artifact(payload, ctx)  # a duplicate run, late (e.g. a lost acknowledgement)
    assert (await read_task(github, task_id, admin_h))["status"] == "DONE"
    assert [(pr.head, pr.merged) for pr in github.fake.pulls.values()] == [(f"osiris/task-{task_id}", True)]
    assert (
        github.fake.repos[REPO_GH].rev(f"refs/heads/osiris/task-{task_id}") is None
    )  # deleted, not pushed again
    created = [x for x in github.fake.log if x[0] == "POST" and x[1].endswith("/git/refs") and x[2] == 201]
    assert len(created) == 1, github.fake.log
    async with github.runtime.sessions() as s:
        kinds = list(
            (
                await s.execute(
                    select(TaskEvent.kind).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)
                )
            ).scalars()
        )
    assert kinds.count("published") == 1 and "publish_skipped" in kinds, kinds
    record_property("the late publish", "skipped: task is DONE")
