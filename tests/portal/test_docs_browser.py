"""/docs and /redoc in a real browser (Debian's chromium through Playwright) with every request that is
not to the server itself refused: the pages still render the API's operations, with no script error
and no CSP violation. The assets are fastapi-offline's copies, served by us (tests/app/test_api_docs.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from .browser_helpers import BROWSER_TEST, watch_errors

pytestmark = BROWSER_TEST


async def _offline_page(browser, live, errors: list[str], elsewhere: list[str]):
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    origin = urlsplit(live.url)

    async def only_the_server(route) -> None:
        url = urlsplit(route.request.url)
        if (url.scheme, url.netloc) == (origin.scheme, origin.netloc):
            await route.continue_()
        else:  # a CDN, fonts, a validator badge: the offline machine has none of them
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_the_server)
    page = await context.new_page()
    watch_errors(page, errors)
    return context, page


async def test_swagger_ui_shows_the_operations_with_nothing_but_the_server(browser, live):
    from playwright.async_api import expect

    errors: list[str] = []
    elsewhere: list[str] = []
    context, page = await _offline_page(browser, live, errors, elsewhere)
    await page.goto(f"{live.url}/docs")
    create = page.locator(".opblock-post", has=page.locator('[data-path="/api/v1/tasks"]'))
    await expect(create.first).to_be_visible()
    await expect(page.locator(".opblock").first).to_be_visible()
    assert await page.locator(".opblock").count() > 20  # the whole API, not one stray block
    # An operation opens and shows its request body, all from the spec on our origin.
    await create.first.locator(".opblock-summary").first.click()
    await expect(create.first.locator(".opblock-body")).to_be_visible()
    await expect(page.locator(".title").first).to_contain_text("OSIRIS")
    await context.close()
    assert elsewhere == [], elsewhere
    assert errors == [], errors  # no script errors, no CSP violations


async def test_redoc_shows_the_operations_with_nothing_but_the_server(browser, live):
    from playwright.async_api import expect

    errors: list[str] = []
    elsewhere: list[str] = []
    context, page = await _offline_page(browser, live, errors, elsewhere)
    await page.goto(f"{live.url}/redoc")
    await expect(page.locator("h1").first).to_contain_text("OSIRIS")
    await expect(page.get_by_text("/api/v1/tasks/{task_id}/claim").first).to_be_attached()
    await context.close()
    assert elsewhere == [], elsewhere
    # ReDoc's footer shows Redocly's logo from their CDN, and drops it when it cannot load: our CSP
    # refuses it before any request leaves. Anything else is an error.
    logo = [e for e in errors if "https://cdn.redoc.ly/redoc/logo-mini.svg" in e and "img-src" in e]
    assert len(logo) <= 1 and [e for e in errors if e not in logo] == [], errors
