"""The port the MCP tools call: one operation per tool, the same results whichever side implements it.

`DatabaseGateway` runs inside OSIRIS: one transaction per call (the edge owns it), the caller taken
from the bearer token the HTTP auth middleware verified. `rest_gateway.RestGateway` runs in
`osiris mcp` and calls a running OSIRIS over HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import db, oauth
from osiris.app.actors import Actor
from osiris.app.errors import Unauthenticated
from osiris.app.models import Role
from osiris.app.routing import Aging
from osiris.app.runtime import Runtime
from osiris.app.schemas import ArtifactDetail, PriorityName
from osiris.mcp import ask, service
from osiris.mcp.ask import AskedRequester
from osiris.mcp.schemas import (
    ClaimedTask,
    FeedbackBatch,
    MyTasks,
    PendingTasks,
    PostedMessage,
    ReleasedTask,
    SubmissionResult,
    TaskContext,
)

T = TypeVar("T")


class Gateway(Protocol):
    async def read_pending_tasks(
        self, *, limit: int, repo: str | None, priority: PriorityName | None
    ) -> PendingTasks: ...
    async def claim_task(self, task_id: int) -> ClaimedTask: ...
    async def submit_artifact(
        self,
        task_id: int,
        *,
        content: str | dict[str, str],
        kind: str,
        summary: str | None,
        idempotency_key: str | None,
    ) -> SubmissionResult: ...
    async def read_feedback(self, task_id: int, *, since: int | None) -> FeedbackBatch: ...
    async def get_task(self, task_id: int) -> TaskContext: ...
    async def get_artifact(self, task_id: int, *, version: int) -> ArtifactDetail: ...
    async def list_my_tasks(self) -> MyTasks: ...
    async def post_message(self, task_id: int, *, body: str) -> PostedMessage: ...
    async def ask_requester(self, task_id: int, *, question: str) -> AskedRequester: ...
    async def release_task(self, task_id: int, *, reason: str) -> ReleasedTask: ...
    async def check_readable(self, task_id: int) -> None:
        """Raise TaskNotFound unless the caller may see the task (guards resource subscriptions)."""
        ...


def current_actor() -> Actor:
    """The caller of this MCP request, as the bearer-token verifier resolved it."""
    token = get_access_token()
    claims = token.claims if token is not None else None
    if not claims:
        raise Unauthenticated("send Authorization: Bearer <token>")
    scopes = claims.get("scopes")
    return Actor(
        org_id=int(claims["org_id"]),
        user_id=int(claims["user_id"]),
        name=str(claims["name"]),
        role=Role(claims["role"]),
        scopes=frozenset(scopes) if scopes is not None else None,
    )


class DatabaseGateway:
    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        # The runtime exists only once the app's lifespan has started; look it up per call.
        self._runtime = runtime

    async def _run(self, op: Callable[[AsyncSession, Runtime, Actor], Awaitable[T]], *, name: str) -> T:
        runtime = self._runtime()
        actor = current_actor()
        oauth.require_scope(actor, oauth.MCP_SCOPES.get(name))  # an OAuth token needs the tool's scope
        async with db.transaction(runtime.sessions) as session:
            return await op(session, runtime, actor)

    async def read_pending_tasks(
        self, *, limit: int, repo: str | None, priority: PriorityName | None
    ) -> PendingTasks:
        return await self._run(
            lambda s, r, a: service.read_pending_tasks(
                s,
                a,
                limit=limit,
                repo=repo,
                priority=priority,
                aging=Aging.of(r.settings),
            ),
            name="read_pending_tasks",
        )

    async def claim_task(self, task_id: int) -> ClaimedTask:
        return await self._run(lambda s, r, a: service.claim_task(s, r, a, task_id), name="claim_task")

    async def submit_artifact(
        self,
        task_id: int,
        *,
        content: str | dict[str, str],
        kind: str,
        summary: str | None,
        idempotency_key: str | None,
    ) -> SubmissionResult:
        return await self._run(
            lambda s, r, a: service.submit_artifact(
                s, r, a, task_id, content=content, kind=kind, summary=summary, idempotency_key=idempotency_key
            ),
            name="submit_artifact",
        )

    async def read_feedback(self, task_id: int, *, since: int | None) -> FeedbackBatch:
        return await self._run(
            lambda s, r, a: service.read_feedback(s, r, a, task_id, since=since), name="read_feedback"
        )

    async def get_task(self, task_id: int) -> TaskContext:
        return await self._run(lambda s, r, a: service.get_task(s, r, a, task_id), name="get_task")

    async def get_artifact(self, task_id: int, *, version: int) -> ArtifactDetail:
        return await self._run(
            lambda s, r, a: service.get_artifact(s, r, a, task_id, version=version), name="get_artifact"
        )

    async def list_my_tasks(self) -> MyTasks:
        return await self._run(lambda s, r, a: service.list_my_tasks(s, r, a), name="list_my_tasks")

    async def post_message(self, task_id: int, *, body: str) -> PostedMessage:
        return await self._run(
            lambda s, r, a: service.post_message(s, r, a, task_id, body=body), name="post_message"
        )

    async def ask_requester(self, task_id: int, *, question: str) -> AskedRequester:
        return await self._run(
            lambda s, r, a: ask.ask_requester(s, r, a, task_id, question=question), name="ask_requester"
        )

    async def release_task(self, task_id: int, *, reason: str) -> ReleasedTask:
        return await self._run(
            lambda s, _r, a: service.release_task(s, a, task_id, reason=reason), name="release_task"
        )

    async def check_readable(self, task_id: int) -> None:
        await self._run(lambda s, _r, a: service.check_readable(s, a, task_id), name="check_readable")
