"""One task: what was asked, by whom, the live timeline, the thread, the work, and the decision.

Every action is a plain form POST answered with a redirect, so the page works without JavaScript;
each one calls the lifecycle, which refuses anyone whose role may not make the move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from osiris.app import db, lifecycle, reviews, task_queries
from osiris.app.check_runs import latest_runs
from osiris.app.errors import ChecksFailed, ChecksPending, InvalidInput, NotFound, NotPublished, StaleApproval
from osiris.app.models import OPEN_STATUSES, Artifact, TaskEvent, TaskStatus
from osiris.app.schemas import bounded_text
from osiris.portal import accountability, highlight, queries, review
from osiris.portal.access import FormDep, ViewerDep, runtime_of, text_field
from osiris.portal.rendering import PortalRoute, redirect, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
REVIEWS = frozenset({lifecycle.Action.REQUEST_CHANGES, lifecycle.Action.APPROVE})  # people's verdicts


@router.get("/portal/highlight.css")
async def highlight_css() -> Response:
    return Response(highlight.stylesheet(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/tasks/{task_id}")
async def task_page(
    request: Request,
    task_id: int,
    viewer: ViewerDep,
    v: int | None = None,
    from_version: Annotated[int | None, Query(alias="from")] = None,
    to_version: Annotated[int | None, Query(alias="to")] = None,
    files_page: Annotated[int, Query(ge=1, le=10**6)] = 1,
) -> Response:
    async with db.transaction(runtime_of(request).sessions) as session:
        last_id = await queries.last_event_id(session, viewer.actor, task_id)  # before the data: see queries
        task = await task_queries.get_task(session, viewer.actor, task_id)
        artifacts = list(await task_queries.artifacts_of(session, task))
        messages = await task_queries.messages_of(session, task)
        timeline = await task_queries.events_of(session, task)
        threads = list(await reviews.threads_of(session, task))  # comments on lines of the diff
        people = await queries.people(session, viewer.actor)
        check_runs = await latest_runs(session, task)  # newest version first
        unapproved = (
            None if task.status == TaskStatus.DONE.value else await lifecycle.unapproved_merge(session, task)
        )
        try:
            await lifecycle.approval_hold(session, task)
            held = None
        except (NotPublished, ChecksPending, ChecksFailed) as exc:
            held = exc
    by_version = {a.version: a for a in artifacts}
    shown = by_version.get(v) if v is not None else (artifacts[-1] if artifacts else None)
    limits = runtime_of(request).settings
    rendered = (
        await asyncio.to_thread(
            highlight.render_artifact,
            shown,
            max_files=limits.portal.inline_files,
            max_chars=limits.portal.highlight_bytes,
            names_page=files_page,
            names_per_page=limits.portal.file_names_per_page,
        )
        if shown
        else None
    )
    since_review = None
    if from_version is None and to_version is None:
        from_version, to_version, since_review = compared_by_default(artifacts, timeline)
    older, newer = by_version.get(from_version or 0), by_version.get(to_version or 0)
    compared = await asyncio.to_thread(highlight.render_diff, older, newer) if older and newer else None
    published = next((a for a in reversed(artifacts) if a.pr_url or a.pr_number), None)
    changes = await review.load(runtime_of(request), task, artifacts)  # "Files changed": what merges
    placed = review.place(changes.changes, threads)
    return render(
        request,
        "task.html",
        {
            "changes": changes.changes,
            "changes_problem": changes.problem,
            "split_rows": review.split_rows,
            "threads": threads,
            "threads_at": placed.at,
            "file_keys": placed.file_keys,
            "unplaced": placed.unplaced,
            "open_threads": sum(1 for c in threads if c.resolved_at is None),
            # A comment is on the diff shown, pinned like the approval to its version and commit.
            "can_comment": viewer.may_review and task.status in OPEN_STATUSES and changes.changes is not None,
            "task": task,
            "artifacts": artifacts,
            "shown": shown,
            "rendered": rendered,
            "compared": compared,
            "from_version": from_version,
            "to_version": to_version,
            "since_review": since_review,  # the default pair starts at the version last reviewed
            "published": published,
            "messages": messages,
            "timeline": list(reversed(timeline)),  # newest first: the latest is at the top, no scrolling
            "bookkeeping": accountability.BOOKKEEPING,
            "closure": accountability.closure(task.status, timeline),  # who closed it, when, why
            "people": people,
            "last_event_id": last_id,
            "is_open": task.status in OPEN_STATUSES,
            "in_review": task.status == TaskStatus.REVIEW.value,
            "check_runs": check_runs,
            "checks_key": " ".join(f"{r.id}:{r.status}" for r in check_runs),
            "held": held,
            "unapproved": unapproved,  # merged on GitHub without an OSIRIS approval: shown as a warning
            # The approve form names the version and commit this page showed (pinned approvals).
            "latest": artifacts[-1] if artifacts else None,
        },
    )


def compared_by_default(
    artifacts: Sequence[Artifact], timeline: Sequence[TaskEvent]
) -> tuple[int | None, int | None, int | None]:
    """The versions "Compare versions" shows unless the reader asks for others. On a second pass,
    what changed since the last review: the newest version a reviewer requested changes on (or
    approved, when its merge failed) against the newest; else the two newest. Returns (from, to,
    reviewed or None). A system move (failing checks, a merge conflict) is no review."""
    if len(artifacts) < 2:
        return None, None, None
    newest = artifacts[-1].version
    submitted = reviewed = None
    for event in timeline:  # oldest first: a review is of the version in review at the time
        if event.kind == lifecycle.Action.SUBMIT:
            submitted = (event.data or {}).get("version")
        elif event.kind in REVIEWS and submitted is not None:
            reviewed = submitted
    if isinstance(reviewed, int) and reviewed < newest and any(a.version == reviewed for a in artifacts):
        return reviewed, newest, reviewed
    return artifacts[-2].version, newest, None


@router.get("/tasks/{task_id}/versions/{version}/files")
async def version_file(
    request: Request,
    task_id: int,
    version: int,
    viewer: ViewerDep,
    path: Annotated[str, Query(min_length=1, max_length=4096)],
) -> Response:
    """One file of a version, for the files the task page lists by name only."""
    runtime = runtime_of(request)
    async with db.transaction(runtime.sessions) as session:
        task = await task_queries.get_task(session, viewer.actor, task_id)  # the same org-scoped read
        artifact = await task_queries.artifact_version(session, task, version)
    rendered = (
        await asyncio.to_thread(
            highlight.render_file, artifact, path, max_chars=runtime.settings.portal.highlight_bytes
        )
        if artifact is not None
        else None
    )
    if rendered is None:
        raise NotFound(f"version {version} of task {task_id} has no file {path!r}")
    return render(request, "version_file.html", {"task": task, "artifact": artifact, "file": rendered})


@router.get("/tasks/{task_id}/changes/file")
async def changed_file(
    request: Request,
    task_id: int,
    viewer: ViewerDep,
    path: Annotated[str, Query(min_length=1, max_length=4096)],
) -> Response:
    """One file of "Files changed", for a file over the page's per-file cap: up to the overall cap."""
    runtime = runtime_of(request)
    async with db.transaction(runtime.sessions) as session:
        task = await task_queries.get_task(session, viewer.actor, task_id)  # the same org-scoped read
        artifacts = list(await task_queries.artifacts_of(session, task))
    loaded = await review.load(runtime, task, artifacts, path=path)
    return render(
        request,
        "changed_file.html",
        {
            "task": task,
            "path": path,
            "changes": loaded.changes,
            "changes_problem": loaded.problem,
            "split_rows": review.split_rows,
        },
    )


@router.post("/tasks/{task_id}/messages")
async def post_message(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    body = bounded_text(text_field(form, "body"), "the message", required=True)
    async with db.transaction(runtime_of(request).sessions) as session:
        await lifecycle.post_message(session, viewer.actor, task_id, body=body, source="portal")
    viewer.session.flash("ok", "Message sent to the agent.")
    return redirect(f"/tasks/{task_id}#thread")


def _approved_version(version: str, head_sha: str) -> tuple[int, str]:
    """What the approve form was rendered with: it always carries both, so an approval from a page
    that showed an older version (or a version not yet published) cannot approve the newest one."""
    if not version.strip().isdigit() or not 0 < int(version) < 2**31:
        raise InvalidInput("the approve form must name the version it shows; reload the page")
    head_sha = head_sha.strip().lower()
    if not head_sha:
        raise StaleApproval(
            f"this page showed version {int(version)} before it was published; reload it to review "
            "what will be merged"
        )
    return int(version), _sha_field(head_sha) or ""


def _sha_field(value: str) -> str | None:
    head_sha = value.strip().lower()
    if not head_sha:
        return None
    if len(head_sha) not in (40, 64) or any(c not in "0123456789abcdef" for c in head_sha):
        raise InvalidInput("the form's commit is not a commit id; reload the page")
    return head_sha


@router.post("/tasks/{task_id}/approve")
async def approve(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    comment = bounded_text(text_field(form, "comment"), "the comment", required=False) or None
    async with db.transaction(runtime_of(request).sessions) as session:
        await task_queries.get_task(session, viewer.actor, task_id)  # another org's task: 404 first
        version, head_sha = _approved_version(text_field(form, "version"), text_field(form, "head_sha"))
        await lifecycle.approve_task(
            session, viewer.actor, task_id, comment=comment, version=version, head_sha=head_sha
        )
    viewer.session.flash("ok", f"Task #{task_id} approved; it will be merged.")
    return redirect(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/request-changes")
async def request_changes(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    feedback = bounded_text(text_field(form, "feedback"), "the feedback", required=True)
    runtime = runtime_of(request)
    async with db.transaction(runtime.sessions) as session:
        await lifecycle.request_changes(
            session,
            viewer.actor,
            task_id,
            feedback=feedback,
            lease_seconds=runtime.settings.tasks.lease_seconds,
            source="portal",
        )
    viewer.session.flash("ok", f"Changes requested; task #{task_id} is back with its agent.")
    return redirect(f"/tasks/{task_id}")


def _version_field(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 2**31:
        raise InvalidInput("the form's version is not a version number; reload the page")
    return int(value)


def _line_field(value: str, what: str, *, required: bool) -> int | None:
    value = value.strip()
    if not value and not required:
        return None
    if not value.isdigit() or not 0 < int(value) < 2**31:
        raise InvalidInput(f"{what} must be a line number")
    return int(value)


@router.post("/tasks/{task_id}/review")
async def submit_review(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    """The one review form: a comment and a verdict, pinned to the version and commit shown."""
    verdict = text_field(form, "verdict").strip() or "comment"
    body = bounded_text(text_field(form, "body"), "the review comment", required=False)
    runtime = runtime_of(request)
    async with db.transaction(runtime.sessions) as session:
        await task_queries.get_task(session, viewer.actor, task_id)  # another org's task: 404 first
        if verdict == "approve":  # exactly the approve form's pin: both fields, always
            version, head_sha = _approved_version(text_field(form, "version"), text_field(form, "head_sha"))
        else:
            version = _version_field(text_field(form, "version"))
            head_sha = _sha_field(text_field(form, "head_sha"))
        await reviews.submit_review(
            session,
            runtime,
            viewer.actor,
            task_id,
            verdict=verdict,
            body=body,
            version=version,
            head_sha=head_sha,
        )
    said = {
        "approve": f"Task #{task_id} approved; it will be merged.",
        "request_changes": f"Changes requested; task #{task_id} is back with its agent.",
        "comment": "Review comment sent to the agent.",
    }
    viewer.session.flash("ok", said.get(verdict, "Review submitted."))
    return redirect(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/comments")
async def add_line_comment(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    """A comment on a line (or `start_line`..`line`) of a file in "Files changed"."""
    runtime = runtime_of(request)
    async with db.transaction(runtime.sessions) as session:
        await task_queries.get_task(session, viewer.actor, task_id)  # another org's task: 404 first
        version = _version_field(text_field(form, "version"))
        head_sha = _sha_field(text_field(form, "head_sha"))
        if version is None or head_sha is None:
            raise InvalidInput("the comment form must name the version and commit it shows; reload the page")
        comment = await reviews.add_comment(
            session,
            runtime,
            viewer.actor,
            task_id,
            path=text_field(form, "path"),
            line=_line_field(text_field(form, "line"), "the line", required=True) or 0,
            start_line=_line_field(text_field(form, "start_line"), "the first line", required=False),
            side=text_field(form, "side").strip() or "new",
            body=bounded_text(text_field(form, "body"), "the comment", required=True),
            version=version,
            head_sha=head_sha,
        )
    viewer.session.flash("ok", f"Comment added on {comment.path} line {comment.line}; the agent can read it.")
    return redirect(f"/tasks/{task_id}#comment-{comment.id}")


@router.post("/tasks/{task_id}/comments/{comment_id}/resolve")
async def resolve_line_comment(
    request: Request, task_id: int, comment_id: int, viewer: ViewerDep, form: FormDep
) -> Response:
    """Resolve a thread (`resolved=1`) or reopen it (`resolved=0`)."""
    resolved = text_field(form, "resolved").strip() != "0"
    async with db.transaction(runtime_of(request).sessions) as session:
        await reviews.set_resolved(session, viewer.actor, task_id, comment_id, resolved=resolved)
    viewer.session.flash("ok", "Thread resolved." if resolved else "Thread reopened.")
    return redirect(f"/tasks/{task_id}#comment-{comment_id}")


@router.post("/tasks/{task_id}/cancel")
async def cancel(request: Request, task_id: int, viewer: ViewerDep, form: FormDep) -> Response:
    reason = bounded_text(text_field(form, "reason"), "the reason", required=False) or None
    async with db.transaction(runtime_of(request).sessions) as session:
        await lifecycle.cancel_task(session, viewer.actor, task_id, reason=reason)
    viewer.session.flash("ok", f"Task #{task_id} cancelled.")
    return redirect(f"/tasks/{task_id}")
