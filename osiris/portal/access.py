"""Who is looking at the portal, and what they may do: session, signed-in user, CSRF-checked forms."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection

from osiris.app.actors import Actor
from osiris.app.auth import actor_for
from osiris.app.errors import Forbidden, OsirisError
from osiris.app.models import Organization, Role, User
from osiris.app.runtime import Runtime
from osiris.portal.sessions import CSRF_FIELD, PortalSession, SessionCodec, password_fingerprint


class LoginRequired(Exception):
    """Raised by a page that needs a signed-in user; the portal route answers with a redirect."""


class CsrfRefused(OsirisError):
    code, status, title = "csrf_refused", 403, "This form has expired or did not come from OSIRIS"


@dataclass(frozen=True)
class Viewer:
    user: User
    actor: Actor
    session: PortalSession
    org_name: str = ""  # shown in the header: an operator may hold accounts in several

    @property
    def is_admin(self) -> bool:
        return self.actor.role is Role.ADMIN

    @property
    def may_review(self) -> bool:
        """Approve, request changes, cancel: the lifecycle refuses anyone else, this only hides."""
        return self.actor.role in (Role.ADMIN, Role.REVIEWER)


def runtime_of(conn: HTTPConnection) -> Runtime:
    return conn.app.state.runtime


def codec_of(conn: HTTPConnection) -> SessionCodec:
    state = conn.app.state
    # Built on first use: the embedded default creates its signing key under the data dir lazily.
    if getattr(state, "portal_codec", None) is None:
        state.portal_codec = SessionCodec(state.settings)
    return state.portal_codec


def portal_session(conn: HTTPConnection) -> PortalSession:
    """The request's session, read once; the portal route writes it back when it changed."""
    session = getattr(conn.state, "portal_session", None)
    if session is None:
        session = codec_of(conn).load(conn)
        conn.state.portal_session = session
    return session


async def user_of_session(conn: HTTPConnection, session: PortalSession) -> User | None:
    """The session's user, if it still may use the portal: active, human, same password."""
    if session.user_id is None:
        return None
    async with runtime_of(conn).sessions() as db_session:
        user = await db_session.get(User, session.user_id)
    if user is None or not user.is_active or not user.is_human:
        return None
    if not hmac.compare_digest(
        (session.key or "").encode(), password_fingerprint(user.password_hash).encode()
    ):
        return None
    return user


async def current_viewer(request: Request) -> Viewer:
    session = portal_session(request)
    user = await user_of_session(request, session)
    if user is None:
        if session.user_id is not None:
            session.sign_out()
        raise LoginRequired
    async with runtime_of(request).sessions() as db_session:
        org = await db_session.get(Organization, user.org_id)
    viewer = Viewer(user=user, actor=actor_for(user), session=session, org_name=org.name if org else "")
    request.state.viewer = viewer
    return viewer


async def current_admin(viewer: Annotated[Viewer, Depends(current_viewer)]) -> Viewer:
    if not viewer.is_admin:
        raise Forbidden("only administrators may open this page")
    return viewer


async def current_superuser(viewer: Annotated[Viewer, Depends(current_viewer)]) -> Viewer:
    """The operator (users.is_superuser), as REST's auth.SuperuserDep: 403 for everyone else."""
    if not viewer.actor.superuser:
        raise Forbidden("only the operator (a superuser) may open this page")
    return viewer


def _same_origin(request: Request) -> bool:
    """A browser names the page a form came from; it must be this site (or the public URL)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # absent: older clients; "null": sandboxed or privacy-stripped, refuse
    seen = urlsplit(origin).netloc.lower()
    allowed = {
        request.headers.get("host", "").lower(),
        urlsplit(request.app.state.settings.server.public_url).netloc,
    }
    return seen in allowed


async def checked_form(request: Request) -> FormData:
    """The posted form, refused unless it carries the session's CSRF token."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if not portal_session(request).csrf_ok(token if isinstance(token, str) else None):
        raise CsrfRefused("the form's security token is missing or stale; reload the page and try again")
    if not _same_origin(request):
        raise CsrfRefused("the form was sent from another site")
    return form


ViewerDep = Annotated[Viewer, Depends(current_viewer)]
AdminDep = Annotated[Viewer, Depends(current_admin)]
SuperuserDep = Annotated[Viewer, Depends(current_superuser)]
FormDep = Annotated[FormData, Depends(checked_form)]


def text_field(form: FormData, name: str, *, default: str = "") -> str:
    value = form.get(name)
    return value if isinstance(value, str) else default
