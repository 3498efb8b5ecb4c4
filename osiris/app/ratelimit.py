"""In-process rate limits (moving window, from the `limits` library)."""

from __future__ import annotations

from limits import RateLimitItemPerMinute, storage, strategies

from osiris.app.errors import RateLimited


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self._item = RateLimitItemPerMinute(per_minute)
        self._window = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def hit(self, *keys: str) -> None:
        if not self._window.hit(self._item, *keys):
            raise RateLimited("too many attempts; wait a minute")
