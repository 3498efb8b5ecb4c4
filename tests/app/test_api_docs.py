"""/docs and /redoc work offline: every asset they load is on our own origin (fastapi-offline's copies
of Swagger UI and ReDoc), each is served with its type, and the pages carry a CSP that holds them to
our origin. The browser check (nothing but the server reached, the operations shown) is in
tests/portal/test_docs_browser.py."""

from __future__ import annotations

import re

import pytest

from osiris.portal.rendering import SECURITY_HEADERS

pytestmark = pytest.mark.asyncio

ATTRIBUTE_URL = re.compile(r'\b(?:src|href)="([^"]*)"')
TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def _directives(csp: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_load_only_same_origin_assets(client, page):
    r = await client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert not re.search(r"https?://|//cdn|jsdelivr|unpkg|fonts\.googleapis", html), html
    urls = (
        ATTRIBUTE_URL.findall(html)
        + re.findall(r"url: '([^']*)'", html)
        + re.findall(r'spec-url="([^"]*)"', html)
    )
    assert urls, html
    for url in urls:
        # our origin: a path, never a scheme or a protocol-relative `//host`
        assert url.startswith("/") and not url.startswith("//"), url
    assets = [u for u in urls if u.startswith("/static/docs/")]
    assert {a.rsplit(".", 1)[1] for a in assets} >= {"js", "png"}
    for url in assets:
        got = await client.get(url)
        assert got.status_code == 200, url
        want = TYPES["." + url.rsplit(".", 1)[1]]
        assert want in got.headers["content-type"], (url, got.headers["content-type"])
        assert len(got.content) > 1000  # the real bundle, not an empty placeholder
    spec = await client.get("/openapi.json")
    assert spec.status_code == 200 and "/api/v1/tasks" in spec.json()["paths"]


async def test_swagger_ui_loads_its_script_and_stylesheet_from_the_package(client):
    html = (await client.get("/docs")).text
    assert '<script src="/static/docs/swagger-ui-bundle.js">' in html
    assert 'href="/static/docs/swagger-ui.css"' in html
    js = await client.get("/static/docs/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in js.content
    assert "text/css" in (await client.get("/static/docs/swagger-ui.css")).headers["content-type"]


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_the_docs_pages_have_a_csp_of_our_origin(client, page):
    r = await client.get(page)
    csp = _directives(r.headers["content-security-policy"])
    assert csp["default-src"] == ["'self'"] and csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    # Scripts: our origin, and FastAPI's inline start-up script by its hash alone.
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert all(s == "'self'" or s.startswith("'sha256-") for s in csp["script-src"])
    inline = re.findall(r"<script>", r.text)
    assert len([s for s in csp["script-src"] if s.startswith("'sha256-")]) == len(inline)
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_the_portal_keeps_its_own_stricter_policy(client):
    portal = _directives(SECURITY_HEADERS["Content-Security-Policy"])
    assert portal["script-src"] == ["'self'"] and portal["style-src"] == ["'self'"]
    r = await client.get("/login")
    assert r.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]


@pytest.mark.parametrize(
    "path", ["%2e%2e/core.py", "%2e%2e/__init__.py", "..%2fcore.py", "%2e%2e/%2e%2e/fastapi/__init__.py"]
)
async def test_the_assets_folder_gives_nothing_outside_it(client, path):
    r = await client.get(f"/static/docs/{path}")
    assert r.status_code == 404 and b"import" not in r.content
