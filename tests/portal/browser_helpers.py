"""What the portal's browser tests share: Debian's chromium driven by Playwright (CI installs chromium
with apt; the browser build Playwright would download is never used), the marks that skip a module
without it, and the agent's side (MCP results, the worker's jobs). The `browser` fixture is in
conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.jobs import drain
from tests.support.portal_helpers import PASSWORD
from tests.support.servers import LiveServer

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("OSIRIS_SCREENSHOT_DIR", "/tmp"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# A browser test module's `pytestmark`.
BROWSER_TEST = [
    pytest.mark.asyncio,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]


def structured(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


async def run_jobs(live: LiveServer) -> None:
    """What the worker would do next (publish, merge), on the live server's own loop and runtime."""
    await live.run(drain(live.runtime))


def watch_errors(page, errors: list[str]) -> None:
    """Collect the page's uncaught script errors and console errors into `errors`."""
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)


async def sign_in_form(page, username: str, password: str = PASSWORD) -> None:
    """Fill in and send the login form the page shows."""
    await page.get_by_label("User name").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def signed_in_page(browser, live: LiveServer, username: str, errors: list[str], *, width: int = 1400):
    """A page in a new browser context (900 px high; its errors into `errors`), signed in as `username`
    through the login form; returns the context and the page."""
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    watch_errors(page, errors)
    await page.goto(f"{live.url}/login")
    await sign_in_form(page, username)
    return context, page
