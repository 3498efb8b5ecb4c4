"""The one reader of `Retry-After` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date).

It only reads what the other side asked for; what to do without a readable hint, and how far to
trust one, is each caller's own policy, stated where it calls: the channel senders wait 30 s by
default and at least 1 s (`ingest.notify.retry_after`), the GitHub client its `github_retry_seconds`
clamped to 1 s..1 h (`github_client.retry_delay`), outbound webhooks their exponential backoff capped
at `webhooks_retry_max_seconds` (`outbound_webhooks.delivery`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a Retry-After value, never negative (a date in the past is 0); None when
    it is neither a number of seconds nor an HTTP-date. Fractional seconds are taken as given: some
    receivers send them."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": an HTTP-date is always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def header_value(headers: Mapping[str, str] | None) -> str | None:
    """The Retry-After header of any mapping (httpx's, a plain dict), whatever its spelling."""
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            return value
    return None


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the answer asked us to wait, or None when it did not say (or said nothing readable)."""
    value = header_value(headers)
    return parse_retry_after(value) if value and value.strip() else None
