"""Long-lived connections (portal WebSockets, MCP's SSE streams) by the credential that opened them.

A credential that stops being valid must not keep a stream it opened before: revoking an API token
NOTIFYs `osiris_tokens` with its hash (accounts.revoke_token) and signing out NOTIFYs
`osiris_revoked` with the session's key (`announce_revoked`); every replica's hub hears both and
closes the streams filed under that key here. Each stream is also filed under `user:<id>`, so a
user-wide revocation closes all of theirs. The number open per credential is capped per process:
one leaked token cannot hold thousands of sockets.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import security

log = logging.getLogger(__name__)
REVOKED_CHANNEL = "osiris_revoked"  # NOTIFY payload: a stream key (`session:…`, `user:<id>`) no longer valid


def token_key(token: str) -> str:
    """The key of a bearer token: an API token by the hash its revocation announces, a JWT by its own."""
    # OAuth access tokens are revoked by the same hash (osiris/app/oauth.py)
    if token.startswith((security.TOKEN_PREFIX, security.ACCESS_TOKEN_PREFIX)):
        return f"token:{security.hash_token(token)}"
    return f"jwt:{hashlib.sha256(token.encode()).hexdigest()}"


def session_key(csrf: str) -> str:
    """A portal sign-in's key: its CSRF token is new at each sign-in and never leaves the cookie."""
    return f"session:{hashlib.sha256(csrf.encode()).hexdigest()}"


def user_key(user_id: int) -> str:
    return f"user:{user_id}"


async def announce_revoked(session: AsyncSession, key: str) -> None:
    """Close the streams filed under `key` on every replica, once the caller's transaction commits."""
    await session.execute(select(func.pg_notify(REVOKED_CHANNEL, key)))


@dataclass(eq=False)
class Stream:
    id: int
    keys: tuple[str, ...]
    close: Callable[[str], None]  # called once, on the event loop, with the reason


class TooMany(Exception):
    """The credential already holds its cap of open streams."""


class OpenStreams:
    def __init__(self, *, per_credential: int) -> None:
        self.per_credential = per_credential
        self._by_key: dict[str, dict[int, Stream]] = {}
        self._ids = itertools.count(1)

    def open(self, keys: tuple[str, ...], close: Callable[[str], None], *, capped: bool = True) -> Stream:
        """File a stream under its keys, the credential's first; raise TooMany at the cap."""
        if capped and len(self._by_key.get(keys[0], ())) >= self.per_credential:
            raise TooMany(f"at most {self.per_credential} live connections per credential")
        stream = Stream(next(self._ids), keys, close)
        for key in keys:
            self._by_key.setdefault(key, {})[stream.id] = stream
        return stream

    def release(self, stream: Stream) -> None:
        for key in stream.keys:
            held = self._by_key.get(key)
            if held is not None:
                held.pop(stream.id, None)
                if not held:
                    del self._by_key[key]

    def count(self, key: str) -> int:
        return len(self._by_key.get(key, ()))

    def revoke(self, key: str, reason: str = "credential revoked") -> int:
        """Close every stream filed under `key`; return how many."""
        streams = list(self._by_key.get(key, {}).values())
        for stream in streams:
            self.release(stream)
            try:
                stream.close(reason)
            except Exception:
                log.exception("closing a revoked stream failed")
        if streams:
            log.info("closed streams of a revoked credential", extra={"streams": len(streams)})
        return len(streams)

    def token_revoked(self, token_hash: str) -> None:
        """The `osiris_tokens` listener: the payload is the revoked API token's hash."""
        self.revoke(f"token:{token_hash}", "token revoked")

    def key_revoked(self, key: str) -> None:
        """The `osiris_revoked` listener."""
        self.revoke(key, "signed out" if key.startswith("session:") else "credential revoked")
