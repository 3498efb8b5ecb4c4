"""The agent's tools: thin wrappers over a `Gateway`, with schemas, annotations and typed errors.

Every tool returns structured content (its return model is its output schema). A domain error becomes
a tool error result whose text starts with the same stable code REST uses (`not_your_task: …`) and
whose structured content is `{"error": {"code", "status", "message"}}`; that translation happens in
`_reporting_errors`, the one place for it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from osiris.app.errors import OsirisError, Unavailable
from osiris.app.schemas import ArtifactDetail, PriorityName
from osiris.mcp.ask import AskedRequester
from osiris.mcp.gateway import Gateway
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

P = ParamSpec("P")
R = TypeVar("R")

TaskId = Annotated[int, Field(ge=1, description="the task's id")]
Limit = Annotated[int, Field(ge=1, le=100, description="at most this many tasks")]
Repo = Annotated[str | None, Field(max_length=200, description="only tasks for this repository")]
Priority = Annotated[PriorityName | None, Field(description="only tasks of this priority or higher")]
Content = Annotated[
    str | dict[str, str],
    Field(description="a unified diff (patch), an object of {path: full file content} (files), or text"),
]
Kind = Annotated[
    Literal["auto", "patch", "files", "text"], Field(description="auto detects it from the content")
]
Summary = Annotated[
    str | None, Field(max_length=20_000, description="what changed and why, for the reviewer")
]
IdempotencyKey = Annotated[
    str | None,
    Field(max_length=200, description="repeat a submission safely: the same key returns the first result"),
]
Since = Annotated[
    int | None, Field(ge=0, description="a message id; omit to get what arrived since your last read")
]
Version = Annotated[int, Field(ge=1, le=2**31 - 1, description="the version number (1 is the first)")]
MessageBody = Annotated[str, Field(min_length=1, max_length=50_000, description="the question or answer")]

# Reading renews the holder's lease; that is bookkeeping, not a change anyone else would see.
READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
# Each call is a new version (unless its idempotency key repeats), and it reaches beyond OSIRIS:
# a branch and a pull request on the code host.
SUBMIT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
# Giving a task back drops the claim; the work stays only in what was submitted.
RELEASE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)


def error_result(exc: OsirisError) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=f"{exc.code}: {exc.detail}")],
        structured_content={"error": {"code": exc.code, "status": exc.status, "message": exc.detail}},
        is_error=True,
    )


def _reporting_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)  # keeps the signature: the SDK derives the schemas from it
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except OsirisError as exc:
            result: Any = error_result(exc)
        except (OperationalError, InterfaceError, PoolTimeout):
            result = error_result(Unavailable("the database is not reachable; retry shortly"))
        return result  # a CallToolResult passes through the SDK unchanged

    return call


# Every tool is a closure over the gateway declared in here; mccabe adds up their few branches each.
def register_tools(server: MCPServer, gateway: Gateway) -> None:  # noqa: C901 - the tools' sum
    def tool(title: str, annotations: ToolAnnotations) -> Callable[[Callable[P, Awaitable[R]]], None]:
        def add(fn: Callable[P, Awaitable[R]]) -> None:
            server.add_tool(
                _reporting_errors(fn), title=title, annotations=annotations, structured_output=True
            )

        return add

    @tool("Read pending tasks", READ)
    async def read_pending_tasks(
        limit: Limit = 20, repo: Repo = None, priority: Priority = None
    ) -> PendingTasks:
        """Tasks waiting for an agent in your organization, highest priority first, then oldest."""
        return await gateway.read_pending_tasks(limit=limit, repo=repo, priority=priority)

    @tool("Claim a task", WRITE)
    async def claim_task(task_id: TaskId) -> ClaimedTask:
        """Take a pending task (a lease: keep calling tools on it, or it returns to the queue).

        Returns everything needed to start: the description, the conversation so far, the repository,
        the base branch, the branch your work is published to, and any earlier feedback. Fails with
        not_claimable if another agent took it first.
        """
        return await gateway.claim_task(task_id)

    @tool("Submit work", SUBMIT)
    async def submit_artifact(
        task_id: TaskId,
        content: Content,
        kind: Kind = "auto",
        summary: Summary = None,
        idempotency_key: IdempotencyKey = None,
    ) -> SubmissionResult:
        """Hand in your work on a task you hold; it goes to human review as a draft pull request.

        Returns the version number and the branch; the pull request is opened by a background job
        (publish_state "publishing" with its job id) unless it already exists. Version 1's patch is a
        diff against the base branch; a later one against the task branch osiris/task-<id> or, whole,
        against the commit that branch starts at (tried in that order). One that applies to neither
        is refused with patch_does_not_apply and nothing is stored.
        """
        return await gateway.submit_artifact(
            task_id, content=content, kind=kind, summary=summary, idempotency_key=idempotency_key
        )

    @tool("Read feedback", WRITE)
    async def read_feedback(task_id: TaskId, since: Since = None) -> FeedbackBatch:
        """New messages for you on a task, oldest first: review comments (with file, line and diff
        hunk), supervisors' portal messages and the requester's follow-ups since your last read."""
        return await gateway.read_feedback(task_id, since=since)

    @tool("Get a task", READ)
    async def get_task(task_id: TaskId) -> TaskContext:
        """A task with its conversation, feedback and submitted versions."""
        return await gateway.get_task(task_id)

    @tool("Get a version", READ)
    async def get_artifact(task_id: TaskId, version: Version) -> ArtifactDetail:
        """One submitted version with its content: for files, an object of {path: file content};
        for a patch or text, the text as submitted."""
        return await gateway.get_artifact(task_id, version=version)

    @tool("List my tasks", READ)
    async def list_my_tasks() -> MyTasks:
        """The tasks you hold (IN_PROGRESS) and those of yours awaiting review (REVIEW)."""
        return await gateway.list_my_tasks()

    @tool("Post a message", WRITE)
    async def post_message(task_id: TaskId, body: MessageBody) -> PostedMessage:
        """Ask the supervisor or the requester a question on a task you hold. It appears in the portal,
        on the pull request and in the requester's channel; answers arrive through read_feedback."""
        return await gateway.post_message(task_id, body=body)

    @tool("Ask the requester", WRITE)
    async def ask_requester(task_id: TaskId, question: MessageBody) -> AskedRequester:
        """Ask the person who requested a task you hold a question, in the chat they asked from
        (WhatsApp, Slack, email, Telegram or the GitHub issue). Their reply in that chat arrives through
        read_feedback. A task filed through the API has no requester chat: invalid_input."""
        return await gateway.ask_requester(task_id, question=question)

    @tool("Release a task", RELEASE)
    async def release_task(task_id: TaskId) -> ReleasedTask:
        """Give a task you hold back to the queue (say why with post_message first)."""
        return await gateway.release_task(task_id, reason="released by the agent")
