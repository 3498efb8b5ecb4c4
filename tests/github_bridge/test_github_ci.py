"""GitHub: the repository's own CI results on the PR head count as pre-review checks."""

from __future__ import annotations

import json

import github_harness
from fake_github import example
from github_harness import REPO, GitHubEnv
from test_github_lifecycle import PATCH_V1, _people, _status, _submit, _task
from test_github_webhooks import _headers

github = github_harness.github  # the fixture


async def _post(env: GitHubEnv, event: str, payload: dict, delivery: str) -> None:
    body = json.dumps(payload).encode()
    r = await env.client.post(
        "/api/v1/webhooks/github", content=body, headers=_headers(event, body, delivery)
    )
    assert r.status_code == 202, r.text
    await env.drain()


def _for(payload: dict, sha: str) -> dict:
    payload["repository"]["full_name"] = REPO
    return payload


async def test_github_ci_failure_returns_the_task_with_names_and_links(github: GitHubEnv, factory):
    admin_h, agent_h, _ = await _people(factory)
    task_id = await _task(github, admin_h, agent_h)
    await _submit(github, task_id, agent_h, PATCH_V1, "v1")
    await github.drain()
    task = await _status(github, task_id, agent_h)
    assert task["status"] == "REVIEW"
    sha = task["artifacts"][-1]["commit_sha"]
    events = (await github.client.get(f"/api/v1/tasks/{task_id}/events", headers=admin_h)).json()
    assert [e["data"]["checks"] for e in events if e["kind"] == "review_requested"] == ["none"]

    status = _for(example("status"), sha)
    status.update(sha=sha, state="success", context="ci/lint", target_url="https://ci.example/lint/1")
    await _post(github, "status", status, "ci-1")
    other = _for(example("check_run", "completed"), sha)
    other["check_run"]["head_sha"] = "f" * 40  # another commit: ignored
    await _post(github, "check_run", other, "ci-2")
    assert (await _status(github, task_id, agent_h))["status"] == "REVIEW"

    failing = _for(example("check_run", "completed"), sha)
    failing["check_run"].update(head_sha=sha, name="tests (3.11)", conclusion="failure")
    await _post(github, "check_run", failing, "ci-3")
    task = await _status(github, task_id, agent_h)
    assert task["status"] == "IN_PROGRESS"
    [feedback] = [m for m in task["messages"] if m["source"] == "checks"]
    assert "tests (3.11): failure" in feedback["body"]
    assert failing["check_run"]["html_url"] in feedback["body"]
    events = (await github.client.get(f"/api/v1/tasks/{task_id}/events", headers=admin_h)).json()
    ci = [(e["data"]["name"], e["data"]["result"]) for e in events if e["kind"] == "ci_result"]
    assert ci == [("ci/lint", "success"), ("tests (3.11)", "failure")]
    assert [e for e in events if e["kind"] == "checks_failed"][0]["actor_name"] == "github-ci"
