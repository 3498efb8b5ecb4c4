"""The GitHub fake as a real HTTP server on a loopback port (uvicorn in a thread of its own), for
`osiris serve` subprocesses that reach it through OSIRIS_GITHUB_API_URL; it can `kill -9` such a
process the moment a chosen call has taken effect on GitHub's side, before OSIRIS hears the answer."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from tests.support.fake_github import FakeGitHub


class ServedGitHub:
    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.kill: tuple[str, int] | None = None  # (regex over "METHOD /path STATUS", pid)
        self.killed: list[str] = []
        config = uvicorn.Config(self._app, log_level="warning", lifespan="off", interface="asgi3")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])))
        self.thread.daemon = True

    def kill_when(self, pattern: str, pid: int) -> None:
        """SIGKILL `pid` once a request matching `pattern` ("POST /repos/.../pulls 201") is done."""
        self.kill = (pattern, pid)

    def __enter__(self) -> ServedGitHub:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the GitHub fake did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"").decode()
        request = httpx.Request(
            scope["method"],
            f"{self.url}{scope['path']}" + (f"?{query}" if query else ""),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            content=body,
        )
        # synchronous inside: one request at a time, whatever the server's concurrency
        response = await self.fake.answer(request)
        content = response.read()
        done = f"{scope['method']} {scope['path']} {response.status_code}"
        if self.kill is not None and re.fullmatch(self.kill[0], done):
            pid = self.kill[1]
            self.kill = None
            self.killed.append(done)
            os.kill(pid, signal.SIGKILL)  # it happened on GitHub; OSIRIS never hears of it
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
        ]
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": content})
