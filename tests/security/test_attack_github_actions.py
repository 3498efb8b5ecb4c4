"""Attack: the agent (or the requester) acts on GitHub with its own login to get past the human gate.

Driven through the real app: webhooks built from GitHub's own example payloads by the GitHub fake,
signed with the real secret, received by the webhook route and run as the `github_event` job. A
merge, close or reopen by the task's agent, by the requester, or by a login that is not an approver
never counts as a reviewer's decision: it is recorded as the person who did it, the task stays
where it was, and the PR is put back. A real reviewer's merge, close and reopen work as before.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from osiris.app.models import Role, Task, TaskEvent, User
from tests.support.fake_github import Issue
from tests.support.github_harness import PATCH_V1, REPO, GitHubEnv, read_task, submit_version
from tests.support.portal_helpers import PASSWORD, sign_in

AGENT_LOGIN = "mallory-agent"


class Setup:
    def __init__(self, env: GitHubEnv, admin: User, admin_h: dict, agent: User, agent_h: dict) -> None:
        self.env, self.admin, self.admin_h, self.agent, self.agent_h = env, admin, admin_h, agent, agent_h

    async def events(self, task_id: int) -> list[dict]:
        r = await self.env.client.get(f"/api/v1/tasks/{task_id}/events", headers=self.admin_h)
        assert r.status_code == 200, r.text
        return r.json()

    async def act(self, token: str, method: str, path: str, json: dict) -> None:
        async with self.env.fake.client(token) as who:
            r = await who.request(method, f"/repos/{REPO}{path}", json=json)
            assert r.status_code in (200, 201), r.text
        await self.settle()

    async def settle(self) -> None:
        """Deliver what GitHub sent, run the jobs, and again for the echoes of what OSIRIS did."""
        for _ in range(3):
            await self.env.deliver()
            await self.env.drain()


async def _setup(env: GitHubEnv, factory, *, agent_org=None) -> Setup:
    admin = await factory.user(Role.ADMIN, password=PASSWORD)
    admin_h = {"Authorization": f"Bearer {await factory.token(admin)}"}
    agent = await factory.user(Role.AGENT, github_login=AGENT_LOGIN)
    agent_h = {"Authorization": f"Bearer {await factory.token(agent)}"}
    await factory.user(Role.REVIEWER, github_login="alice")
    env.fake.tokens.update({"agent-token": AGENT_LOGIN, "alice-token": "alice", "bob-token": "bob"})
    return Setup(env, admin, admin_h, agent, agent_h)


async def _in_review(s: Setup, *, requester: str | None = None) -> int:
    body = {"title": "Friendlier greeting", "description": "say hello nicely"}
    if requester is not None:
        body["requester"] = requester
    r = await s.env.client.post("/api/v1/tasks", json=body, headers=s.admin_h)
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    r = await s.env.client.post(f"/api/v1/tasks/{task_id}/claim", headers=s.agent_h)
    assert r.status_code == 200, r.text
    await submit_version(s.env, task_id, s.agent_h, PATCH_V1, "v1")
    await s.env.drain()
    assert (await read_task(s.env, task_id, s.admin_h))["status"] == "REVIEW"
    s.env.pr(1).draft = False  # ready on GitHub, so that whoever has write access can merge it
    return task_id


async def _actor_id(env: GitHubEnv, event_id: int) -> int | None:
    async with env.runtime.sessions() as session:
        return (await session.get(TaskEvent, event_id)).actor_id


def _no_reviewer_decision(events: list[dict], login: str) -> None:
    kinds = [e["kind"] for e in events]
    assert "approve" not in kinds and "cancel" not in kinds and "reopen" not in kinds, kinds
    assert not [e for e in events if e["to_status"] in ("DONE", "REJECTED")]
    assert not [e for e in events if e["actor_name"] == f"github:{login}"]  # never a reviewer's name


@pytest.mark.parametrize("approvers", ["mapped", "write"])
async def test_agent_login_merge_is_flagged_not_approved(
    github: GitHubEnv, factory, app, monkeypatch, approvers
):
    monkeypatch.setattr(github.runtime.settings.github, "approvers", approvers)
    github.fake.permissions[AGENT_LOGIN] = "write"  # it can merge on GitHub; that is not a review
    s = await _setup(github, factory)
    task_id = await _in_review(s)

    await s.act("agent-token", "PUT", "/pulls/1/merge", {"merge_method": "merge"})
    assert github.pr(1).merged
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REVIEW"
    events = await s.events(task_id)
    _no_reviewer_decision(events, AGENT_LOGIN)
    [flag] = [e for e in events if e["kind"] == "unapproved_merge"]
    assert flag["actor_name"] == s.agent.username
    assert await _actor_id(github, flag["id"]) == s.agent.id
    assert flag["data"]["flagged"] is True and flag["data"]["github_login"] == AGENT_LOGIN
    assert flag["data"]["standing"] == "agent" and flag["data"]["pr_number"] == 1
    assert flag["from_status"] is None and flag["to_status"] is None

    # The audit log and the task page show it to a person.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://osiris.test"
    ) as web:
        signed = await sign_in(web, s.admin.username)
        assert signed.status_code == 303, signed.text[:500]
        audit = await web.get("/admin/audit", params={"kind": "unapproved_merge"})
        assert audit.status_code == 200
        assert f'href="/tasks/{task_id}"' in audit.text and s.agent.username in audit.text
        assert "flagged" in audit.text
        page = await web.get(f"/tasks/{task_id}")
        assert page.status_code == 200
        assert f"Merged on GitHub by @{AGENT_LOGIN} without an OSIRIS approval" in page.text
        assert "approve to accept it, or revert" in page.text

    # A person's approval then accepts the merge that happened: recorded as theirs, merged once.
    merged_main = github.fake.repos[REPO].rev("refs/heads/main")
    r = await github.client.post(f"/api/v1/tasks/{task_id}/approve", json={}, headers=s.admin_h)
    assert r.status_code == 200, r.text
    await s.settle()
    assert (await read_task(github, task_id, s.admin_h))["status"] == "DONE"
    events = await s.events(task_id)
    [approve] = [e for e in events if e["kind"] == "approve"]
    assert approve["actor_name"] == s.admin.username and approve["data"]["merged_on_code_host"] is True
    assert github.fake.repos[REPO].rev("refs/heads/main") == merged_main  # nothing merged twice


async def test_agent_account_of_another_org_merging_is_not_a_reviewer(github: GitHubEnv, factory):
    """The login belongs to an agent account elsewhere (not mapped in this organization at all)."""
    s = await _setup(github, factory)
    other = await factory.org("elsewhere")
    await factory.user(Role.AGENT, org=other, github_login="roving-agent")
    github.fake.tokens["roving-token"] = "roving-agent"
    task_id = await _in_review(s)
    await s.act("roving-token", "PUT", "/pulls/1/merge", {"merge_method": "merge"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REVIEW"
    events = await s.events(task_id)
    _no_reviewer_decision(events, "roving-agent")
    [flag] = [e for e in events if e["kind"] == "unapproved_merge"]
    assert flag["actor_name"] == "@roving-agent" and await _actor_id(github, flag["id"]) is None
    assert flag["data"]["standing"] == "agent"


async def test_requester_merge_is_flagged_not_approved(github: GitHubEnv, factory):
    s = await _setup(github, factory)
    rita = await factory.user(Role.REVIEWER, github_login="rita-gh")
    github.fake.tokens["rita-token"] = "rita-gh"
    task_id = await _in_review(s, requester=rita.username)
    await s.act("rita-token", "PUT", "/pulls/1/merge", {"merge_method": "merge"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REVIEW"
    events = await s.events(task_id)
    _no_reviewer_decision(events, "rita-gh")
    [flag] = [e for e in events if e["kind"] == "unapproved_merge"]
    assert flag["actor_name"] == rita.username and flag["data"]["standing"] == "requester"


async def test_unmapped_login_merge_is_flagged_under_mapped_approvers(github: GitHubEnv, factory):
    s = await _setup(github, factory)
    task_id = await _in_review(s)
    await s.act("bob-token", "PUT", "/pulls/1/merge", {"merge_method": "merge"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REVIEW"
    events = await s.events(task_id)
    _no_reviewer_decision(events, "bob")
    [flag] = [e for e in events if e["kind"] == "unapproved_merge"]
    assert flag["actor_name"] == "@bob" and flag["data"]["standing"] == "not_a_reviewer"


async def test_agent_reopening_its_rejected_pr_changes_nothing_and_is_closed_again(
    github: GitHubEnv, factory
):
    s = await _setup(github, factory)
    task_id = await _in_review(s)
    r = await github.client.post(
        f"/api/v1/tasks/{task_id}/cancel", json={"reason": "not wanted"}, headers=s.admin_h
    )
    assert r.status_code == 200, r.text
    await s.settle()
    assert github.pr(1).state == "closed"

    await s.act("agent-token", "PATCH", "/pulls/1", {"state": "open"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REJECTED"
    assert github.pr(1).state == "closed"  # closed again by OSIRIS
    events = await s.events(task_id)
    assert "reopen" not in [e["kind"] for e in events]
    [flag] = [e for e in events if e["kind"] == "pr_reopened_by_agent"]
    assert flag["actor_name"] == s.agent.username and flag["data"]["pr_state"] == "closed"


async def test_agent_closing_its_own_pr_does_not_cancel_and_it_is_reopened(github: GitHubEnv, factory):
    s = await _setup(github, factory)
    task_id = await _in_review(s)
    await s.act("agent-token", "PATCH", "/pulls/1", {"state": "closed"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REVIEW"
    assert github.pr(1).state == "open"  # reopened by OSIRIS: the task is still in review
    events = await s.events(task_id)
    _no_reviewer_decision(events, AGENT_LOGIN)
    [flag] = [e for e in events if e["kind"] == "pr_closed_by_agent"]
    assert flag["actor_name"] == s.agent.username and flag["data"]["pr_state"] == "open"

    # Still reviewable: a reviewer's approval merges it.
    r = await github.client.post(f"/api/v1/tasks/{task_id}/approve", json={}, headers=s.admin_h)
    assert r.status_code == 200, r.text
    await s.settle()
    assert github.pr(1).merged and (await read_task(github, task_id, s.admin_h))["status"] == "DONE"


async def test_requester_closing_the_pr_does_not_cancel(github: GitHubEnv, factory):
    s = await _setup(github, factory)
    rita = await factory.user(Role.REVIEWER, github_login="rita-gh")
    github.fake.tokens["rita-token"] = "rita-gh"
    task_id = await _in_review(s, requester=rita.username)
    await s.act("rita-token", "PATCH", "/pulls/1", {"state": "closed"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REVIEW"
    assert github.pr(1).state == "open"
    closed = [e["actor_name"] for e in await s.events(task_id) if e["kind"] == "pr_closed_by_requester"]
    assert closed == [rita.username]


async def test_reviewer_merge_still_approves(github: GitHubEnv, factory):
    s = await _setup(github, factory)
    task_id = await _in_review(s)
    await s.act("alice-token", "PUT", "/pulls/1/merge", {"merge_method": "merge"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "DONE"
    events = await s.events(task_id)
    [approve] = [e for e in events if e["kind"] == "approve"]
    assert approve["actor_name"] != "github:alice" and approve["data"]["merged_on_code_host"] is True
    assert not [e for e in events if e["kind"] == "unapproved_merge"]


async def test_reviewer_close_and_reopen_still_decide(github: GitHubEnv, factory):
    s = await _setup(github, factory)
    task_id = await _in_review(s)
    await s.act("alice-token", "PATCH", "/pulls/1", {"state": "closed"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REJECTED"
    assert github.pr(1).state == "closed"
    await s.act("alice-token", "PATCH", "/pulls/1", {"state": "open"})
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REVIEW"
    kinds = [e["kind"] for e in await s.events(task_id)]
    assert "cancel" in kinds and "reopen" in kinds
    assert not [k for k in kinds if k.startswith("pr_")]


async def test_agent_login_closing_the_issue_does_not_withdraw_the_request(github: GitHubEnv, factory):
    s = await _setup(github, factory)
    github.fake.tokens["carol-token"] = "carol"
    async with github.fake.client("carol-token") as carol:
        r = await carol.post(
            f"/repos/{REPO}/issues", json={"title": "Do it", "body": "x", "labels": ["osiris"]}
        )
        assert r.status_code == 201, r.text
        number = r.json()["number"]
    await s.settle()
    async with github.runtime.sessions() as session:
        task = await session.scalar(select(Task).where(Task.channel_thread == f"{REPO}#{number}"))
    assert task is not None and task.status == "PENDING"

    await s.act("agent-token", "PATCH", f"/issues/{number}", {"state": "closed"})
    assert (await read_task(github, task.id, s.admin_h))["status"] == "PENDING"
    issue: Issue = github.fake.issues[(REPO, number)]
    assert issue.state == "open"  # reopened by OSIRIS
    [flag] = [e for e in await s.events(task.id) if e["kind"] == "issue_closed_by_agent"]
    assert flag["actor_name"] == s.agent.username

    # The requester still withdraws it.
    await s.act("carol-token", "PATCH", f"/issues/{number}", {"state": "closed"})
    assert (await read_task(github, task.id, s.admin_h))["status"] == "REJECTED"


async def test_agent_login_failing_status_does_not_take_the_version_out_of_review(github: GitHubEnv, factory):
    """A failing commit status counts (block mode) only when the agent's login did not post it."""
    s = await _setup(github, factory)
    task_id = await _in_review(s)
    sha = (await read_task(github, task_id, s.admin_h))["artifacts"][-1]["commit_sha"]
    failing = {"state": "failure", "context": "ci/tests", "target_url": "https://ci.example/1"}
    await s.act("agent-token", "POST", f"/statuses/{sha}", failing)
    assert (await read_task(github, task_id, s.admin_h))["status"] == "REVIEW"
    [ci] = [e for e in await s.events(task_id) if e["kind"] == "ci_result"]
    assert ci["data"]["result"] == "failure" and ci["data"]["github_login"] == AGENT_LOGIN
    assert ci["data"]["not_counted"]

    await s.act("bob-token", "POST", f"/statuses/{sha}", failing)  # the CI's own account: counted
    assert (await read_task(github, task_id, s.admin_h))["status"] == "IN_PROGRESS"
