"""Files changed in a real browser (Debian's chromium through Playwright): a version that deletes
lines of a file on the base branch shows the deletion, the side-by-side toggle works without a
reload, and a file marked viewed stays marked (and folded) after a reload."""

from __future__ import annotations

import re
import secrets

import httpx

from .browser_helpers import BROWSER_TEST, run_jobs, signed_in_page, structured

pytestmark = BROWSER_TEST


async def test_a_deletion_is_reviewed_side_by_side_and_marked_viewed(browser, live, factory, person):
    from playwright.async_api import expect

    reviewer = await person("reviewer")
    agent_token = await factory.token(await factory.user("agent"))
    repo = f"review-{secrets.token_hex(4)}"
    errors: list[str] = []
    async with httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {agent_token}"}
    ) as api:
        task = (await api.post("/api/v1/tasks", json={"title": "Trim the README", "repo": repo})).json()
        assert (await api.post(f"/api/v1/tasks/{task['id']}/claim")).status_code == 200
        patch = f"--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,1 @@\n # {repo}\n-\n-A project managed by OSIRIS.\n"
        r = await api.post(f"/api/v1/tasks/{task['id']}/artifacts", json={"content": patch, "kind": "patch"})
        assert r.status_code == 201, r.text
        await run_jobs(live)

    context, page = await signed_in_page(browser, live, reviewer.username, errors)
    await page.goto(f"{live.url}/tasks/{task['id']}")

    changes = page.locator("#changes")
    readme = changes.locator('details.diff-file[data-path="README.md"]')
    removed = readme.locator(".diff-unified tr.ln-removed")
    await expect(removed).to_have_count(2)
    await expect(removed.last).to_contain_text("A project managed by OSIRIS.")
    await expect(changes.locator(".dels").first).to_have_text("−2")
    await expect(changes).to_contain_text("merges cleanly")

    # Side by side, without a reload: the old line on the left, nothing beside it on the right.
    await page.evaluate("window.__stillTheSamePage = true")
    await changes.get_by_role("button", name="Side by side").click()
    await expect(readme.locator(".diff-split")).to_be_visible()
    await expect(readme.locator(".diff-unified")).to_be_hidden()
    left = readme.locator(".diff-split td.code.ln-removed")
    await expect(left.last).to_have_text("A project managed by OSIRIS.")
    assert await page.evaluate("window.__stillTheSamePage") is True
    await changes.get_by_role("button", name="Unified").click()
    await expect(readme.locator(".diff-unified")).to_be_visible()

    # Viewed: folded now, and still viewed (and folded) after a reload.
    await readme.get_by_label("Viewed").check()
    await expect(readme).not_to_have_attribute("open", "")
    await page.reload()
    readme = page.locator('#changes details.diff-file[data-path="README.md"]')
    await expect(readme.get_by_label("Viewed")).to_be_checked()
    await expect(readme).not_to_have_attribute("open", "")
    await expect(page.locator("#decision")).to_be_visible()
    await context.close()
    assert errors == [], errors  # no script errors, no CSP violations


async def test_a_line_comment_and_a_review_reach_the_agent_over_mcp(browser, live, factory, person):
    """A reviewer comments on a deleted line with the "+" on that line, and on an added one, submits
    the review with request changes; the agent reads both through the official MCP client with path
    and line; a thread resolved in the portal shows as resolved to the agent; hostile text is escaped."""
    from playwright.async_api import expect

    from tests.support.servers import mcp_over_http

    reviewer = await person("reviewer")
    agent_token = await factory.token(await factory.user("agent"))
    repo = f"review-{secrets.token_hex(4)}"
    hostile = "<img src=x onerror=alert(1)> keep this line"
    errors: list[str] = []
    async with (
        httpx.AsyncClient(base_url=live.url, headers={"Authorization": f"Bearer {agent_token}"}) as api,
        mcp_over_http(live.url, agent_token) as agent,
    ):
        task = (await api.post("/api/v1/tasks", json={"title": "Reword the README", "repo": repo})).json()
        structured(await agent.call_tool("claim_task", {"task_id": task["id"]}))
        patch = (
            f"--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,2 @@\n # {repo}\n-\n-A project managed by OSIRIS.\n"
            "+Managed by OSIRIS.\n"
        )
        structured(await agent.call_tool("submit_artifact", {"task_id": task["id"], "content": patch}))
        await run_jobs(live)

        context, page = await signed_in_page(browser, live, reviewer.username, errors)
        await page.goto(f"{live.url}/tasks/{task['id']}")

        readme = page.locator('#changes details.diff-file[data-path="README.md"]')
        deleted = readme.locator(".diff-unified tr.ln-removed").last  # old line 3
        await deleted.hover()
        await deleted.get_by_role("button", name="Comment on old line 3").click()
        form = readme.locator("tr.comment-form-row form.line-comment-form")
        await expect(form).to_be_visible()
        await form.get_by_label("Comment").fill(hostile)
        await form.get_by_role("button", name="Add comment").click()
        thread = page.locator("#changes .diff-unified tr.thread-row .review-comment")
        await expect(thread).to_contain_text(hostile)  # shown as text, not as an element
        assert await page.locator("#changes img").count() == 0

        added = page.locator('#changes details.diff-file[data-path="README.md"] .diff-unified tr.ln-added')
        await added.hover()
        await added.get_by_role("button", name="Comment on new line 2").click()
        form = page.locator("#changes tr.comment-form-row form.line-comment-form")
        await form.get_by_label("Comment").fill("Say who manages it.")
        await form.get_by_role("button", name="Add comment").click()
        await expect(page.locator("#changes .diff-unified tr.thread-row .review-comment")).to_have_count(2)

        # One review: a comment and "Request changes", pinned to the version shown.
        await page.locator("#review-body").fill("Two things, see the lines.")
        await page.get_by_label("Request changes").check()
        await page.get_by_role("button", name="Submit review").click()
        await expect(page.locator("#task-status")).to_have_text("IN PROGRESS")

        batch = structured(await agent.call_tool("read_feedback", {"task_id": task["id"]}))
        lines = [
            (i["file"], i["line"], i["side"], i["resolved"])
            for i in batch["items"]
            if i["kind"] == "review_comment"
        ]
        assert lines == [("README.md", 3, "old", False), ("README.md", 2, "new", False)], batch
        (request,) = [i for i in batch["items"] if i["kind"] == "feedback"]
        assert request["body"].startswith("Two things, see the lines.")
        assert [(c["file"], c["line"], c["side"]) for c in request["comments"]] == [
            ("README.md", 3, "old"),
            ("README.md", 2, "new"),
        ]
        assert "-A project managed by OSIRIS." in request["comments"][0]["diff_hunk"]

        # Resolved in the portal: the agent sees it resolved, the other one still open.
        first = page.locator("#changes .diff-unified .review-comment").first
        await first.get_by_role("button", name="Resolve").click()
        await expect(page.locator("#changes .diff-unified .review-comment").first).to_contain_text(
            "resolved by"
        )
        batch = structured(await agent.call_tool("read_feedback", {"task_id": task["id"], "since": 0}))
        assert [(t["line"], t["resolved"]) for t in batch["threads"]] == [(3, True), (2, False)]
        states = {i["line"]: i["resolved"] for i in batch["items"] if i["kind"] == "review_comment"}
        assert states == {3: True, 2: False}
        await context.close()
    assert errors == [], errors


async def test_an_approval_in_the_browser_becomes_the_closed_task_panel(browser, live, factory, person):
    """The review form approves the version shown; once merged, the page says who approved, when,
    with what comment and the merge commit, and the message box and "held by" are gone; the board's
    Done card names the approver. The hostile title and comment stay text."""
    from playwright.async_api import expect

    reviewer = await person("reviewer")
    agent_token = await factory.token(await factory.user("agent"))
    hostile = "<img src=x onerror=alert(1)>"
    errors: list[str] = []
    async with httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {agent_token}"}
    ) as api:
        body = {"title": f"Ship it {hostile}", "repo": f"close-{secrets.token_hex(4)}"}
        task = (await api.post("/api/v1/tasks", json=body)).json()
        assert (await api.post(f"/api/v1/tasks/{task['id']}/claim")).status_code == 200
        r = await api.post(
            f"/api/v1/tasks/{task['id']}/artifacts", json={"content": {"app.py": "x = 1\n"}, "kind": "files"}
        )
        assert r.status_code == 201, r.text
        await run_jobs(live)

    context, page = await signed_in_page(browser, live, reviewer.username, errors)
    await page.goto(f"{live.url}/tasks/{task['id']}")
    await expect(page.locator(f'form[action="/tasks/{task["id"]}/messages"]')).to_have_count(1)

    await page.locator("#review-body").fill(f"Looks right {hostile}")
    await page.get_by_label("Approve").check()
    await page.get_by_role("button", name="Submit review").click()
    await expect(page.locator("#task-status")).to_have_text("DONE")
    await run_jobs(live)  # the merge
    await page.reload()

    panel = page.locator("#closure")
    await expect(panel.locator("h2")).to_have_text(f"Approved by {reviewer.username}")
    await expect(panel.locator(".closure-comment")).to_have_text(f"Looks right {hostile}")
    await expect(panel.locator("code.merge-commit")).to_have_text(re.compile(r"^[0-9a-f]{12}$"))
    await expect(panel.locator("time").first).to_have_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
    await expect(page.locator(f'form[action="/tasks/{task["id"]}/messages"]')).to_have_count(0)
    await expect(page.get_by_text("held by")).to_have_count(0)
    assert await page.locator("img").count() == 0  # the title and the comment are text

    await page.goto(f"{live.url}/")
    card = page.locator(f'#col-DONE li.card[data-task-id="{task["id"]}"]')
    await expect(card).to_contain_text(f"approved by {reviewer.username}")
    await context.close()
    assert errors == [], errors
