"""The gateway of `osiris mcp`: the same operations, over a running OSIRIS's REST API.

Problem responses come back as `RemoteProblem`, an OsirisError with the server's stable code, so the
tools report `not_your_task` or `patch_does_not_apply` exactly as the in-process gateway does.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

import httpx

from osiris import __version__
from osiris.app.errors import OsirisError, Unavailable
from osiris.app.models import TaskStatus
from osiris.app.schemas import (
    ArtifactDetail,
    EventRead,
    MessageRead,
    PriorityName,
    SubmissionRead,
    TaskDetail,
    TaskRead,
)
from osiris.mcp.ask import AskedRequester, requester_channel
from osiris.mcp.schemas import (
    FEEDBACK_PAGE,
    ClaimedTask,
    FeedbackBatch,
    MyTasks,
    PendingTask,
    PendingTasks,
    PostedMessage,
    ReleasedTask,
    SubmissionResult,
    TaskContext,
    WhoAmI,
    claimed,
    submission_result,
    task_context,
)

EVENTS_PAGE = 500  # the REST events endpoint's page size


class RemoteProblem(OsirisError):
    """An error the OSIRIS server answered with (`application/problem+json`)."""

    def __init__(self, status: int, code: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.title = status, code, title

    @classmethod
    def from_response(cls, response: httpx.Response) -> RemoteProblem:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        fallback = "unavailable" if response.status_code >= 500 else "http_error"
        return cls(
            response.status_code,
            str(body.get("code") or fallback),
            str(body.get("title") or response.reason_phrase),
            str(body.get("detail") or response.text[:500] or response.reason_phrase),
        )


class RestGateway:
    def __init__(
        self, base_url: str, token: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"osiris-mcp/{__version__}"},
            timeout=httpx.Timeout(30.0),
            transport=transport,
        )
        self._me: WhoAmI | None = None

    async def __aenter__(self) -> RestGateway:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach OSIRIS at {self._http.base_url}: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise RemoteProblem.from_response(response)
        return response.json() if response.content else None

    async def me(self) -> WhoAmI:
        if self._me is None:  # a token names one user for its whole life
            self._me = WhoAmI.model_validate(await self._call("GET", "/api/v1/agent/me"))
        return self._me

    async def _renew(self, task: TaskRead) -> TaskRead:
        """Any call by the holder renews the lease, as in the server's own gateway."""
        me = await self.me()
        if me.role != "agent" or task.status != TaskStatus.IN_PROGRESS or task.assignee_id != me.user_id:
            return task
        return TaskRead.model_validate(await self._call("POST", f"/api/v1/tasks/{task.id}/heartbeat"))

    async def _context(self, task_id: int, *, renew: bool) -> TaskContext:
        detail = TaskDetail.model_validate(await self._call("GET", f"/api/v1/tasks/{task_id}"))
        task = TaskRead.model_validate(detail.model_dump(exclude={"artifacts", "messages"}))
        if renew:
            task = (await self._renew(task)).model_copy(update={"pr_url": task.pr_url, "git": task.git})
        me = await self.me()
        return task_context(task, you=me.user_id, messages=detail.messages, artifacts=detail.artifacts)

    async def read_pending_tasks(
        self, *, limit: int, repo: str | None, priority: PriorityName | None
    ) -> PendingTasks:
        params: dict[str, Any] = {"limit": limit}
        if repo is not None:
            params["repo"] = repo
        if priority is not None:
            params["min_priority"] = priority
        rows = await self._call("GET", "/api/v1/tasks/pending", params=params)
        return PendingTasks(tasks=[PendingTask.from_task(TaskRead.model_validate(r)) for r in rows])

    async def claim_task(self, task_id: int) -> ClaimedTask:
        await self._call("POST", f"/api/v1/tasks/{task_id}/claim")
        context = await self._context(task_id, renew=False)
        if context.feedback:
            # The claim hands over all feedback so far: move the read cursor past it, as the server does.
            while len((await self.read_feedback(task_id, since=None)).items) >= FEEDBACK_PAGE:
                pass
        return claimed(context)

    async def submit_artifact(
        self,
        task_id: int,
        *,
        content: str | dict[str, str],
        kind: str,
        summary: str | None,
        idempotency_key: str | None,
    ) -> SubmissionResult:
        body = {"content": content, "kind": kind, "summary": summary, "idempotency_key": idempotency_key}
        sub = SubmissionRead.model_validate(
            await self._call("POST", f"/api/v1/tasks/{task_id}/artifacts", json=body)
        )
        return submission_result(
            sub.artifact, status=sub.task.status, created=sub.created, job_id=sub.publish_job_id
        )

    async def read_feedback(self, task_id: int, *, since: int | None) -> FeedbackBatch:
        body = {} if since is None else {"since": since}
        return FeedbackBatch.model_validate(
            await self._call("POST", f"/api/v1/tasks/{task_id}/feedback/read", json=body)
        )

    async def get_task(self, task_id: int) -> TaskContext:
        return await self._context(task_id, renew=True)

    async def get_artifact(self, task_id: int, *, version: int) -> ArtifactDetail:
        await self._renew(TaskRead.model_validate(await self._call("GET", f"/api/v1/tasks/{task_id}")))
        return ArtifactDetail.model_validate(
            await self._call("GET", f"/api/v1/tasks/{task_id}/artifacts/{version}")
        )

    async def list_my_tasks(self) -> MyTasks:
        me = await self.me()
        mine: list[TaskRead] = []
        for status in (TaskStatus.IN_PROGRESS, TaskStatus.REVIEW):
            page = await self._call(
                "GET",
                "/api/v1/tasks",
                params={"status": status.value, "assignee_id": me.user_id, "limit": 200},
            )
            mine.extend([await self._renew(TaskRead.model_validate(t)) for t in page["items"]])
        return MyTasks(tasks=sorted(mine, key=lambda t: t.id))

    async def post_message(self, task_id: int, *, body: str) -> PostedMessage:
        message = MessageRead.model_validate(
            await self._call("POST", f"/api/v1/tasks/{task_id}/messages", json={"body": body})
        )
        with contextlib.suppress(RemoteProblem):  # in REVIEW there is no lease to renew
            await self._call("POST", f"/api/v1/tasks/{task_id}/heartbeat")
        return PostedMessage(message=message)

    async def ask_requester(self, task_id: int, *, question: str) -> AskedRequester:
        task = TaskRead.model_validate(await self._call("GET", f"/api/v1/tasks/{task_id}"))
        channel = requester_channel(task.channel)
        posted = await self.post_message(task_id, body=question)
        return AskedRequester(message=posted.message, channel=channel)

    async def release_task(self, task_id: int, *, reason: str) -> ReleasedTask:
        task = TaskRead.model_validate(await self._call("POST", f"/api/v1/tasks/{task_id}/release"))
        return ReleasedTask(task=task)

    async def check_readable(self, task_id: int) -> None:
        await self._call("GET", f"/api/v1/tasks/{task_id}")

    async def last_event_id(self, task_id: int, *, after: int | None = None) -> int | None:
        """The id of the task's newest event (after `after`), paging through the replay log."""
        last = after
        while True:
            params = {} if last is None else {"after_id": last}
            page = [
                EventRead.model_validate(e)
                for e in await self._call("GET", f"/api/v1/tasks/{task_id}/events", params=params)
            ]
            if page:
                last = page[-1].id
            if len(page) < EVENTS_PAGE:
                return last
