"""Stand-ins for the channel providers (Twilio, Slack, Telegram, an SMTP relay) at the HTTP and SMTP
boundary, for the channel tests and the reliability suite's provider faults.

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
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bench._server import free_port

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    data.pop("_source", None)
    return data


async def serve(app: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task]:
    """Run a fake on a loopback port (for SDKs that bring their own HTTP client, e.g. aiohttp)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    return server, task


async def shutdown(server: uvicorn.Server | None, task: asyncio.Task | None) -> None:
    if server is not None and task is not None:
        server.should_exit = True
        await task


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
    workspace_tokens: dict[str, str] = field(default_factory=dict)  # other workspaces' bot token -> team
    teams: list[str] = field(default_factory=list)  # the workspace each accepted post was made in
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
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            team = "T0001" if given == self.token else self.workspace_tokens.get(given)
            if team is None:
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
            self.teams.append(team)
            response = fixture("slack_chat_postMessage.json")
            ts = f"1700000000.{len(self.posts):06d}"
            response.update(channel=args["channel"], ts=ts)
            response["message"].update(text=args["text"], ts=ts)
            if args.get("thread_ts"):
                response["message"]["thread_ts"] = args["thread_ts"]
            return JSONResponse(response)

    async def start(self) -> None:
        self._server, self._task = await serve(self.app, self.port)

    async def stop(self) -> None:
        await shutdown(self._server, self._task)


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


@dataclass
class FakeTelegram:
    """api.telegram.org's Bot API methods OSIRIS calls, on a loopback port (`/bot<token>/<method>`).

    Parameters arrive the way python-telegram-bot sends them (a form whose complex values are
    JSON); answers are the Bot API's `{"ok": true, "result": …}` envelopes.
    """

    token: str
    bot_id: int
    port: int = field(default_factory=free_port)
    calls: list[dict[str, Any]] = field(default_factory=list)  # every call, method and parameters
    fail_with: tuple[int, dict[str, Any]] | None = None
    app: FastAPI = field(init=False)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task | None = None
    _next_id: int = 5000

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c["method"] == "sendMessage"]

    def __post_init__(self) -> None:
        self.app = FastAPI()

        @self.app.post("/bot{token}/{method}")
        async def call(token: str, method: str, request: Request) -> JSONResponse:
            if token != self.token:
                return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
            if request.headers.get("content-type", "").startswith("application/json"):
                params = await request.json()
            else:
                params = {}
                for k, v in (await request.form()).items():
                    try:
                        params[k] = json.loads(str(v))
                    except ValueError:
                        params[k] = v
            if self.fail_with is not None:
                status, body = self.fail_with
                return JSONResponse(body, status)
            self.calls.append({"method": method, "params": params})
            if method == "setWebhook":
                if not params.get("url", "").startswith("https://"):
                    return JSONResponse(
                        {
                            "ok": False,
                            "error_code": 400,
                            "description": "Bad Request: bad webhook: HTTPS url",
                        },
                        400,
                    )
                return JSONResponse({"ok": True, "result": True, "description": "Webhook was set"})
            if method == "sendMessage":
                if not params.get("chat_id") or not params.get("text"):
                    return JSONResponse(
                        {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"},
                        400,
                    )
                self._next_id += 1
                chat_id = int(params["chat_id"])
                result: dict[str, Any] = {
                    "message_id": self._next_id,
                    "date": 1700000000,
                    "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
                    "from": {
                        "id": self.bot_id,
                        "is_bot": True,
                        "first_name": "OSIRIS",
                        "username": "osiris_bot",
                    },
                    "text": params["text"],
                }
                reply = params.get("reply_parameters")
                if isinstance(reply, dict):
                    result["reply_to_message"] = {
                        "message_id": reply["message_id"],
                        "date": 1700000000,
                        "chat": result["chat"],
                    }
                return JSONResponse({"ok": True, "result": result})
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def start(self) -> None:
        self._server, self._task = await serve(self.app, self.port)

    async def stop(self) -> None:
        await shutdown(self._server, self._task)
