"""GitHub: the repository's own CI results on the PR head count as pre-review checks."""

from __future__ import annotations

from tests.support.fake_github import example
from tests.support.github_harness import (
    PATCH_V1,
    REPO,
    GitHubEnv,
    claim_new_task,
    github_people,
    post_webhook,
    read_task,
    submit_version,
)


async def _post(env: GitHubEnv, event: str, payload: dict, delivery: str) -> None:
    r = await post_webhook(env, event, payload, delivery)
    assert r.status_code == 202, r.text
    await env.drain()


def _for(payload: dict, sha: str) -> dict:
    payload["repository"]["full_name"] = REPO
    return payload


async def test_github_ci_failure_returns_the_task_with_names_and_links(github: GitHubEnv, factory):
    admin_h, agent_h, _ = await github_people(factory)
    task_id = await claim_new_task(github, admin_h, agent_h)
    await submit_version(github, task_id, agent_h, PATCH_V1, "v1")
    await github.drain()
    task = await read_task(github, task_id, agent_h)
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
    assert (await read_task(github, task_id, agent_h))["status"] == "REVIEW"

    failing = _for(example("check_run", "completed"), sha)
    failing["check_run"].update(head_sha=sha, name="tests (3.11)", conclusion="failure")
    await _post(github, "check_run", failing, "ci-3")
    task = await read_task(github, task_id, agent_h)
    assert task["status"] == "IN_PROGRESS"
    [feedback] = [m for m in task["messages"] if m["source"] == "checks"]
    assert "tests (3.11): failure" in feedback["body"]
    assert failing["check_run"]["html_url"] in feedback["body"]
    events = (await github.client.get(f"/api/v1/tasks/{task_id}/events", headers=admin_h)).json()
    ci = [(e["data"]["name"], e["data"]["result"]) for e in events if e["kind"] == "ci_result"]
    assert ci == [("ci/lint", "success"), ("tests (3.11)", "failure")]
    assert [e for e in events if e["kind"] == "checks_failed"][0]["actor_name"] == "github-ci"
