"""The local repositories, read-only over git's smart HTTP protocol, for agents to fetch branches.

`git http-backend` does the protocol (it is git's own CGI program); this module authenticates,
allows exactly the two fetch endpoints, and runs the CGI as a subprocess:

    GET  /git/<name>.git/info/refs?service=git-upload-pack
    POST /git/<name>.git/git-upload-pack

The token comes as `Authorization: Bearer <token>` or as the HTTP Basic password, so plain
`git fetch http://agent:<token>@host/git/default.git` works. Only the organization a repository is
registered to (`repositories`) sees it; to any other token it does not exist (404). Pushing is
refused twice over: the route never reaches receive-pack, and the backend runs with
`http.receivepack=false`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from osiris.app import db, oauth, repositories
from osiris.app.actors import Actor
from osiris.app.auth import actor_from_token
from osiris.app.errors import InvalidInput, Unauthenticated
from osiris.app.runtime import Runtime
from osiris.github_bridge.gitcmd import program_path
from osiris.github_bridge.local_git import LocalGitHost

log = logging.getLogger(__name__)
router = APIRouter(tags=["git"])

_PATH = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._/-]*?)\.git/(?P<rest>info/refs|git-upload-pack|git-receive-pack)$"
)
_CHUNK = 64 * 1024
# Served repositories never show OSIRIS's bookkeeping refs, and never accept a push.
_BACKEND_CONFIG = {"uploadpack.hideRefs": "refs/osiris", "http.receivepack": "false"}


def _plain(status: int, text: str, **headers: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers=headers or None)


def _token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None  # `http://<token>@host/…` puts it in the user part
    return None


async def _authenticate(request: Request, runtime: Runtime) -> Actor | None:
    token = _token(request)
    if token is None:
        return None
    try:
        async with db.transaction(runtime.sessions) as session:
            return await actor_from_token(
                session,
                token,
                signing_key=runtime.settings.signing_key(),
                cache=runtime.services.token_cache,
                # OAuth access tokens issued for the REST API base also fetch (scope repos:read)
                audience=oauth.api_audience(runtime.settings.server.public_url),
            )
    except Unauthenticated:
        return None


async def _owned_by(runtime: Runtime, name: str, actor: Actor) -> bool:
    """A repository is served only to tokens of the organization it is registered to."""
    async with runtime.sessions() as session:
        return await repositories.owner_of(session, name) == actor.org_id


@router.api_route("/git/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def smart_http(path: str, request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    host = runtime.services.code_host
    if not isinstance(host, LocalGitHost):
        return _plain(404, "no local repositories are served here")
    actor = await _authenticate(request, runtime)
    if actor is None:
        # Basic, so that git itself asks for (or sends from the URL) a user name and the token.
        return _plain(401, "authentication required", **{"WWW-Authenticate": 'Basic realm="OSIRIS git"'})
    if actor.scopes is not None and oauth.REPOS_READ not in actor.scopes:
        return _plain(403, f"insufficient_scope: this needs the scope {oauth.REPOS_READ}")
    match = _PATH.match(path)
    if match is None or ".." in path.split("/"):
        return _plain(404, "not found")
    name, rest = match["name"], match["rest"]
    service = request.query_params.get("service")
    if rest == "git-receive-pack" or service == "git-receive-pack":
        return _plain(403, "these repositories are read-only")
    if not (
        (request.method == "GET" and rest == "info/refs" and service == "git-upload-pack")
        or (request.method == "POST" and rest == "git-upload-pack")
    ):
        return _plain(404, "only smart HTTP fetches are served")
    if not await _owned_by(runtime, name, actor):
        return _plain(404, "no such repository")  # another organization's is as good as missing
    try:
        git_dir = host.git_dir(name)
    except InvalidInput:
        git_dir = None
    if git_dir is None:
        return _plain(404, "no such repository")
    return await _run_backend(request, git_dir, rest, actor)


def _cgi_env(request: Request, git_dir: Path, rest: str, actor: Actor, body_length: int) -> dict[str, str]:
    env = {
        "PATH": program_path(),
        "HOME": os.environ.get("HOME", "/"),  # the CGI runs as this process: its own home
        "GIT_PROJECT_ROOT": str(git_dir.parent),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{git_dir.name}/{rest}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "REMOTE_USER": actor.name,
        "REMOTE_ADDR": request.client.host if request.client else "",
        "GIT_CONFIG_COUNT": str(len(_BACKEND_CONFIG)),
    }
    if request.method == "POST":
        env["CONTENT_LENGTH"] = str(body_length)
    for n, (key, value) in enumerate(_BACKEND_CONFIG.items()):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value
    for header, var in (("content-encoding", "HTTP_CONTENT_ENCODING"), ("git-protocol", "HTTP_GIT_PROTOCOL")):
        if header in request.headers:
            env[var] = request.headers[header]
    return env


async def _run_backend(request: Request, git_dir: Path, rest: str, actor: Actor) -> Response:
    # A fetch request is only the client's wants and haves (small, and capped by the body size
    # limit), while the response can be a pack of any size: read the one, stream the other.
    body = await request.body() if request.method == "POST" else b""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_cgi_env(request, git_dir, rest, actor, len(body)),
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # noqa: S101
    feeder = asyncio.create_task(_feed(proc.stdin, body))
    errors = asyncio.create_task(proc.stderr.read())
    status, headers = 200, {}
    try:
        while True:
            line = await proc.stdout.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            else:
                headers[key.strip()] = value.strip()
        if not line:  # the backend died before its headers: nothing sensible to forward
            raise RuntimeError("git http-backend produced no response")
    except Exception:
        await _reap(proc, feeder, errors)
        return _plain(500, "git backend failed")

    async def stream() -> AsyncIterator[bytes]:
        try:
            while chunk := await proc.stdout.read(_CHUNK):
                yield chunk
            await asyncio.wait_for(proc.wait(), 30)
        finally:  # also when the client goes away mid-pack: the backend must not outlive it
            await _reap(proc, feeder, errors)

    return StreamingResponse(stream(), status_code=status, headers=headers)


async def _feed(stdin: asyncio.StreamWriter, body: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        stdin.write(body)
        await stdin.drain()
    stdin.close()


async def _reap(proc: asyncio.subprocess.Process, *tasks: asyncio.Task) -> None:
    """Stop the backend if it still runs, and log what it said when it failed."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()
    for task in tasks:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            result = await task
            if isinstance(result, bytes) and result.strip() and proc.returncode:
                log.warning("git http-backend: %s", result.decode("utf-8", "replace").strip()[:500])
