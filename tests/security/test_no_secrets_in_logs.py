"""Every log record of a full lifecycle — REST, MCP, webhooks, logins, jobs — is free of secrets."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging

import httpx
from twilio.request_validator import RequestValidator

from osiris.app import logs
from tests.support.jobs import drain
from tests.support.servers import mcp_over_http

from .security_helpers import SECRETS

LOGGERS = (
    "",
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "sqlalchemy",
    "sqlalchemy.engine",
    "mcp",
    "httpx",
)
LOGGERS += ("osiris", "pgqueuer", "asyncio", "gidgethub", "twilio", "pgserver", "alembic")


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # the rendered message, its raw arguments, extras and any traceback, all of it
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()} {record.__dict__!r}")
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


async def test_a_full_lifecycle_logs_no_secret(live_app, factory, runtime, settings, record_property):
    """Root logger and uvicorn, SQLAlchemy, MCP, httpx, pgqueuer at DEBUG, through the production
    formatter too, while: a failed and a good login, a bad token, create, claim, submit over MCP,
    reject, resubmit over REST, approve, a signed GitHub webhook, a signed Twilio webhook, and every
    job drained. No token, JWT, password, webhook secret or secret key appears."""
    handler = Everything()
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    logs.configure("DEBUG")  # the production pipeline (structlog, request ids), into a buffer
    rendered = io.StringIO()
    root.handlers[0].setStream(rendered)
    root.addHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    password = "reviewer-password-" + "p" * 12
    wrong_password = "wrong-password-" + "w" * 12
    await factory.user("reviewer", name="rita", password=password)
    agent_token = await factory.token(await factory.user("agent", name="bot"))
    agent = {"Authorization": f"Bearer {agent_token}"}
    try:
        async with httpx.AsyncClient(base_url=live_app.url, timeout=30) as c:
            assert (
                await c.post("/api/v1/auth/token", data={"username": "rita", "password": wrong_password})
            ).status_code == 401
            r = await c.post("/api/v1/auth/token", data={"username": "rita", "password": password})
            jwt = r.json()["access_token"]
            human = {"Authorization": f"Bearer {jwt}"}
            assert (
                await c.get("/api/v1/tasks", headers={"Authorization": "Bearer osr_" + "n" * 43})
            ).status_code == 401
            task = (await c.post("/api/v1/tasks", json={"title": "log me"}, headers=agent)).json()["id"]
            assert (await c.post(f"/api/v1/tasks/{task}/claim", headers=agent)).status_code == 200
            async with mcp_over_http(live_app.url, agent_token) as mcp:
                result = await mcp.call_tool(
                    "submit_artifact",
                    {"task_id": task, "content": {"README.md": "# v1\n"}, "idempotency_key": "log-1"},
                )
                assert not result.is_error, result.content
            r = await c.post(f"/api/v1/tasks/{task}/reject", json={"feedback": "more"}, headers=human)
            assert r.status_code == 200, r.text
            r = await c.post(
                f"/api/v1/tasks/{task}/artifacts", json={"content": {"README.md": "# v2\n"}}, headers=agent
            )
            assert r.status_code == 201, r.text
            # a version is approvable once published: the publish job runs (and logs) first
            await drain(runtime, settings)
            r = await c.post(f"/api/v1/tasks/{task}/approve", json={"version": 2}, headers=human)
            assert r.status_code == 200, r.text

            body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
            key = SECRETS["github_webhook_secret"].encode()
            r = await c.post(
                "/api/v1/webhooks/github",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "ping",
                    "X-GitHub-Delivery": "log-delivery-1",
                    "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
                },
            )
            assert r.status_code == 200, r.text
            form = {"From": "whatsapp:+15550100", "Body": "please add tests", "MessageSid": "SM" + "1" * 32}
            url = live_app.url + "/api/v1/webhooks/twilio"
            signature = RequestValidator(SECRETS["twilio_auth_token"]).compute_signature(url, form)
            r = await c.post(url, data=form, headers={"X-Twilio-Signature": signature})
            assert r.status_code == 200, r.text
        await drain(runtime, settings)
    finally:
        root.handlers[:] = saved_handlers
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)

    secrets = {
        "agent token": agent_token,
        "agent token body": agent_token.removeprefix("osr_"),
        "JWT": jwt,
        "JWT signature": jwt.rsplit(".", 1)[1],
        "password": password,
        "wrong password": wrong_password,
        "admin password": settings.auth.admin_password.get_secret_value(),
        "secret key": settings.auth.secret_key.get_secret_value(),
        **SECRETS,
    }
    text = "\n".join(handler.lines) + rendered.getvalue()
    assert len(handler.lines) > 100, "the capture saw too little to prove anything"
    assert "POST /api/v1/tasks" in text or "/api/v1/tasks" in text  # the requests were logged
    record_property("log lines searched", len(handler.lines))
    record_property("secrets searched for", ", ".join(secrets))
    leaked = {name for name, value in secrets.items() if value in text}
    assert not leaked, leaked
