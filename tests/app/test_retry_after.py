"""The one Retry-After reader, and the defaults each caller keeps on top of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from osiris.app.retry_after import parse_retry_after, retry_after_seconds
from osiris.github_bridge.github_client import retry_delay
from osiris.ingest.notify import retry_after


def _http_date(delta: timedelta) -> str:
    return format_datetime(datetime.now(UTC) + delta, usegmt=True)


def test_seconds_dates_and_nonsense():
    assert parse_retry_after("12") == 12
    assert parse_retry_after(" 0.2 ") == pytest.approx(0.2)  # webhook receivers send fractions
    assert 80 <= parse_retry_after(_http_date(timedelta(seconds=90))) <= 91
    assert parse_retry_after(_http_date(timedelta(seconds=-90))) == 0  # a past date: now
    assert parse_retry_after("-5") == 0
    for nonsense in ("soon", "", "nan", "inf", "1e400"):
        assert parse_retry_after(nonsense) is None, nonsense


def test_any_spelling_of_the_header():
    assert retry_after_seconds({"Retry-After": "3"}) == 3
    assert retry_after_seconds({"retry-after": "3"}) == 3
    assert retry_after_seconds(httpx.Headers({"RETRY-AFTER": "3"})) == 3
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None
    assert retry_after_seconds({"Retry-After": "  "}) is None


def test_each_caller_keeps_its_own_default_and_bounds():
    # the channel senders: 30 s without a readable hint, at least 1 s
    assert retry_after({}) == 30 and retry_after({"Retry-After": "soon"}) == 30
    assert retry_after({"Retry-After": "0"}) == 1
    assert retry_after({}, default=7) == 7
    # the GitHub client: an unreadable hint still means "later" (its default), clamped to 1 s..1 h
    assert retry_delay(503, {"Retry-After": "soon"}, b"", 30.0) == 30
    assert retry_delay(503, {"Retry-After": "0"}, b"", 30.0) == 1
    assert retry_delay(429, {"Retry-After": "99999"}, b"", 30.0) == 3600
    assert retry_delay(403, {"Retry-After": "soon"}, b"", 30.0) == 30  # a secondary rate limit
    assert retry_delay(404, {"Retry-After": "5"}, b"", 30.0) is None
