"""Pages: the template environment, and the route class every portal page goes through.

The route class turns domain errors into a friendly page with the error's own status, sends a
signed-out visitor to the login page, writes back a changed session cookie and sets the security
headers, so no view has to remember any of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from osiris.app.errors import OsirisError
from osiris.app.schemas import PRIORITY_NAMES, USERNAME
from osiris.app.status_labels import status_label
from osiris.portal.access import LoginRequired, codec_of, portal_session
from osiris.portal.sessions import CSRF_FIELD

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")

# Only our own origin: no inline script or style anywhere, so a stored message cannot run code.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    # Pages carry CSRF tokens and private data: never keep them in a shared or back-forward cache.
    "Cache-Control": "no-store",
}


def _ago(value: datetime | None) -> str:
    if value is None:
        return ""
    seconds = int((datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def _duration(value: datetime | None) -> str:
    """How long since `value`, for "in Review for 3 h"."""
    ago = _ago(value)
    return "under a minute" if ago == "just now" else ago.removesuffix(" ago")


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _abs_time(value: datetime | None) -> str:
    """An absolute time a person can quote (audit, accountability): UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


_API_CHANGE_REQUEST = re.compile(r"^https?://[^/?#]+(?:/[^?#]*)?/api/v1/tasks/(\d+)/change-request$")


def _web_url(value: str | None) -> str | None:
    """Links that came from outside (a PR URL) only if they are web links, never `javascript:`."""
    if value and value.lower().startswith(("https://", "http://")):
        if legacy := _API_CHANGE_REQUEST.match(value):
            # Published before the local git host linked to the portal: that API URL answers a
            # browser with 401, the task page's work section shows the same change request.
            return f"/tasks/{legacy.group(1)}#work"
        return value
    return None


templates.env.filters["ago"] = _ago
templates.env.filters["web_url"] = _web_url
templates.env.filters["iso"] = _iso
templates.env.filters["abs_time"] = _abs_time
templates.env.filters["duration"] = _duration
templates.env.globals["priority_name"] = lambda p: PRIORITY_NAMES.get(p, str(p))
templates.env.globals["CSRF_FIELD"] = CSRF_FIELD
templates.env.globals["status_label"] = status_label  # REJECTED reads "Cancelled"
templates.env.globals["username_pattern"] = USERNAME.pattern  # the forms check the core's rule too


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> Response:
    session = portal_session(request)
    ctx = {
        "viewer": getattr(request.state, "viewer", None),
        "csrf_token": session.csrf,
        "flashes": session.take_flashes(),
        **(context or {}),
    }
    return templates.TemplateResponse(request, name, ctx, status_code=status)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)  # after a POST, the browser GETs the page


def render_error(request: Request, exc: OsirisError) -> Response:
    return render(request, "error.html", {"error": exc}, status=exc.status)


def finish(request: Request, response: Response) -> Response:
    session = getattr(request.state, "portal_session", None)
    if session is not None and session.modified:
        codec_of(request).save(session, response)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class PortalRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def portal_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                target = "/"  # a form posted by a signed-out browser is not replayed after login
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = redirect(f"/login?next={quote(target, safe='')}")
            except OsirisError as exc:
                response = render_error(request, exc)
            return finish(request, response)

        return portal_handler
