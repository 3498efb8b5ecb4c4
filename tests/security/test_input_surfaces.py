"""Hostile input on every surface: traversal, oversized and malformed bodies → 4xx, never 5xx."""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from .security_helpers import SECRETS

WEBHOOKS = (
    "/api/v1/webhooks/github",
    "/api/v1/webhooks/twilio",
    "/api/v1/webhooks/slack/events",
    "/api/v1/webhooks/slack/commands",
    "/api/v1/webhooks/email",
)
SURFACES = (*WEBHOOKS, "/api/v1/tasks", "/api/v1/auth/token", "/login", "/mcp")


def raw(url: str, request: bytes) -> int:
    """Send bytes as they are (no client normalises `..` or re-encodes), return the status code."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


@pytest.fixture
async def agent_token(factory) -> str:
    return await factory.token(await factory.user("agent"))


@pytest.mark.parametrize(
    "path",
    [
        "/git/../../etc/passwd",
        "/git/default.git/../../../etc/passwd",
        "/git/%2e%2e/%2e%2e/etc/passwd",
        "/git/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/info/refs?service=git-upload-pack",
        "/git/..%2f..%2fpg/info/refs?service=git-upload-pack",
        "/git/default.git/objects/../../../../pg/PG_VERSION",
        "/static/../../osiris/app/config.py",
        "/api/v1/tasks/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/tasks/1/artifacts/..%2f..%2fetc",
    ],
)
def test_path_traversal_is_refused(live_app, agent_token, path):
    """`..`, `%2e%2e` and `%2f` in the git, static and REST paths, sent byte for byte: 4xx."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {agent_token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status = raw(live_app.url, request)
    assert 400 <= status < 500, (path, status)


async def test_artifact_paths_outside_the_tree_are_refused(client, factory):
    """Artifact file names that climb out, are absolute, touch .git, hold NUL or a drive: 422."""
    _, headers = await factory.member("agent")
    task = (await client.post("/api/v1/tasks", json={"title": "t"}, headers=headers)).json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task}/claim", headers=headers)).status_code == 200
    for name in ("../escape.txt", "/etc/passwd", "a/../../b", ".git/config", "a\x00b", "C:\\x"):
        r = await client.post(
            f"/api/v1/tasks/{task}/artifacts", json={"content": {name: "x"}, "kind": "files"}, headers=headers
        )
        assert r.status_code == 422, (name, r.status_code, r.text)


@pytest.mark.parametrize("path", SURFACES)
def test_oversized_bodies_are_413_before_being_read(live_app, path):
    """Every webhook, the REST API, both logins and MCP: a declared length over the limit is 413;
    a chunked body without a length is cut off at the limit (413) or refused before it is read."""
    limit = 2 * live_app.settings.tasks.max_artifact_bytes + 65536
    declared = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {limit + 1}\r\nConnection: close\r\n\r\n"
    ).encode()
    assert raw(live_app.url, declared) == 413
    # no Content-Length at all: the body is counted as it streams in
    with httpx.Client(base_url=live_app.url, timeout=30) as c:
        chunks = (b"x" * 65536 for _ in range(limit // 65536 + 2))
        r = c.post(path, content=chunks, headers={"Content-Type": "application/json"})
    # 413 when the body is read; a surface that refuses first (no credentials, not a form) is a 4xx
    # without having read it
    assert 400 <= r.status_code < 500, (path, r.status_code)
    assert r.status_code == 413 or r.status_code in (401, 403, 422), (path, r.status_code)


def _github_signature(body: bytes) -> str:
    key = SECRETS["github_webhook_secret"].encode()
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


MALFORMED = [
    (b'{"title": "\xff\xfe bad utf-8"}', "application/json"),
    (b'{"title": "\\ud800 lone surrogate"}', "application/json"),
    (b'{"title": ', "application/json"),
    (b"\x00\x01\x02", "application/json"),
    (b"Body=%ZZ&From=%E0%A4%A", "application/x-www-form-urlencoded"),
    (b"Body=\xff\xfe&From=whatsapp%3A%2B1555", "application/x-www-form-urlencoded"),
    (b"username=%ff%fe&password=%", "application/x-www-form-urlencoded"),
    (b"--x\r\nContent-Disposition: form-data\r\n\r\n", "multipart/form-data; boundary=x"),
]


@pytest.mark.parametrize("path", SURFACES)
def test_malformed_encodings_are_4xx(live_app, agent_token, path):
    """Invalid UTF-8 in JSON and form bodies, truncated JSON, NUL bytes, broken percent-encoding
    and multipart, in the body and the query string, on every surface: 4xx, never 5xx."""
    with httpx.Client(base_url=live_app.url, timeout=30) as c:
        for body, content_type in MALFORMED:
            headers = {
                "Content-Type": content_type,
                "Authorization": f"Bearer {agent_token}",
                # signed, so the GitHub webhook gets as far as parsing the body
                "X-Hub-Signature-256": _github_signature(body),
                "X-GitHub-Event": "issue_comment",
                "X-GitHub-Delivery": "d-1",
                "Accept": "application/json, text/event-stream",
            }
            r = c.post(path, content=body, headers=headers)
            if r.status_code == 202:  # the one valid body here (JSON may escape a lone surrogate),
                assert path.endswith("github") and b"ud800" in body  # signed, for no repo we serve
                continue
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text[:300])
        # a bad percent-encoding in the query string too
        r = c.post(path + "?x=%zz&y=%E0%A4", content=b"{}", headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (path, r.status_code)


async def _login(client, path: str, password: str) -> int:
    form = {"username": "target", "password": password}
    if path == "/login":  # the portal's form carries its CSRF token
        page = await client.get("/login")
        form["csrf_token"] = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return (await client.post(path, data=form)).status_code


@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/login"])
async def test_login_and_token_endpoints_are_rate_limited(client, factory, runtime, path):
    """Password guessing at POST /api/v1/auth/token and the portal's /login: 429 after the limit,
    and then even the right password waits (the limit comes before the check)."""
    right = "a-long-password-1"
    await factory.user("reviewer", name="target", password=right)
    guesses = [
        await _login(client, path, "guess") for _ in range(runtime.settings.auth.login_rate_per_minute)
    ]
    assert set(guesses) == {401}
    assert await _login(client, path, "guess") == 429
    assert await _login(client, path, right) == 429
