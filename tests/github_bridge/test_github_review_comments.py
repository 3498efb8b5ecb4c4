"""A portal reviewer's comment on a line of "Files changed" is mirrored on GitHub as a pull request
review comment on that commit, path, line and side (`POST /repos/{o}/{r}/pulls/{n}/comments`),
checked against GitHub's REST description by the fake; its webhook echo is not imported again."""

from __future__ import annotations

from osiris.app.models import Role
from tests.support.github_harness import PATCH_V1, GitHubEnv, claim_new_task, github_people, submit_version


async def test_a_line_comment_becomes_a_pull_request_review_comment(github: GitHubEnv, factory):
    admin_h, agent_h, _ = await github_people(factory)
    _, reviewer_h = await factory.member(Role.REVIEWER)
    task_id = await claim_new_task(github, admin_h, agent_h)
    await submit_version(github, task_id, agent_h, PATCH_V1, "use an f-string")
    await github.drain()
    (artifact,) = (await github.client.get(f"/api/v1/tasks/{task_id}/artifacts", headers=agent_h)).json()
    head = artifact["commit_sha"]
    assert head

    for side, body in (("old", "Why drop the concatenation?"), ("new", "Nice f-string.")):
        r = await github.client.post(
            f"/api/v1/tasks/{task_id}/review-comments",
            json={
                "path": "src/app.py",
                "line": 2,
                "side": side,
                "body": body,
                "version": 1,
                "head_sha": head,
            },
            headers=reviewer_h,
        )
        assert r.status_code == 201, r.text
        assert r.json()["diff_hunk"].startswith("@@ -1,")
    await github.drain()

    # Two delivery jobs, run in either order.
    mirrored = sorted((c["path"], c["line"], c["side"], c["commit_id"]) for c in github.fake.review_comments)
    assert mirrored == [("src/app.py", 2, "LEFT", head), ("src/app.py", 2, "RIGHT", head)]
    (left,) = [c for c in github.fake.review_comments if c["side"] == "LEFT"]
    assert "Why drop the concatenation?" in left["body"]
    assert github.fake.calls["POST /repos/{owner}/{repo}/pulls/{pull_number}/comments"] == 2
    assert not github.fake.comments or all("Nice f-string." not in c["body"] for c in github.fake.comments)

    await github.deliver()  # the review comments' echoes: ours, so not imported as GitHub feedback
    await github.drain()
    messages = (await github.client.get(f"/api/v1/tasks/{task_id}/messages", headers=agent_h)).json()
    assert not [m for m in messages if m["source"].startswith("github")]
    assert sorted(m["meta"]["side"] for m in messages if m["meta"].get("kind") == "review_comment") == [
        "new",
        "old",
    ]
    events = (await github.client.get(f"/api/v1/tasks/{task_id}/events", headers=agent_h)).json()
    delivered = [e["data"] for e in events if e["kind"] == "message_delivered"]
    assert [d["code_host"].get("review_comment") for d in delivered] == [True, True], delivered
