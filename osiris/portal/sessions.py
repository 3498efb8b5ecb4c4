"""The portal's signed session cookie and the CSRF token bound to it.

The cookie holds no secret of its own: the user id, a CSRF token, a fingerprint of the user's password
hash (changing the password signs every browser out) and one-shot flash notes, signed with the
installation's signing key. Anonymous visitors get a cookie too, so the login form has a CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import HTTPConnection
from starlette.responses import Response

from osiris.app.config import Settings

COOKIE = "osiris_session"
CSRF_FIELD = "csrf_token"
_SALT = "osiris.portal.session"


@dataclass
class PortalSession:
    user_id: int | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    key: str | None = None  # fingerprint of the password hash the session was opened with
    flashes: list[tuple[str, str]] = field(default_factory=list)
    signed_in_at: float = 0.0  # bounds the session's life even though each save re-signs the cookie
    modified: bool = False

    def flash(self, level: str, text: str) -> None:
        self.flashes.append((level, text))
        self.modified = True

    def take_flashes(self) -> list[tuple[str, str]]:
        notes, self.flashes = self.flashes, []
        if notes:
            self.modified = True
        return notes

    def sign_in(self, user_id: int, password_hash: str | None) -> None:
        # A fresh CSRF token at sign-in: a token planted before login is worthless after it.
        self.user_id = user_id
        self.signed_in_at = time.time()
        self.key = password_fingerprint(password_hash)
        self.csrf = secrets.token_urlsafe(32)
        self.modified = True

    def sign_out(self) -> None:
        self.user_id = None
        self.key = None
        self.csrf = secrets.token_urlsafe(32)
        self.modified = True

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf.encode(), (submitted or "").encode())


def password_fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


class SessionCodec:
    def __init__(self, settings: Settings) -> None:
        self._serializer = URLSafeTimedSerializer(settings.signing_key(), salt=_SALT)
        self.max_age = settings.portal.session_max_age_seconds
        self.secure = settings.server.public_url.lower().startswith("https://")

    def load(self, conn: HTTPConnection) -> PortalSession:
        raw = conn.cookies.get(COOKIE)
        if not raw:
            return PortalSession(modified=True)
        try:
            data: dict[str, Any] = self._serializer.loads(raw, max_age=self.max_age)
        except BadSignature:  # also covers an expired signature
            return PortalSession(modified=True)
        signed_in_at = float(data.get("t") or 0)
        if data.get("u") is not None and time.time() - signed_in_at > self.max_age:
            return PortalSession(modified=True)
        return PortalSession(
            user_id=data.get("u"),
            signed_in_at=signed_in_at,
            csrf=data.get("c") or secrets.token_urlsafe(32),
            key=data.get("k"),
            flashes=[(str(a), str(b)) for a, b in data.get("f", [])],
        )

    def save(self, session: PortalSession, response: Response) -> None:
        data = {
            "u": session.user_id,
            "c": session.csrf,
            "k": session.key,
            "t": session.signed_in_at,
            "f": session.flashes,
        }
        response.set_cookie(
            COOKIE,
            self._serializer.dumps(data),
            max_age=self.max_age,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )
