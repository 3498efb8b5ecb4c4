"""Stand-ins for the providers at the HTTP (and SMTP) boundary.

They check what a real provider checks — the account path and basic auth for Twilio, the bearer
token for Slack — and answer with the providers' documented example payloads (fixtures/), so the
real SDKs parse real-looking responses.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    data.pop("_source", None)
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeTwilio:
    """api.twilio.com's Messages endpoint, reached through an httpx ASGI transport."""

    account_sid: str
    auth_token: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail_with: tuple[int, dict[str, str]] | None = None  # (status, headers) for the next calls
    app: FastAPI = field(init=False)

    def __post_init__(self) -> None:
        self.app = FastAPI()

        @self.app.post("/2010-04-01/Accounts/{sid}/Messages.json")
        async def create_message(sid: str, request: Request) -> JSONResponse:
            expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
            if sid != self.account_sid or request.headers.get("authorization") != f"Basic {expected}":
                return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, 401)
            if self.fail_with is not None:
                status, headers = self.fail_with
                return JSONResponse(
                    {"code": 20429, "message": "Too Many Requests", "status": status}, status, headers
                )
            form = dict((await request.form()).items())
            if not form.get("To") or not form.get("From") or not form.get("Body"):
                return JSONResponse({"code": 21604, "message": "'To' is required", "status": 400}, 400)
            self.calls.append({"host": request.url.hostname, "path": request.url.path, "form": form})
            resource = fixture("twilio_message_resource.json")
            n = len(self.calls)
            resource.update(
                body=form["Body"], to=form["To"], sid=f"SM{n:032x}", account_sid=sid, **{"from": form["From"]}
            )
            return JSONResponse(resource, 201)


@dataclass
class FakeSlack:
    """slack.com/api's chat.postMessage, served on a loopback port (the SDK speaks aiohttp)."""

    token: str
    port: int = field(default_factory=free_port)
    posts: list[dict[str, Any]] = field(default_factory=list)
    fail_with: tuple[int, dict[str, Any], dict[str, str]] | None = None
    unreachable_channels: set[str] = field(default_factory=set)
    app: FastAPI = field(init=False)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def __post_init__(self) -> None:
        self.app = FastAPI()

        @self.app.post("/api/chat.postMessage")
        async def post_message(request: Request) -> JSONResponse:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            if self.fail_with is not None:
                status, body, headers = self.fail_with
                return JSONResponse(body, status, headers)
            if request.headers.get("content-type", "").startswith("application/json"):
                args = await request.json()
            else:
                args = dict((await request.form()).items())
            if not args.get("channel") or not args.get("text"):
                return JSONResponse({"ok": False, "error": "invalid_arguments"})
            if args["channel"] in self.unreachable_channels:
                return JSONResponse({"ok": False, "error": "not_in_channel"})
            self.posts.append(args)
            response = fixture("slack_chat_postMessage.json")
            ts = f"1700000000.{len(self.posts):06d}"
            response.update(channel=args["channel"], ts=ts)
            response["message"].update(text=args["text"], ts=ts)
            if args.get("thread_ts"):
                response["message"]["thread_ts"] = args["thread_ts"]
            return JSONResponse(response)

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task


class _Sink:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(
                {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": parsed}
            )
        return "250 OK"


class SmtpSink:
    """A local SMTP server standing in for the outbound relay."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = _Sink()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.handler.messages

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
