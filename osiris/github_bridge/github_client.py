"""The GitHub REST/GraphQL client OSIRIS uses: gidgethub over httpx, with our auth and retry rules.

Why a wrapper: every call needs the same three things gidgethub leaves to its user — a fresh
installation token for a GitHub App, a translation of "try later" answers (5xx, 429, secondary
rate limits, timeouts) into `jobs.Retry` so the job queue re-runs the job with GitHub's own delay,
and a count of calls (the benchmark prints it). Nothing here logs a token or a key.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from gidgethub import QueryError, apps
from gidgethub import httpx as gh_httpx

from osiris.app.config import Settings
from osiris.app.jobs import Retry
from osiris.app.retry_after import header_value, parse_retry_after

USER_AGENT = "osiris-code-host"
_TOKEN_MARGIN_SECONDS = 300  # renew an installation token this long before GitHub expires it
_MAX_DELAY = 3600.0


class GitHubUnavailable(Retry):  # noqa: N818 - a Retry: GitHub asked us to come back later
    """GitHub could not answer now; `after` is its own hint (Retry-After, rate-limit reset) or ours."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def retry_delay(status: int, headers: Mapping[str, str], body: bytes, default: float) -> float | None:
    """How long to wait before asking again, or None when the answer is final."""
    hint = header_value(headers)  # an unreadable one still says "later": our default then
    seconds = None if hint is None else parse_retry_after(hint)
    if hint is not None and seconds is None:
        seconds = default
    if status >= 500 or status == 429:
        return _clamp(seconds if seconds is not None else default)
    if status == 403:
        if seconds is not None:  # secondary rate limit
            return _clamp(seconds)
        if _header(headers, "x-ratelimit-remaining") == "0":  # primary rate limit: wait for the reset
            reset = _header(headers, "x-ratelimit-reset")
            return _clamp(float(reset) - time.time() + 1 if reset else default)
        if b"rate limit" in body.lower():  # a secondary limit sent without headers
            return _clamp(max(default, 60.0))
    return None


def _clamp(seconds: float) -> float:
    return min(max(seconds, 1.0), _MAX_DELAY)


class _API(gh_httpx.GitHubAPI):
    """gidgethub's httpx client, turning transient answers into GitHubUnavailable before parsing."""

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, retry_seconds: float) -> None:
        super().__init__(client, USER_AGENT, base_url=base_url)  # type: ignore[arg-type]
        self.retry_seconds = retry_seconds
        self.calls: Counter[str] = Counter()

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        self.calls[method] += 1
        try:
            status, response_headers, content = await super()._request(method, url, headers, body)
        except httpx.TimeoutException:
            raise GitHubUnavailable(self.retry_seconds, f"GitHub timed out on {method}") from None
        except httpx.TransportError as exc:
            raise GitHubUnavailable(self.retry_seconds, f"GitHub unreachable: {type(exc).__name__}") from None
        delay = retry_delay(status, response_headers, content, self.retry_seconds)
        if delay is not None:
            raise GitHubUnavailable(delay, f"GitHub answered {status} to {method}; retry in {delay:.0f}s")
        return status, response_headers, content


def _private_key(settings: Settings) -> str:
    assert settings.github.private_key is not None  # noqa: S101 - checked by the caller
    value = settings.github.private_key.get_secret_value()
    if "-----BEGIN" in value:
        return value
    return Path(value).expanduser().read_text()


class GitHub:
    """One authenticated GitHub client: a plain token, or a GitHub App installation token."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.github.enabled:
            raise ValueError("set OSIRIS_GITHUB_TOKEN or OSIRIS_GITHUB_APP_ID to use GitHub")
        if settings.github.app_id is not None and (
            settings.github.private_key is None or settings.github.installation_id is None
        ):
            raise ValueError("a GitHub App needs OSIRIS_GITHUB_PRIVATE_KEY and OSIRIS_GITHUB_INSTALLATION_ID")
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(timeout=settings.github.timeout_seconds)
        self.api = _API(
            self.client,
            base_url=settings.github.api_url.rstrip("/"),
            retry_seconds=settings.github.retry_seconds,
        )
        self._settings = settings
        self._token: str | None = (
            settings.github.token.get_secret_value() if settings.github.token is not None else None
        )
        self._token_expires = float("inf") if self._token else 0.0

    @property
    def calls(self) -> int:
        return sum(self.api.calls.values())

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def token(self) -> str:
        """The token for the next call; an App's installation token is cached until shortly before expiry."""
        if self._token is not None and time.time() < self._token_expires - _TOKEN_MARGIN_SECONDS:
            return self._token
        s = self._settings
        answer = await apps.get_installation_access_token(
            self.api,
            installation_id=str(s.github.installation_id),
            app_id=str(s.github.app_id),
            private_key=_private_key(s),
        )
        expires = answer.get("expires_at")
        self._token = answer["token"]
        self._token_expires = parsedate_iso(expires) if isinstance(expires, str) else time.time() + 3600
        return self._token

    # --- calls ----------------------------------------------------------------------------------

    async def get(self, url: str, **params: Any) -> Any:
        return await self.api.getitem(_with_query(url, params), oauth_token=await self.token())

    async def get_all(self, url: str, **params: Any) -> list[Any]:
        token = await self.token()
        return [item async for item in self.api.getiter(_with_query(url, params), oauth_token=token)]

    async def post(self, url: str, data: Any) -> Any:
        return await self.api.post(url, data=data, oauth_token=await self.token())

    async def patch(self, url: str, data: Any) -> Any:
        return await self.api.patch(url, data=data, oauth_token=await self.token())

    async def put(self, url: str, data: Any) -> Any:
        return await self.api.put(url, data=data, oauth_token=await self.token())

    async def delete(self, url: str) -> None:
        await self.api.delete(url, oauth_token=await self.token())

    async def graphql(self, query: str, **variables: Any) -> Any:
        # gidgethub's graphql() posts to base_url + "/graphql", as GitHub (and GHES' /api/graphql) expect.
        self.api.oauth_token = await self.token()
        try:
            return await self.api.graphql(query, endpoint=self._graphql_url(), **variables)
        except QueryError as exc:
            # GitHub's GraphQL rate limit is a 200 whose errors say RATE_LIMITED: come back later.
            errors = (exc.response or {}).get("errors") if isinstance(exc.response, dict) else None
            if any(isinstance(e, dict) and e.get("type") == "RATE_LIMITED" for e in errors or []):
                delay = _clamp(max(self.api.retry_seconds, 60.0))
                raise GitHubUnavailable(
                    delay, f"GitHub's GraphQL rate limit; retry in {delay:.0f}s"
                ) from None
            raise
        finally:
            self.api.oauth_token = None

    async def graphql_fields(
        self, query: str, **variables: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A document of several fields: (data, errors), since GitHub runs every mutation of a
        document in turn and one failing leaves the others' results (and nulls its own, naming its
        alias in `path`). Transport failures and 4xx still raise, as for `graphql`."""
        try:
            return await self.graphql(query, **variables) or {}, []
        except QueryError as exc:
            answer = exc.response if isinstance(exc.response, dict) else {}
            return answer.get("data") or {}, list(answer.get("errors") or [])

    def _graphql_url(self) -> str:
        base = self._settings.github.api_url.rstrip("/")
        if base.endswith("/api/v3"):  # GitHub Enterprise Server
            return base[: -len("/v3")] + "/graphql"
        return base + "/graphql"


def parsedate_iso(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _with_query(url: str, params: Mapping[str, Any]) -> str:
    if not params:
        return url
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items() if v is not None)
    return f"{url}?{query}"


def repo_path(full_name: str, *parts: str) -> str:
    """`/repos/owner/name/...`, each part quoted but keeping the slashes of refs and paths."""
    tail = "/".join(quote(p, safe="/") for p in parts)
    return f"/repos/{full_name}/{tail}" if tail else f"/repos/{full_name}"
