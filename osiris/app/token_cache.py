"""The per-process cache of bearer tokens resolved lately (its own module: the runtime holds one,
and `auth`, which reads it, needs the runtime)."""

from __future__ import annotations

from datetime import UTC, datetime

from cachetools import TTLCache

from osiris.app.actors import Actor


class TokenCache:
    """Opaque tokens resolved in the last few seconds, so most requests need no token query.

    A revocation is broadcast with NOTIFY and evicts the entry at once on every replica; the short
    TTL bounds the window should a notification be missed (e.g. while the listener reconnects).
    An entry keeps its token's expiry: an expired token is refused at once, never served from here.
    """

    def __init__(self, ttl_seconds: float = 30.0, size: int = 10_000) -> None:
        self._entries: TTLCache[str, tuple[Actor, datetime | None]] = TTLCache(maxsize=size, ttl=ttl_seconds)

    def get(self, token_hash: str) -> Actor | None:
        hit = self._entries.get(token_hash)
        if hit is None:
            return None
        actor, expires_at = hit
        if expires_at is not None and expires_at <= datetime.now(UTC):
            self.evict(token_hash)
            return None
        return actor

    def put(self, token_hash: str, actor: Actor, expires_at: datetime | None = None) -> None:
        self._entries[token_hash] = (actor, expires_at)

    def evict(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)

    def clear(self) -> None:
        self._entries.clear()
