"""What the MCP tools return: structured content, published as each tool's output schema.

Built from the REST read models (`TaskRead`, `MessageRead`, `ArtifactRead`), so an agent sees the same
fields whichever edge it uses, and both gateways (database, REST) produce identical shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from osiris.app.models import Task
from osiris.app.schemas import (
    PRIORITY_NAMES,
    ArtifactRead,
    GitAccess,
    MessageRead,
    PriorityName,
    ReviewCommentRead,
    TaskRead,
)

# A message to the agent is feedback, whatever its channel: review comments, portal chat, follow-ups.
TO_AGENT = "to_agent"
FEEDBACK_PAGE = 100  # read_feedback returns at most this many messages per call


class InlineComment(BaseModel):
    """One comment on a line (or a range of lines) of the diff."""

    file: str | None = None
    line: int | None = None
    start_line: int | None = Field(default=None, description="a range's first line (`line` is its last)")
    side: Literal["old", "new"] | None = Field(
        default=None, description="old: the line's number in the base (a removed line); new: in your version"
    )
    diff_hunk: str | None = Field(default=None, description="the diff context the comment is on")
    version: int | None = Field(default=None, description="the version the comment was written on")
    thread_id: int | None = Field(default=None, description="a portal review thread (see `threads`)")
    resolved: bool | None = Field(default=None, description="whether a reviewer resolved the thread")
    body: str = ""

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> InlineComment:
        line = meta.get("line", meta.get("original_line"))
        start = meta.get("start_line")
        side = meta.get("side")
        side = {"LEFT": "old", "RIGHT": "new"}.get(side, side) if isinstance(side, str) else None
        version = meta.get("version")
        thread = meta.get("comment_id") if meta.get("side") in ("old", "new") else None
        resolved = meta.get("resolved")
        return cls(
            # GitHub calls it `path`; accept either spelling from whoever recorded the message.
            file=meta.get("file") or meta.get("path"),
            line=line if isinstance(line, int) else None,
            start_line=start if isinstance(start, int) else None,
            side=side if side in ("old", "new") else None,
            diff_hunk=meta.get("diff_hunk"),
            version=version if isinstance(version, int) else None,
            thread_id=thread if isinstance(thread, int) else None,
            resolved=resolved if isinstance(resolved, bool) else None,
            body=str(meta.get("body") or ""),
        )


class FeedbackItem(BaseModel):
    id: int = Field(description="message id; pass it as `since` to read only what came after it")
    kind: str = Field(description="feedback (changes requested), review_comment, review, message, …")
    source: str = Field(description="where it was written: portal, api, github_review, whatsapp, …")
    author: str
    body: str
    file: str | None = Field(default=None, description="the file a review comment is on")
    line: int | None = Field(default=None, description="the line a review comment is on")
    start_line: int | None = Field(default=None, description="a range's first line (`line` is its last)")
    side: Literal["old", "new"] | None = Field(
        default=None, description="old: the line's number in the base (a removed line); new: in your version"
    )
    diff_hunk: str | None = Field(default=None, description="the diff context of a review comment")
    version: int | None = Field(default=None, description="the version a review comment was written on")
    thread_id: int | None = Field(
        default=None, description="a portal review thread: its current state is in the batch's `threads`"
    )
    resolved: bool | None = Field(default=None, description="whether a reviewer has resolved the thread")
    comments: list[InlineComment] = Field(
        default_factory=list, description="the inline comments of a review that requested changes"
    )
    url: str | None = None
    created_at: datetime

    @classmethod
    def from_message(cls, message: MessageRead) -> FeedbackItem:
        meta: dict[str, Any] = message.meta or {}
        where = InlineComment.from_meta(meta)
        kind = str(meta.get("kind") or "message")
        if kind == "message" and where.file:
            kind = "review_comment"
        inline = meta.get("comments")
        return cls(
            id=message.id,
            kind=kind,
            source=message.source,
            author=message.author_name,
            body=message.body,
            file=where.file,
            line=where.line,
            start_line=where.start_line,
            side=where.side,
            diff_hunk=where.diff_hunk,
            version=where.version,
            thread_id=where.thread_id,
            resolved=where.resolved,
            comments=[InlineComment.from_meta(c) for c in inline if isinstance(c, dict)]
            if isinstance(inline, list)
            else [],
            url=meta.get("url") or meta.get("html_url"),
            created_at=message.created_at,
        )


class PendingTask(BaseModel):
    """A task in the queue: enough to choose one. claim_task and get_task return the whole task.

    Deliberately lean: clients validate every result against the output schema, and this list is
    read far more often than anything else."""

    id: int
    title: str
    description: str
    priority: PriorityName
    repo: str
    requester: str
    created_at: datetime

    @classmethod
    def from_row(cls, task: Task) -> PendingTask:
        return cls(
            id=task.id,
            title=task.title,
            description=task.description,
            priority=PRIORITY_NAMES[task.priority],
            repo=task.repo,
            requester=task.requester or "",
            created_at=task.created_at,
        )

    @classmethod
    def from_task(cls, task: TaskRead) -> PendingTask:
        return cls(
            id=task.id,
            title=task.title,
            description=task.description,
            priority=task.priority,
            repo=task.repo,
            requester=task.requester or "",
            created_at=task.created_at,
        )


class PendingTasks(BaseModel):
    tasks: list[PendingTask] = Field(description="waiting tasks, highest priority first, then oldest")


class TaskContext(BaseModel):
    """Everything needed to work on a task."""

    task: TaskRead
    held_by_you: bool
    repo: str
    base_branch: str = Field(description="start your work from this branch")
    branch: str = Field(description="the branch your submissions are published to")
    git: GitAccess | None = Field(
        default=None,
        description="where to clone the code and how to authenticate git (a header, never a token in the URL)",
    )
    messages: list[MessageRead] = Field(description="the whole conversation on the task, oldest first")
    feedback: list[FeedbackItem] = Field(
        description="the messages addressed to the agent (requester, reviewers, supervisors), oldest first"
    )
    artifacts: list[ArtifactRead] = Field(description="earlier submissions, oldest first")


class ClaimedTask(TaskContext):
    lease_expires_at: datetime | None = Field(description="any tool call on the task renews the lease")
    next_steps: str


class SubmissionResult(BaseModel):
    task_id: int
    version: int = Field(description="1 for the first submission, then 2, 3, …")
    kind: str
    status: str = Field(description="the task's status after the submission (REVIEW)")
    branch: str | None
    publish_state: Literal["published", "publishing"] = Field(
        description="published: the PR exists; publishing: a job is pushing the branch and opening it"
    )
    publish_job_id: int | None
    pr_number: int | None
    pr_url: str | None
    commit_sha: str | None
    created: bool = Field(description="false when the idempotency key matched an earlier submission")


class FeedbackBatch(BaseModel):
    task_id: int
    task_status: str
    items: list[FeedbackItem] = Field(description="new messages to the agent, oldest first")
    cursor: int | None = Field(description="the last message id read; the next call continues after it")
    threads: list[ReviewCommentRead] = Field(
        default_factory=list,
        description="every comment on lines of the diff on this task with its thread's state now "
        "(`resolved`): the open ones are still to be addressed",
    )


class MyTasks(BaseModel):
    tasks: list[TaskRead] = Field(description="tasks you hold (IN_PROGRESS) or that await review (REVIEW)")


class PostedMessage(BaseModel):
    message: MessageRead


class ReleasedTask(BaseModel):
    task: TaskRead


class WhoAmI(BaseModel):
    user_id: int
    org_id: int
    name: str
    role: str
    is_superuser: bool = False  # the operator, who manages organizations


def task_context(
    task: TaskRead,
    *,
    you: int | None,
    messages: list[MessageRead],
    artifacts: list[ArtifactRead],
) -> TaskContext:
    return TaskContext(
        task=task,
        held_by_you=you is not None and task.assignee_id == you,
        repo=task.repo,
        base_branch=task.base_branch,
        branch=task.branch,
        git=task.git,
        messages=messages,
        feedback=[FeedbackItem.from_message(m) for m in messages if m.direction == TO_AGENT],
        artifacts=artifacts,
    )


NEXT_STEPS = (
    "Check out `{base}` of `{repo}` ({clone}), do the work on `{branch}`, then call submit_artifact with a unified "
    "diff, a JSON object of files, or text. Ask with post_message if something is unclear. Subscribe to "
    "osiris://tasks/{id} (or call read_feedback) to hear about review comments; address them and submit "
    "again. Call release_task if you cannot finish. Any call on the task renews your lease."
)


def claimed(context: TaskContext) -> ClaimedTask:
    t = context.task
    clone = f"`{t.git.clone_command}`; {t.git.note}" if t.git else "no clone URL is served"
    steps = NEXT_STEPS.format(base=t.base_branch, repo=t.repo, branch=t.branch, id=t.id, clone=clone)
    return ClaimedTask(**dict(context), lease_expires_at=t.lease_expires_at, next_steps=steps)


def submission_result(
    artifact: ArtifactRead, *, status: str, created: bool, job_id: int | None
) -> SubmissionResult:
    return SubmissionResult(
        task_id=artifact.task_id,
        version=artifact.version,
        kind=artifact.kind,
        status=status,
        branch=artifact.branch,
        publish_state="published" if artifact.pr_url else "publishing",
        publish_job_id=job_id,
        pr_number=artifact.pr_number,
        pr_url=artifact.pr_url,
        commit_sha=artifact.commit_sha,
        created=created,
    )
