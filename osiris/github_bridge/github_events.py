"""GitHub webhooks: verify, record the delivery, answer at once; the work runs as a job.

The route checks X-Hub-Signature-256 before it parses anything (gidgethub's `Event.from_http`),
stores the delivery id under a unique key (a redelivery stops there) and enqueues `github_event` in
the same transaction. The job dispatches the event through one gidgethub Router per behaviour,
bedevere style; every state change goes through `osiris.app.lifecycle` as the mapped person.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from gidgethub import BadRequest, ValidationFailure, sansio
from gidgethub.routing import Router
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from osiris.app import jobs, lifecycle, repositories
from osiris.app.actors import Actor, system_actor
from osiris.app.auth import RuntimeDep
from osiris.app.config import Settings
from osiris.app.errors import (
    ChecksFailed,
    ChecksPending,
    IllegalTransition,
    InvalidInput,
    NotPublished,
    OsirisError,
    StaleApproval,
    Unauthenticated,
)
from osiris.app.events import record_event
from osiris.app.models import Artifact, Delivery, Message, Task, TaskEvent, TaskStatus
from osiris.app.ports import task_id_of_branch
from osiris.app.runtime import Runtime
from osiris.github_bridge import ci_webhooks
from osiris.github_bridge.deps import Deps
from osiris.github_bridge.github_client import repo_path
from osiris.github_bridge.github_host import GitHubHost, is_ours
from osiris.github_bridge.logins import (  # who a login is to a task: the one rule
    Judged,
    commenter,
    judge,
    mapped_user,
    reviewer,
)

log = logging.getLogger(__name__)

PROVIDER = "github"
GITHUB_EVENT = "github_event"
HANDLED = (
    frozenset(
        {"pull_request", "pull_request_review", "pull_request_review_comment", "issue_comment", "issues"}
    )
    | ci_webhooks.EVENTS
)  # the repository's own CI: pre-review checks on GitHub
_COMMAND = re.compile(r"^/(approve|reject|retry)\b[ \t]*(.*)$", re.IGNORECASE | re.DOTALL)

router = APIRouter(tags=["webhooks"])


# --- the edge ------------------------------------------------------------------------------------


def _repository(data: Any) -> str | None:
    repo = data.get("repository") if isinstance(data, dict) else None
    return repo.get("full_name") if isinstance(repo, dict) else None


def _served(settings: Settings, full_name: str | None) -> bool:
    if not full_name:
        return False
    mapping = settings.github.repo
    return "*" in mapping or any(v.lower() == full_name.lower() for v in mapping.values())


async def _registered(runtime: Runtime, full_name: str | None) -> bool:
    if not full_name:
        return False
    async with runtime.sessions() as session:
        return await repositories.org_for_github_repo(session, full_name) is not None


@router.post("/api/v1/webhooks/github", status_code=202)
async def receive_github(request: Request, runtime: RuntimeDep) -> JSONResponse:
    secret = runtime.settings.github.webhook_secret
    if secret is None:
        raise Unauthenticated("GitHub webhooks are off: OSIRIS_GITHUB_WEBHOOK_SECRET is not set")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    if "x-hub-signature-256" not in headers:  # the SHA-1 signature alone is not accepted
        raise Unauthenticated("missing X-Hub-Signature-256")
    headers.pop("x-hub-signature", None)
    try:
        event = sansio.Event.from_http(headers, body, secret=secret.get_secret_value())
    except ValidationFailure:
        raise Unauthenticated("the X-Hub-Signature-256 signature does not match") from None
    except KeyError as exc:
        raise InvalidInput(f"missing header {exc.args[0]}") from None
    except (BadRequest, ValueError):
        raise InvalidInput("expected a JSON body (content type application/json)") from None

    if event.event == "ping":
        return JSONResponse({"ok": True, "zen": event.data.get("zen")}, status_code=200)
    if event.event not in HANDLED:
        return JSONResponse({"ignored": f"event {event.event}"}, status_code=202)
    full_name = _repository(event.data)
    # settings' OSIRIS_GITHUB_REPO, or a repository an organization registered with its GitHub name
    if not _served(runtime.settings, full_name) and not await _registered(runtime, full_name):
        return JSONResponse({"ignored": "repository not served"}, status_code=202)
    delivery = event.delivery_id.strip()
    if not delivery or len(delivery) > 200:
        raise InvalidInput("bad X-GitHub-Delivery")

    async with runtime.sessions() as session, session.begin():
        stmt = (
            insert(Delivery)
            .values(provider=PROVIDER, delivery_id=delivery)
            .on_conflict_do_nothing(constraint="uq_deliveries_provider_delivery")
            .returning(Delivery.id)
        )
        new = (await session.execute(stmt)).scalar_one_or_none()
        if new is not None:
            await jobs.enqueue(
                session,
                GITHUB_EVENT,
                {"event": event.event, "delivery_id": delivery, "data": event.data},
                dedupe_key=f"github-{delivery}",
            )
    return JSONResponse({"accepted": True, "duplicate": new is None}, status_code=202)


# --- the job -------------------------------------------------------------------------------------


def event_job(router: Router) -> jobs.Handler:
    """The github_event job, dispatching through `router`: the composition root combines this
    module's ROUTER with the other edges' (GitHub issues) and registers the result."""

    async def handle_github_event(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
        host = ctx.services.code_host
        if not isinstance(host, GitHubHost):
            log.info("github event ignored: the code host is not GitHub")
            return
        event = sansio.Event(payload["data"], event=payload["event"], delivery_id=payload["delivery_id"])
        async with ctx.sessions() as session, session.begin():
            await dispatch(router, event, host.gh, Deps(session, ctx.settings, host))

    return handle_github_event


# --- finding the task and the person -------------------------------------------------------------


async def find_task(
    deps: Deps, data: dict[str, Any], number: int | None, head_ref: str | None
) -> Task | None:
    """The task behind a PR: by its branch name when known, else by the PR number we stored."""
    full_name = _repository(data)
    if not full_name or number is None:
        return None
    names = await deps.host.osiris_repos(full_name)
    task: Task | None = None
    if (task_id := task_id_of_branch(head_ref)) is not None:
        task = await deps.session.get(Task, task_id, with_for_update=True)
    elif head_ref is None:
        stmt = (
            select(Task)
            .join(Artifact, Artifact.task_id == Task.id)
            .where(Artifact.pr_number == number)
            .order_by(Task.id.desc())
        )
        for candidate in (await deps.session.execute(stmt)).scalars().unique():
            if names is None or candidate.repo in names:
                task = candidate
                break
    if task is None or (names is not None and task.repo not in names):
        return None
    pr = await deps.session.scalar(
        select(Artifact.pr_number)
        .where(Artifact.task_id == task.id, Artifact.pr_number.is_not(None))
        .limit(1)
    )
    if pr is not None and pr != number:  # the branch name matched but it is another PR
        return None
    return task


async def _repo_of(deps: Deps, task: Task) -> str:
    return await deps.host.repo_for(task)


async def _say(
    deps: Deps,
    task: Task,
    actor: Actor,
    body: str,
    *,
    source: str,
    provider_id: str,
    meta: dict[str, Any],
    kind: str = "message",
) -> Message | None:
    if not body.strip():
        return None
    return await lifecycle.add_message(
        deps.session, task, actor, body=body, source=source, provider_id=provider_id, meta=meta, kind=kind
    )


async def _already_imported(deps: Deps, task: Task, comment_id: int) -> bool:
    """Our own mirrored messages, and inline comments already carried by a review's feedback."""
    cid = str(comment_id)
    hit = await deps.session.scalar(
        select(Message.id).where(
            Message.task_id == task.id,
            (Message.provider_id == cid) | Message.meta["comment_ids"].contains([comment_id]),
        )
    )
    return hit is not None


# --- behaviours: one router each -----------------------------------------------------------------

reviews = Router()
review_comments = Router()
issue_comments = Router()
pull_requests = Router()


@reviews.register("pull_request_review", action="submitted")
async def on_review(event: sansio.Event, gh: Any, deps: Deps) -> None:
    pr, review = event.data["pull_request"], event.data["review"]
    task = await find_task(deps, event.data, pr["number"], pr["head"]["ref"])
    if task is None:
        return
    login = review["user"]["login"]
    state = (review.get("state") or "").lower()
    body = review.get("body") or ""
    base_meta = {"review_id": review["id"], "url": review.get("html_url"), "github_login": login}
    user = await mapped_user(deps, task, login)
    if state == "changes_requested":
        inline = await _review_comments(deps, gh, task, pr["number"], review["id"])
        text = _feedback_text(body, inline)
        meta = {**base_meta, "comments": inline, "comment_ids": [c["id"] for c in inline]}
        actor, why = await reviewer(deps, gh, task, login, pr_author=pr["user"]["login"])
        if actor is not None and task.status == TaskStatus.REVIEW.value:
            await lifecycle.request_changes(
                deps.session,
                actor,
                task.id,
                feedback=text,
                lease_seconds=deps.settings.tasks.lease_seconds,
                source="github_review",
                provider_id=f"review-{review['id']}",
                meta=meta,
            )
            return
        meta["not_counted"] = why or f"task is {task.status}"
        await _say(
            deps,
            task,
            commenter(task, login, user),
            text,
            source="github_review",
            provider_id=f"review-{review['id']}",
            meta=meta,
            kind="review",
        )
    elif state == "approved":
        actor, why = await reviewer(deps, gh, task, login, pr_author=pr["user"]["login"])
        if actor is not None and task.status == TaskStatus.REVIEW.value:
            try:
                # A review names the commit the reviewer saw (GitHub's `commit_id`): it approves that
                # commit or nothing, and only while the PR's head is what OSIRIS published.
                await _approve_pinned(
                    deps,
                    task,
                    actor,
                    comment=body or "approved on GitHub",
                    seen=review.get("commit_id"),
                    branch_head=(pr.get("head") or {}).get("sha"),
                )
                return
            except APPROVAL_REFUSED as exc:
                why = f"{exc.detail} ({exc.code})"
                await _checks_hold_reply(deps, task, login, exc)
        note = f"Approval by @{login} not counted: {why or f'task is {task.status}'}."
        await _say(
            deps,
            task,
            commenter(task, login, user),
            f"{note}\n\n{body}".strip(),
            source="github_review",
            provider_id=f"review-{review['id']}",
            meta={**base_meta, "not_counted": why},
            kind="review",
        )
    elif state == "commented":
        await _say(
            deps,
            task,
            commenter(task, login, user),
            body,
            source="github_review",
            provider_id=f"review-{review['id']}",
            meta=base_meta,
            kind="review",
        )


async def _latest_version(deps: Deps, task: Task) -> Artifact | None:
    """The newest version, published or not (a version whose publish job is still retrying counts)."""
    return await deps.session.scalar(
        select(Artifact).where(Artifact.task_id == task.id).order_by(Artifact.version.desc()).limit(1)
    )


# Why an approval from GitHub is not counted: the task stays in REVIEW and the PR says why.
APPROVAL_REFUSED = (ChecksPending, ChecksFailed, NotPublished, StaleApproval)


async def _approve_pinned(
    deps: Deps, task: Task, actor: Actor, *, comment: str, seen: str | None, branch_head: str | None
) -> None:
    """Approve the latest version at the commit `seen`, refusing (`stale_approval`) when that is not
    its published commit, or when the PR's branch on GitHub points elsewhere: someone pushed commits
    OSIRIS did not publish (the agent, with its own GitHub credentials), and any new push voids
    earlier approvals. The merge job then merges exactly `seen`."""
    lifecycle.check(lifecycle.Action.APPROVE, task.status, actor, task.assignee_id)  # state first
    latest = await _latest_version(deps, task)
    if latest is None or latest.commit_sha is None:
        raise NotPublished(f"version {task.artifact_count} is not published yet; review it once it is")
    if not seen:
        raise StaleApproval("the approval names no commit; approve again on the pull request")
    if branch_head is not None and branch_head.lower() != latest.commit_sha.lower():
        raise StaleApproval(
            f"the pull request's branch is at {branch_head[:12]}, not version {latest.version}'s "
            f"published commit {latest.commit_sha[:12]}: commits OSIRIS did not publish were pushed"
        )
    await lifecycle.approve_task(
        deps.session, actor, task.id, comment=comment, version=latest.version, head_sha=seen
    )


async def _published_at(deps: Deps, task: Task, version: int) -> datetime | None:
    """When OSIRIS recorded the version as pushed (its latest `published` event): that transaction
    begins after the push returned, so the time is never earlier than the push."""
    return await deps.session.scalar(
        select(func.max(TaskEvent.created_at)).where(
            TaskEvent.task_id == task.id,
            TaskEvent.kind == "published",
            TaskEvent.data["version"].as_integer() == version,
        )
    )


def _github_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


async def _review_comments(
    deps: Deps, gh: Any, task: Task, number: int, review_id: int
) -> list[dict[str, Any]]:
    """The review's inline comments. Their own webhooks (`pull_request_review_comment`) usually come
    first: when they have, the comments are taken from what they imported, without asking GitHub
    (issue 17: API calls per lifecycle); else from the pull request's review comments."""
    imported = (
        await deps.session.execute(
            select(Message.provider_id, Message.body, Message.meta)
            .where(
                Message.task_id == task.id,
                Message.source == "github_review",
                Message.meta["review_id"].as_integer() == review_id,
                Message.provider_id.is_not(None),
            )
            .order_by(Message.id)
        )
    ).all()
    inline = [
        {
            "id": int(provider_id),
            "path": meta.get("path"),
            "line": meta.get("line"),
            "diff_hunk": meta.get("diff_hunk"),
            "body": body or "",
        }
        for provider_id, body, meta in imported
        if provider_id.isdigit() and isinstance(meta, dict) and meta.get("path")
    ]
    if inline:
        return inline
    repo = await _repo_of(deps, task)
    found = await gh.get_all(f"/repos/{repo}/pulls/{number}/comments", per_page=100)
    return [
        {
            "id": c["id"],
            "path": c.get("path"),
            "line": c.get("line") or c.get("original_line"),
            "diff_hunk": c.get("diff_hunk"),
            "body": c.get("body") or "",
        }
        for c in found
        if c.get("pull_request_review_id") == review_id
    ]


def _feedback_text(body: str, inline: list[dict[str, Any]]) -> str:
    """The review as the agent reads it: the summary, then each inline comment with where it is."""
    parts = [body.strip() or "Changes requested on GitHub."]
    if inline:
        parts.append(
            "\n".join(["Inline comments:", *(f"- {c['path']}:{c['line']}: {c['body']}" for c in inline)])
        )
    return "\n\n".join(parts)


@review_comments.register("pull_request_review_comment", action="created")
async def on_review_comment(event: sansio.Event, gh: Any, deps: Deps) -> None:
    pr, comment = event.data["pull_request"], event.data["comment"]
    if is_ours(comment.get("body")):
        return
    task = await find_task(deps, event.data, pr["number"], pr["head"]["ref"])
    if task is None or await _already_imported(deps, task, comment["id"]):
        return
    login = comment["user"]["login"]
    meta = {
        "path": comment.get("path"),
        "line": comment.get("line") or comment.get("original_line"),
        "diff_hunk": comment.get("diff_hunk"),
        "review_id": comment.get("pull_request_review_id"),
        "url": comment.get("html_url"),
        "github_login": login,
    }
    actor = commenter(task, login, await mapped_user(deps, task, login))
    await _say(
        deps,
        task,
        actor,
        comment.get("body") or "",
        source="github_review",
        provider_id=str(comment["id"]),
        meta=meta,
    )


@issue_comments.register("issue_comment", action="created")
async def on_issue_comment(event: sansio.Event, gh: Any, deps: Deps) -> None:
    issue, comment = event.data["issue"], event.data["comment"]
    if not issue.get("pull_request") or is_ours(comment.get("body")):
        return  # a plain issue (the ingest side's), or the echo of a comment OSIRIS wrote
    task = await find_task(deps, event.data, issue["number"], None)
    if task is None or await _already_imported(deps, task, comment["id"]):
        return
    login = comment["user"]["login"]
    body = (comment.get("body") or "").strip()
    user = await mapped_user(deps, task, login)
    command = _COMMAND.match(body)
    if command is not None:
        actor, why = await reviewer(deps, gh, task, login, pr_author=issue["user"]["login"])
        if actor is not None:
            name, arg = command.group(1).lower(), command.group(2).strip()
            done, why = await _run_command(
                deps, gh, task, actor, name, arg, comment=comment, number=issue["number"]
            )
            if done:
                return
        body = f"{body}\n\n(command not run: {why or f'not possible while the task is {task.status}'})"
    meta = {"url": comment.get("html_url"), "github_login": login}
    await _say(
        deps,
        task,
        commenter(task, login, user),
        body,
        source="github_comment",
        provider_id=str(comment["id"]),
        meta=meta,
    )


async def _checks_hold_reply(deps: Deps, task: Task, login: str, exc: OsirisError) -> None:
    """An approval held back (checks, an unpublished or a stale version): the task stays in REVIEW
    and the PR says why (a message mirrored as a PR comment by the deliver_message job)."""
    checks = isinstance(exc, (ChecksPending, ChecksFailed))
    msg = await lifecycle.add_message(
        deps.session,
        task,
        system_actor(task.org_id, "checks" if checks else "approvals"),
        body=f"@{login}: the approval was not counted: {exc.detail} ({exc.code}).",
        source="checks" if checks else "approvals",
        meta={"code": exc.code, "github_login": login},
        kind="note",
    )
    if msg is not None:
        await jobs.enqueue(deps.session, jobs.DELIVER_MESSAGE, {"message_id": msg.id, "task_id": task.id})


async def _approve_commented(
    deps: Deps, gh: Any, task: Task, actor: Actor, *, comment: dict[str, Any], number: int, text: str
) -> None:
    """`/approve` names no commit: it approves the PR's head at the time it was written. So it counts
    only if written after OSIRIS pushed the latest version (a comment delivered late, or written
    while a new version was on its way, approves nothing) and while the branch is still there."""
    lifecycle.check(lifecycle.Action.APPROVE, task.status, actor, task.assignee_id)  # state first
    latest = await _latest_version(deps, task)
    if latest is None or latest.commit_sha is None:
        raise NotPublished(f"version {task.artifact_count} is not published yet; review it once it is")
    pushed = await _published_at(deps, task, latest.version)
    written = _github_time(comment.get("created_at"))
    # GitHub's clock against ours (both assumed NTP-synced); GitHub's whole seconds round towards stale.
    if pushed is None or written is None or written < pushed:
        raise StaleApproval(
            f"the comment was written before version {latest.version} (commit {latest.commit_sha[:12]}) "
            "was pushed, so it approves an earlier head; review the pull request and approve again"
        )
    current = await gh.get(repo_path(await _repo_of(deps, task), "pulls", str(number)))
    await _approve_pinned(
        deps,
        task,
        actor,
        comment=text,
        seen=latest.commit_sha,
        branch_head=((current or {}).get("head") or {}).get("sha") or "",
    )


async def _run_command(
    deps: Deps,
    gh: Any,
    task: Task,
    actor: Actor,
    name: str,
    arg: str,
    *,
    comment: dict[str, Any],
    number: int,
) -> tuple[bool, str]:
    """Run a PR comment's command; (False, why) when it did nothing."""
    try:
        if name == "approve":
            try:
                await _approve_commented(
                    deps, gh, task, actor, comment=comment, number=number, text=arg or "/approve on GitHub"
                )
            except APPROVAL_REFUSED as exc:
                await _checks_hold_reply(deps, task, actor.name, exc)
                return False, exc.detail
        elif name == "reject":
            await lifecycle.cancel_task(deps.session, actor, task.id, reason=arg or "/reject on GitHub")
        else:  # retry: publish the latest version again (publishing is idempotent)
            latest = await deps.session.scalar(
                select(Artifact).where(Artifact.task_id == task.id).order_by(Artifact.version.desc()).limit(1)
            )
            if latest is None:
                return False, "there is no version to publish"
            await record_event(deps.session, task, actor, "retry_requested", data={"version": latest.version})
            await jobs.enqueue(
                deps.session,
                jobs.PUBLISH_ARTIFACT,
                {"artifact_id": latest.id, "task_id": task.id},
                dedupe_key=f"publish-{latest.id}",
            )
    except IllegalTransition:
        return False, ""
    return True, ""


OPEN = frozenset(s.value for s in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW))


@pull_requests.register("pull_request", action="closed")
async def on_closed(event: sansio.Event, gh: Any, deps: Deps) -> None:
    pr = event.data["pull_request"]
    task = await find_task(deps, event.data, pr["number"], pr["head"]["ref"])
    if task is None:
        return
    ours = (pr.get("user") or {}).get("login", "")
    merged = bool(pr.get("merged"))
    login = ((pr.get("merged_by") if merged else None) or event.data["sender"])["login"]
    if login.lower() == ours.lower():
        return  # OSIRIS merged it after an approval, or closed it after a rejection it recorded
    if merged:
        if task.status == TaskStatus.DONE.value:
            return  # approved in OSIRIS already: the merge is the one that approval asked for
        who = await judge(deps, gh, task, login, pr_author=ours)
        if who.approver is None:
            await _unapproved_merge(deps, task, who, pr)
        elif task.status == TaskStatus.REVIEW.value:
            # Merging needs write access on GitHub, and an approver did it: a human approval here.
            await lifecycle.approve_task(
                deps.session,
                who.approver,
                task.id,
                comment=f"merged on GitHub by @{login}",
                already_merged=True,
            )
        return
    if task.status not in OPEN:
        return
    who = await judge(deps, gh, task, login, pr_author=ours)
    if who.approver is None:
        # Leaving it closed would leave a task in review with nothing to review on GitHub, and a
        # portal approval would fail to merge: the PR is OSIRIS's, so it is opened again.
        await _not_counted(deps, gh, task, who, pr, action="closed", restore="open")
        return
    await lifecycle.cancel_task(
        deps.session, who.approver, task.id, reason=f"pull request closed on GitHub by @{login}"
    )


@pull_requests.register("pull_request", action="reopened")
async def on_reopened(event: sansio.Event, gh: Any, deps: Deps) -> None:
    pr = event.data["pull_request"]
    task = await find_task(deps, event.data, pr["number"], pr["head"]["ref"])
    if task is None or task.status != TaskStatus.REJECTED.value:
        return
    login = event.data["sender"]["login"]
    ours = (pr.get("user") or {}).get("login", "")
    who = await judge(deps, gh, task, login, pr_author=ours)
    if who.approver is None:
        await _not_counted(deps, gh, task, who, pr, action="reopened", restore="closed")
        return
    await lifecycle.reopen_task(
        deps.session, who.approver, task.id, reason=f"pull request reopened on GitHub by @{login}"
    )


async def _unapproved_merge(deps: Deps, task: Task, who: Judged, pr: dict[str, Any]) -> None:
    """A merge on GitHub that nobody approved in OSIRIS: recorded as the merger's, flagged, and the
    task stays where it was. A reviewer's approval later accepts it (`lifecycle.approve_task` sees
    this event), or they revert it on GitHub; the audit log and the task page show it until then."""
    await record_event(
        deps.session,
        task,
        who.actor,
        lifecycle.UNAPPROVED_MERGE,
        data={
            "flagged": True,
            "github_login": who.login,
            "standing": who.standing.value,
            "why": who.why,
            "status": task.status,
            "pr_number": pr["number"],
            "head_sha": (pr.get("head") or {}).get("sha"),
            "merge_commit_sha": pr.get("merge_commit_sha"),
        },
    )


async def _not_counted(
    deps: Deps, gh: Any, task: Task, who: Judged, pr: dict[str, Any], *, action: str, restore: str
) -> None:
    """A close or reopen by someone who does not decide (the agent, the requester, a non-approver):
    OSIRIS does not move, records who did it (`pr_closed_by_agent`, `pr_reopened_by_requester`, …)
    and puts the PR back as the task's state says. Done here rather than in a job: this handler is
    a job already, a retry repeats the idempotent PATCH, and its echo is OSIRIS's own (ignored)."""
    number = pr["number"]
    data: dict[str, Any] = {
        "flagged": True,
        "github_login": who.login,
        "standing": who.standing.value,
        "why": who.why,
        "status": task.status,
        "pr_number": number,
        "pr_state": restore,
    }
    try:
        await gh.patch(repo_path(await _repo_of(deps, task), "pulls", str(number)), {"state": restore})
    except BadRequest as exc:  # e.g. 422: the branch is gone, so the PR cannot be opened again
        data.update(pr_state=pr.get("state"), restore_failed=f"{int(exc.status_code)} {exc}")
    kind = f"pr_{action}_by_{who.standing.value}"  # e.g. pr_closed_by_agent, pr_reopened_by_requester
    await record_event(deps.session, task, who.actor, kind, data=data)


ROUTER = Router(reviews, review_comments, issue_comments, pull_requests, ci_webhooks.ci_results)


async def dispatch(router: Router, event: sansio.Event, gh: Any, deps: Deps) -> None:
    """Run the handlers for one event; a refused move is undone and logged, never a failed job."""
    try:
        async with deps.session.begin_nested():
            await router.dispatch(event, gh, deps)
    except OsirisError as exc:
        log.info("github event %s (%s) not applied: %s", event.event, event.delivery_id, exc.code)


__all__ = ["GITHUB_EVENT", "ROUTER", "dispatch", "event_job", "router"]
