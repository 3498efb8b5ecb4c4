"""The first visit in a real browser (Debian's chromium driven by Playwright): an empty board that
shows how to connect an agent, then a task filed with the New task form, the empty state gone live.

CI installs chromium with apt; the browser build Playwright would download is never used.
"""

from __future__ import annotations

from sqlalchemy import select

from osiris.app import db
from osiris.app.models import Repository, Task

from .browser_helpers import BROWSER_TEST, SHOTS, signed_in_page

pytestmark = BROWSER_TEST


async def test_empty_board_then_new_task_form_in_the_browser(browser, live, factory, person):
    from playwright.async_api import expect

    admin = await person("admin")
    async with db.transaction(factory.runtime.sessions) as session:
        session.add(Repository(org_id=admin.org_id, name="webshop"))
    errors: list[str] = []
    context, board = await signed_in_page(browser, live, admin.username, errors, width=1300)
    await expect(board.locator(".org-name")).to_have_text("Default organization")

    # The empty board: the MCP URL, the ready `claude mcp add` line, a token button.
    start = board.locator(".board-empty")
    await expect(start).to_be_visible()
    mcp = f"{live.runtime.settings.server.public_url.rstrip('/')}/mcp"
    await expect(start.locator("code.mcp-add")).to_have_text(
        f'claude mcp add --transport http osiris {mcp} --header "Authorization: Bearer <token>"'
    )
    await expect(start.locator("code.mcp-json")).to_contain_text(f'"url": "{mcp}"')
    await expect(start.get_by_role("link", name="Create agent token")).to_be_visible()
    await expect(board.locator("#live-status")).to_have_attribute("data-state", "live")
    await board.screenshot(path=str(SHOTS / "portal-empty-board.png"), full_page=True)

    # The New task form, in a second tab; the first tab's empty state goes away live.
    form = await context.new_page()
    await form.goto(f"{live.url}/tasks/new")
    await form.get_by_label("Title").fill("Add a <script>alert(1)</script> banner")
    await form.get_by_label("Description").fill("On the home page.")
    await form.get_by_label("Repository").select_option("webshop")
    await form.get_by_label("Priority").select_option("high")
    await form.get_by_label("Skills").fill("css")
    await form.get_by_role("button", name="Create task").click()
    await expect(form.locator("h1")).to_have_text("Add a <script>alert(1)</script> banner")
    await expect(form.locator(".flash-ok")).to_contain_text("created in webshop")
    async with factory.runtime.sessions() as session:
        task = await session.scalar(select(Task).where(Task.repo == "webshop"))
    assert (task.priority, task.skills, task.channel) == (2, ["css"], "portal")
    await expect(form).to_have_url(f"{live.url}/tasks/{task.id}")

    # Reserve it and raise the priority from the task's header.
    await form.locator("summary", has_text="Edit priority").click()
    await form.get_by_label("Priority").select_option("urgent")
    await form.get_by_role("button", name="Set priority").click()
    await expect(form.locator(".task-facts .prio")).to_have_text("urgent")

    await expect(board.locator(".board-empty")).to_have_count(0)
    await expect(board.locator(f'#col-PENDING .card[data-task-id="{task.id}"]')).to_be_visible()
    await form.screenshot(path=str(SHOTS / "portal-new-task.png"), full_page=True)
    assert not errors, errors
    await context.close()
