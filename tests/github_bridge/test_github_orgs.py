"""An organization's own GitHub repository: registered with `github_repo`, no OSIRIS_GITHUB_REPO entry."""

from __future__ import annotations

from osiris.app.models import Role
from tests.support.github_harness import REPO, GitHubEnv
from tests.support.rest import claimed_task, submitted

THEIRS = "beta/gadgets"
PATCH = """\
--- a/lib.py
+++ b/lib.py
@@ -1 +1 @@
-VALUE = 1
+VALUE = 2
"""


async def test_a_task_of_another_organization_opens_its_pr_in_that_organizations_repository(
    github: GitHubEnv, factory
):
    github.fake.create_repo(THEIRS, {"lib.py": "VALUE = 1\n"})
    beta = await factory.org("beta")
    _, beta_admin = await factory.member(Role.ADMIN, org=beta)
    _, beta_agent = await factory.member(Role.AGENT, org=beta)
    await factory.user(Role.REVIEWER, org=beta, github_login="bob")
    github.fake.tokens["bob-token"] = "bob"

    r = await github.client.post(
        "/api/v1/repositories", json={"name": "gadgets", "github_repo": THEIRS}, headers=beta_admin
    )
    assert r.status_code == 201, r.text
    task_id = await claimed_task(
        github.client, beta_agent, creator_h=beta_admin, title="Bump the value", repo="gadgets"
    )
    await submitted(github.client, beta_agent, task_id, PATCH, summary="two")
    await github.drain()

    # The PR is in beta's repository; acme's (the deployment's OSIRIS_GITHUB_REPO) got nothing.
    assert [key for key in github.fake.pulls] == [(THEIRS, 1)]
    assert github.fake.read_file(THEIRS, f"osiris/task-{task_id}", "lib.py") == "VALUE = 2\n"
    assert github.fake.repos[REPO].rev(f"refs/heads/osiris/task-{task_id}") is None

    # A review there is recognised as this task's: bob (a beta reviewer) approves, the PR merges.
    async with github.fake.client("bob-token") as bob:
        r = await bob.post(f"/repos/{THEIRS}/pulls/1/reviews", json={"event": "APPROVE", "body": "ok"})
        assert r.status_code == 200, r.text
    await github.deliver()
    await github.drain()
    assert github.fake.pulls[(THEIRS, 1)].merged
    assert github.fake.read_file(THEIRS, "main", "lib.py") == "VALUE = 2\n"
    r = await github.client.get(f"/api/v1/tasks/{task_id}", headers=beta_admin)
    assert r.json()["status"] == "DONE"
