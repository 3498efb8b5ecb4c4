"""Reviews as on a pull request: comments on lines of "Files changed", resolvable threads, and one
review submission (approve, request changes, or comment only) pinned to what the reviewer saw.

Only reviewers and administrators comment on lines and resolve threads: an agent answers with a
message (`lifecycle.post_message`). Each line comment is a `ReviewComment` row (its thread's state)
and a `review_comment` message to the agent, so `read_feedback`, MCP subscriptions, live pages and
the code host mirror (`deliver_message` → `CodeHost.comment`) carry it like any other feedback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import changes, lifecycle, task_queries
from osiris.app.actors import Actor
from osiris.app.changes import DiffHunk, DiffLine
from osiris.app.errors import (
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotFound,
    NotPublished,
    StaleApproval,
    Unavailable,
)
from osiris.app.events import record_event
from osiris.app.jobs import Retry
from osiris.app.models import OPEN_STATUSES, Artifact, ReviewComment, Role, Task
from osiris.app.runtime import Runtime
from osiris.app.schemas import bounded_text

HUNK_CONTEXT = 3  # lines of the diff kept on each side of the commented line(s)
VERDICTS = ("approve", "request_changes", "comment")
SIDES = ("old", "new")
MAX_THREADS = 500  # threads listed to the agent with each read_feedback


def _reviewer(actor: Actor, what: str) -> None:
    if actor.role not in (Role.REVIEWER, Role.ADMIN):
        raise Forbidden(f"only reviewers and administrators {what}; an agent replies with a message")


def _numbered(line: DiffLine, side: str) -> int | None:
    if line.kind == "context":
        return line.old if side == "old" else line.new
    if (side, line.kind) in (("old", "removed"), ("new", "added")):
        return line.old if side == "old" else line.new
    return None


def _marker(line: DiffLine) -> str:
    return {"added": "+", "removed": "-", "context": " "}.get(line.kind, "")


def anchor(hunks: Iterable[DiffHunk], *, side: str, line: int, start_line: int | None) -> str:
    """The hunk text around `start_line`..`line` on `side` (its header and a few lines either side),
    or InvalidInput when those lines are not in the diff: a comment is only on what a reviewer saw."""
    first = start_line or line
    for hunk in hunks:
        index = {_numbered(dl, side): i for i, dl in enumerate(hunk.lines) if _numbered(dl, side) is not None}
        if line not in index:
            continue
        if first not in index or index[first] > index[line]:
            raise InvalidInput(f"lines {first}–{line} are not one range within a hunk of the diff")
        lo, hi = max(0, index[first] - HUNK_CONTEXT), min(len(hunk.lines), index[line] + HUNK_CONTEXT + 1)
        header = f"@@ -{hunk.old_start},{hunk.old_lines} +{hunk.new_start},{hunk.new_lines} @@"
        header += f" {hunk.section}" if hunk.section else ""
        return "\n".join([header, *(_marker(dl) + dl.text for dl in hunk.lines[lo:hi])])
    raise InvalidInput(f"line {line} ({side} side) is not in the diff of that file")


def _published(artifacts: list[Artifact], version: int, head_sha: str) -> Artifact:
    shown = changes.newest_published(artifacts)
    if shown is None:
        raise NotPublished("no version is published yet; comment once the changes show")
    if version != shown.version or head_sha.lower() != (shown.commit_sha or "").lower():
        raise StaleApproval(
            f"the comment is on version {version} at {head_sha[:12]}, but the changes shown now are version "
            f"{shown.version}'s ({(shown.commit_sha or '')[:12]}); reload the page and comment again"
        )
    return shown


async def add_comment(  # noqa: PLR0913 - its input is the comment's anchor: path, lines, side, version, head
    session: AsyncSession,
    runtime: Runtime,
    actor: Actor,
    task_id: int,
    *,
    path: str,
    line: int,
    side: str,
    body: str,
    version: int,
    head_sha: str,
    start_line: int | None = None,
    source: str = "portal",
) -> ReviewComment:
    """A reviewer's comment on lines of the newest published version's diff, sent to the agent."""
    _reviewer(actor, "comment on lines of the diff")
    task = await task_queries.get_task(session, actor, task_id)  # another organization's: 404
    if task.status not in OPEN_STATUSES:
        raise IllegalTransition(f"task {task.id} is closed; its diff takes no more comments")
    text = bounded_text(body, "the comment", required=True)
    if side not in SIDES:
        raise InvalidInput("side is old (the base's line numbers) or new (the version's)")
    if start_line is not None and start_line == line:
        start_line = None
    artifacts = list(await task_queries.artifacts_of(session, task, content=False))
    shown = _published(artifacts, version, head_sha)
    host = runtime.services.code_host
    if host is None:
        raise Unavailable("no code host is configured, so there is no diff to comment on")
    limits = runtime.settings
    try:  # the host's diff of this one file: the line must be in what the reviewer saw
        found = await changes.changes_of(
            host,
            task,
            artifacts,
            max_file_lines=limits.changes.max_lines,
            max_lines=limits.changes.max_lines,
            path=path,
        )
    except Retry as exc:
        raise Unavailable(f"the code host cannot answer now ({exc}); try again in a while") from None
    changed = next((f for f in found.files if f.path == path), None)
    if changed is None:
        raise InvalidInput(f"{path!r} is not among the files this version changes")
    if changed.binary or changed.too_large:
        raise InvalidInput(f"{path!r} has no lines shown to comment on")
    hunk = anchor(changed.hunks, side=side, line=line, start_line=start_line)
    comment = ReviewComment(
        org_id=task.org_id,
        task_id=task.id,
        author_id=actor.user_id,
        author_name=actor.name,
        version=shown.version,
        head_sha=shown.commit_sha or head_sha,
        path=path,
        side=side,
        line=line,
        start_line=start_line,
        diff_hunk=hunk,
        body=text,
    )
    session.add(comment)
    await session.flush()
    message = await lifecycle.add_message(
        session, task, actor, body=text, source=source, kind="review_comment", meta=_meta(comment)
    )
    comment.message_id = message.id if message is not None else None
    await session.flush()
    return comment


def _meta(comment: ReviewComment, *, resolved: bool | None = None) -> dict[str, Any]:
    """How a comment travels in a message's meta (and on to the agent and the code host)."""
    meta: dict[str, Any] = {
        "comment_id": comment.id,
        "path": comment.path,
        "line": comment.line,
        "start_line": comment.start_line,
        "side": comment.side,
        "diff_hunk": comment.diff_hunk,
        "version": comment.version,
        "head_sha": comment.head_sha,
    }
    if resolved is not None:
        meta["resolved"] = resolved
        meta["body"] = comment.body
    return meta


async def set_resolved(
    session: AsyncSession, actor: Actor, task_id: int, comment_id: int, *, resolved: bool
) -> ReviewComment:
    """Resolve a thread, or reopen it; the agent is told which are still open."""
    _reviewer(actor, "resolve review threads")
    task = await task_queries.get_task(session, actor, task_id)
    comment = await session.scalar(
        select(ReviewComment)
        .where(ReviewComment.id == comment_id, ReviewComment.task_id == task.id)
        .with_for_update()
    )
    if comment is None:
        raise NotFound(f"task {task.id} has no review comment {comment_id}")
    if resolved == (comment.resolved_at is not None):
        return comment  # already so: nothing happened, nothing to record
    comment.resolved_at = datetime.now(UTC) if resolved else None
    comment.resolved_by = actor.name if resolved else None
    await session.flush()
    await record_event(
        session,
        task,
        actor,
        "review_thread_resolved" if resolved else "review_thread_reopened",
        data={"comment_id": comment.id, "path": comment.path, "line": comment.line},
    )
    return comment


async def threads_of(
    session: AsyncSession, task: Task, *, limit: int = MAX_THREADS
) -> Sequence[ReviewComment]:
    """The task's line comments, oldest first."""
    stmt = (
        select(ReviewComment).where(ReviewComment.task_id == task.id).order_by(ReviewComment.id).limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def resolved_states(session: AsyncSession, task: Task, ids: Iterable[int]) -> dict[int, bool]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(ReviewComment.id, ReviewComment.resolved_at).where(
            ReviewComment.task_id == task.id, ReviewComment.id.in_(wanted)
        )
    )
    return {cid: at is not None for cid, at in rows.all()}


def _listing(open_threads: Sequence[ReviewComment]) -> str:
    rows = []
    for c in open_threads:
        where = f"{c.start_line}–{c.line}" if c.start_line else str(c.line)
        first = c.body.strip().splitlines()[0] if c.body.strip() else ""
        rows.append(f"- `{c.path}` line {where} ({c.side}, version {c.version}): {first[:200]}")
    return "\n".join(rows)


async def submit_review(  # noqa: PLR0913 - a review is a verdict pinned to what was seen (version, head)
    session: AsyncSession,
    runtime: Runtime,
    actor: Actor,
    task_id: int,
    *,
    verdict: str,
    body: str,
    version: int | None,
    head_sha: str | None,
    source: str = "portal",
) -> Task:
    """One review of what the reviewer saw: approve (pinned, `lifecycle.approve_task`), request
    changes (a comment or at least one open line comment; the feedback lists the open threads), or
    comment only. A version or commit other than the latest is 409 `stale_approval` for every verdict."""
    if verdict not in VERDICTS:
        raise InvalidInput("the verdict is approve, request_changes or comment")
    text = bounded_text(body, "the review comment", required=False)
    if verdict == "approve":
        return await lifecycle.approve_task(
            session, actor, task_id, comment=text or None, version=version, head_sha=head_sha
        )
    _reviewer(actor, "submit reviews")
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    if version is not None and version != task.artifact_count:
        raise StaleApproval(
            f"the review is of version {version}, but the latest is version {task.artifact_count}; "
            "review the latest version"
        )
    if head_sha:
        latest = await session.scalar(
            select(Artifact.commit_sha).where(
                Artifact.task_id == task.id, Artifact.version == task.artifact_count
            )
        )
        if latest and latest.lower() != head_sha.lower():
            raise StaleApproval(
                f"the review is of commit {head_sha[:12]}, but the latest version was published as "
                f"{latest[:12]}; review it again"
            )
    if verdict == "comment":
        if not text:
            raise InvalidInput(
                "a comment-only review needs a comment (line comments are sent as you write them)"
            )
        await lifecycle.post_message(session, actor, task_id, body=text, source=source)
        return task
    open_threads = [c for c in await threads_of(session, task) if c.resolved_at is None]
    if not text and not open_threads:
        raise InvalidInput("requesting changes needs a comment, or at least one open comment on a line")
    feedback = text or f"Changes requested in {len(open_threads)} comment(s) on lines of the diff."
    if open_threads:
        feedback += "\n\nOpen comments on lines:\n" + _listing(open_threads)
    meta = {
        "version": version or task.artifact_count,
        "head_sha": head_sha,
        "comments": [{**_meta(c, resolved=False), "author": c.author_name} for c in open_threads],
    }
    return await lifecycle.request_changes(
        session,
        actor,
        task_id,
        feedback=feedback,
        lease_seconds=runtime.settings.tasks.lease_seconds,
        source=source,
        meta=meta,
    )
