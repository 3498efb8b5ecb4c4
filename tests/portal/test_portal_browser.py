"""The portal in a real browser (Debian's chromium driven by Playwright): sign in, watch a task
arrive, review it, request changes (the agent reads them with MCP `read_feedback`), see the
resubmission live, approve it, and find it merged by the local git host.

CI installs chromium with apt; the browser build Playwright would download is never used.
"""

from __future__ import annotations

import secrets

import httpx

from tests.support.servers import mcp_over_http

from .browser_helpers import BROWSER_TEST, SHOTS, run_jobs, sign_in_form, structured, watch_errors

pytestmark = BROWSER_TEST


FIRST = "def greet():\n    return 'hi'\n"
SECOND = "def greet(name):\n    return f'hi {name}'\n"


def patch(old: str, new: str) -> str:
    """A unified diff of hello.py from `old` (empty: a new file) to `new`, both two lines long."""
    removed = "".join(f"-{line}\n" for line in old.splitlines())
    added = "".join(f"+{line}\n" for line in new.splitlines())
    if not old:
        return f"--- /dev/null\n+++ b/hello.py\n@@ -0,0 +1,2 @@\n{added}"
    return f"--- a/hello.py\n+++ b/hello.py\n@@ -1,2 +1,2 @@\n{removed}{added}"


async def test_review_a_task_live_in_the_browser(browser, live, factory, person):
    from playwright.async_api import expect

    reviewer = await person("reviewer")
    agent_token = await factory.token(await factory.user("agent"))
    api = httpx.AsyncClient(base_url=live.url, headers={"Authorization": f"Bearer {agent_token}"})
    repo = f"portal-{secrets.token_hex(4)}"  # task ids restart with every test; branch names would not
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    board = await context.new_page()
    errors: list[str] = []
    watch_errors(board, errors)

    # Sign in; the board's live connection comes up.
    await board.goto(f"{live.url}/")
    await expect(board).to_have_url(f"{live.url}/login?next=%2F")
    await sign_in_form(board, reviewer.username)
    await expect(board.get_by_role("heading", name="Board", exact=True)).to_be_visible()
    await expect(board.locator("#live-status")).to_have_attribute("data-state", "live")
    await board.evaluate("window.__stillTheSamePage = true")

    async with api, mcp_over_http(live.url, agent_token) as agent:
        # A task created through the API appears without a reload.
        body = {"title": "Greet the user", "description": "Say hi.", "repo": repo}
        task = (await api.post("/api/v1/tasks", json=body)).json()
        card = board.locator(f'#col-PENDING .card[data-task-id="{task["id"]}"]')
        await expect(card).to_be_visible()
        await expect(board.locator("#col-PENDING .count")).to_have_text("1")

        # The agent claims and submits over MCP: the card moves to Review, with a badge and a beep.
        structured(await agent.call_tool("claim_task", {"task_id": task["id"]}))
        first = {
            "task_id": task["id"],
            "content": patch("", FIRST),
            "summary": "First try",
        }
        structured(await agent.call_tool("submit_artifact", first))
        await run_jobs(live)  # published as a local change request
        await expect(board.locator(f'#col-REVIEW .card[data-task-id="{task["id"]}"]')).to_be_visible()
        await expect(board.locator("#review-badge")).to_have_text("1 new in review")
        await expect(board.locator("body")).to_have_attribute("data-beeps", "1")
        assert await board.evaluate("window.__stillTheSamePage") is True
        await board.screenshot(path=str(SHOTS / "portal-board.png"), full_page=True)

        # Open it in a second tab and read the diff.
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{live.url}/tasks/{task['id']}")
        await expect(page.locator("#task-status")).to_have_text("REVIEW")
        await expect(page.locator("figure.code .hl")).to_contain_text("return 'hi'")
        await expect(page.locator("figure.code .hl .gi").first).to_be_visible()  # highlighted additions
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")

        # Request changes with feedback; the agent reads it.
        await page.locator("#review-body").fill("Greet by name, please.")
        await page.get_by_label("Request changes").check()
        await page.get_by_role("button", name="Submit review").click()
        await expect(page.locator("#task-status")).to_have_text("IN PROGRESS")
        await expect(page.locator("#thread")).to_contain_text("Greet by name, please.")
        feedback = structured(await agent.call_tool("read_feedback", {"task_id": task["id"]}))
        assert [(i["body"], i["kind"]) for i in feedback["items"]] == [("Greet by name, please.", "feedback")]

        # The agent resubmits: the open page updates by itself.
        await page.evaluate("window.__stillTheSamePage = true")
        second = {
            "task_id": task["id"],
            "content": patch(FIRST, SECOND),
            "summary": "By name",
        }
        structured(await agent.call_tool("submit_artifact", second))
        await run_jobs(live)
        await expect(page.locator("#task-status")).to_have_text("REVIEW")
        await expect(page.locator(".versions a")).to_have_count(2)
        await expect(page.locator("figure.diff")).to_contain_text("v1 → v2")
        await expect(page.locator("#timeline")).to_contain_text("submit")
        await expect(page.get_by_label("Approve and merge")).to_be_visible()
        assert await page.evaluate("window.__stillTheSamePage") is True
        await page.screenshot(path=str(SHOTS / "portal-task.png"), full_page=True)

        # Approve: DONE here, and the card moves to Done on the board tab.
        await page.get_by_label("Approve and merge").check()
        await page.get_by_role("button", name="Submit review").click()
        await expect(page.locator("#task-status")).to_have_text("DONE")
        await expect(board.locator(f'#col-DONE .card[data-task-id="{task["id"]}"]')).to_be_visible()
        assert (await api.get(f"/api/v1/tasks/{task['id']}")).json()["status"] == "DONE"

        # The merge job runs: the local git host merged the branch into the base.
        await run_jobs(live)
        cr = (await api.get(f"/api/v1/tasks/{task['id']}/change-request")).json()
        assert cr["state"] == "merged" and cr["base"] == "main", cr
        assert "+    return f'hi {name}'" in cr["diff"]
        events = (await api.get(f"/api/v1/tasks/{task['id']}/events")).json()
        kinds = [e["kind"] for e in events]
        assert "merged" in kinds and "merge_failed" not in kinds, kinds
        await expect(page.locator("#timeline")).to_contain_text("merged")

        # On a phone the columns stack and nothing overflows sideways.
        await board.set_viewport_size({"width": 390, "height": 844})
        assert await board.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await board.screenshot(path=str(SHOTS / "portal-board-mobile.png"), full_page=True)

    await context.close()
    assert errors == [], errors  # no script errors, no CSP violations
