"""GitHub webhooks: verify, record the delivery, answer at once; the work runs as a job.

The route checks X-Hub-Signature-256 before it parses anything (gidgethub's `Event.from_http`),
stores the delivery id under a unique key (a redelivery stops there) and enqueues `github_event` in
the same transaction. The job dispatches the event through one gidgethub Router per behaviour,
bedevere style; every state change goes through `osiris.app.lifecycle` as the mapped person.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from gidgethub import BadRequest, ValidationFailure, routing, sansio
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import jobs, lifecycle, repositories_registry
from osiris.app.actors import Actor, system_actor
from osiris.app.auth import RuntimeDep, actor_for
from osiris.app.config import Settings
from osiris.app.errors import (
    ChecksFailed,
    ChecksPending,
    IllegalTransition,
    InvalidInput,
    OsirisError,
    Unauthenticated,
)
from osiris.app.models import Artifact, Delivery, Message, Role, Task, TaskStatus, User
from osiris.app.runtime import Runtime
from osiris.github_bridge import ci_webhooks
from osiris.github_bridge.github_host import GitHubHost, is_ours
from osiris.ingest import github_issues  # issues as requests: a chat channel riding on this route

log = logging.getLogger(__name__)

PROVIDER = "github"
GITHUB_EVENT = "github_event"
HANDLED = (
    frozenset(
        {"pull_request", "pull_request_review", "pull_request_review_comment", "issue_comment", "issues"}
    )
    | ci_webhooks.EVENTS
)  # the repository's own CI: pre-review checks on GitHub
_BRANCH = re.compile(r"^osiris/task-(\d+)$")
_COMMAND = re.compile(r"^/(approve|reject|retry)\b[ \t]*(.*)$", re.IGNORECASE | re.DOTALL)

router = APIRouter(tags=["webhooks"])


# --- the edge ------------------------------------------------------------------------------------


def _repository(data: Any) -> str | None:
    repo = data.get("repository") if isinstance(data, dict) else None
    return repo.get("full_name") if isinstance(repo, dict) else None


def _served(settings: Settings, full_name: str | None) -> bool:
    if not full_name:
        return False
    mapping = settings.github_repo
    return "*" in mapping or any(v.lower() == full_name.lower() for v in mapping.values())


async def _registered(runtime: Runtime, full_name: str | None) -> bool:
    if not full_name:
        return False
    async with runtime.sessions() as session:
        return await repositories_registry.org_for_github_repo(session, full_name) is not None


@router.post("/api/v1/webhooks/github", status_code=202)
async def receive_github(request: Request, runtime: RuntimeDep) -> JSONResponse:
    secret = runtime.settings.github_webhook_secret
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


@dataclass
class Deps:
    """What a handler may use, passed explicitly (handlers never read the environment)."""

    session: AsyncSession
    settings: Settings
    host: GitHubHost


@jobs.job_handler(GITHUB_EVENT)
async def handle_github_event(payload: dict[str, Any], ctx: jobs.JobContext) -> None:
    host = ctx.services.get("code_host")
    if not isinstance(host, GitHubHost):
        log.info("github event ignored: the code host is not GitHub")
        return
    event = sansio.Event(payload["data"], event=payload["event"], delivery_id=payload["delivery_id"])
    async with ctx.sessions() as session, session.begin():
        await dispatch(event, host.gh, Deps(session, ctx.settings, host))


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
    match = _BRANCH.match(head_ref or "")
    if match:
        task = await deps.session.get(Task, int(match.group(1)), with_for_update=True)
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


def github_actor(task: Task, login: str) -> Actor:
    """A GitHub account without an OSIRIS user, for moves GitHub itself already authorised."""
    return Actor(org_id=task.org_id, user_id=None, name=f"github:{login}", role=Role.REVIEWER)


def commenter(task: Task, login: str, user: User | None) -> Actor:
    if user is not None:
        return actor_for(user)
    return Actor(org_id=task.org_id, user_id=None, name=f"@{login}", role=None)


async def mapped_user(deps: Deps, task: Task, login: str) -> User | None:
    return await deps.session.scalar(
        select(User).where(
            User.org_id == task.org_id,
            func.lower(User.github_login) == login.lower(),
            User.is_active.is_(True),
        )
    )


async def reviewer(
    deps: Deps, gh: Any, task: Task, login: str, *, pr_author: str | None
) -> tuple[Actor | None, str]:
    """The actor an approval or verdict from `login` counts as, or (None, why it does not count)."""
    low = login.lower()
    if low.endswith("[bot]") or (pr_author and low == pr_author.lower()):
        return None, "OSIRIS's own account does not review its work"
    user = await mapped_user(deps, task, login)
    requester = (task.requester or "").lower().lstrip("@")
    own = requester in {low, f"github:{low}"} or (user is not None and user.username.lower() == requester)
    if deps.settings.separation_of_duties and requester and own:
        return None, "the requester does not approve their own request"
    if task.assignee_id is not None:
        agent = await deps.session.get(User, task.assignee_id)
        if agent is not None and (agent.github_login or "").lower() == low:
            return None, "the agent does not approve its own work"
    if user is not None:
        if user.role in (Role.REVIEWER.value, Role.ADMIN.value):
            return actor_for(user), ""
        return None, f"@{login} is mapped to an OSIRIS {user.role}, not a reviewer"
    if deps.settings.github_approvers == "write":
        repo = await _repo_of(deps, task)
        found = await gh.get(f"/repos/{repo}/collaborators/{login}/permission")
        if found.get("permission") in ("admin", "write") or found.get("role_name") == "maintain":
            return github_actor(task, login), ""
    return None, f"@{login} is not mapped to an OSIRIS reviewer"


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

reviews = routing.Router()
review_comments = routing.Router()
issue_comments = routing.Router()
pull_requests = routing.Router()


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
                lease_seconds=deps.settings.lease_seconds,
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
        latest = await _latest_version(deps, task)
        commit = review.get("commit_id")
        if actor is not None and latest is not None and commit is not None and commit != latest.commit_sha:
            # An approval names the commit the reviewer saw. A newer version, even one still on its
            # way to GitHub (no commit yet), was not reviewed, and approving merges the newest.
            actor, why = None, f"the approval is for an older commit than version {latest.version}"
        if actor is not None and task.status == TaskStatus.REVIEW.value:
            try:
                await lifecycle.approve_task(
                    deps.session, actor, task.id, comment=body or "approved on GitHub"
                )
                return
            except (ChecksPending, ChecksFailed) as exc:
                why = exc.detail
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


async def _review_comments(
    deps: Deps, gh: Any, task: Task, number: int, review_id: int
) -> list[dict[str, Any]]:
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
            done = await _run_command(deps, task, actor, command.group(1).lower(), command.group(2).strip())
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
    """An approval the pre-review checks hold back: the task stays in REVIEW and the PR says why
    (a message from the checks, mirrored as a PR comment by the deliver_message job)."""
    msg = await lifecycle.add_message(
        deps.session,
        task,
        system_actor(task.org_id, "checks"),
        body=f"@{login}: the approval was not counted: {exc.detail} ({exc.code}).",
        source="checks",
        meta={"code": exc.code, "github_login": login},
        kind="note",
    )
    if msg is not None:
        await jobs.enqueue(deps.session, jobs.DELIVER_MESSAGE, {"message_id": msg.id, "task_id": task.id})


async def _run_command(deps: Deps, task: Task, actor: Actor, name: str, arg: str) -> bool:
    try:
        if name == "approve":
            try:
                await lifecycle.approve_task(
                    deps.session, actor, task.id, comment=arg or "/approve on GitHub"
                )
            except (ChecksPending, ChecksFailed) as exc:
                await _checks_hold_reply(deps, task, actor.name, exc)
                return False
        elif name == "reject":
            await lifecycle.cancel_task(deps.session, actor, task.id, reason=arg or "/reject on GitHub")
        else:  # retry: publish the latest version again (publishing is idempotent)
            latest = await deps.session.scalar(
                select(Artifact).where(Artifact.task_id == task.id).order_by(Artifact.version.desc()).limit(1)
            )
            if latest is None:
                return False
            await lifecycle.record_event(
                deps.session, task, actor, "retry_requested", data={"version": latest.version}
            )
            await jobs.enqueue(
                deps.session,
                jobs.PUBLISH_ARTIFACT,
                {"artifact_id": latest.id, "task_id": task.id},
                dedupe_key=f"publish-{latest.id}",
            )
    except IllegalTransition:
        return False
    return True


@pull_requests.register("pull_request", action="closed")
async def on_closed(event: sansio.Event, gh: Any, deps: Deps) -> None:
    pr = event.data["pull_request"]
    task = await find_task(deps, event.data, pr["number"], pr["head"]["ref"])
    if task is None:
        return
    ours = (pr.get("user") or {}).get("login", "")
    if pr.get("merged"):
        login = (pr.get("merged_by") or event.data["sender"])["login"]
        if task.status != TaskStatus.REVIEW.value or login.lower() == ours.lower():
            return  # OSIRIS merged it after an approval, or the task already moved on
        user = await mapped_user(deps, task, login)
        # Merging needs write access on GitHub, so a merge there is a human approval here.
        actor = (
            actor_for(user)
            if user is not None and user.role != Role.AGENT.value
            else github_actor(task, login)
        )
        await lifecycle.approve_task(
            deps.session, actor, task.id, comment=f"merged on GitHub by @{login}", already_merged=True
        )
        return
    login = event.data["sender"]["login"]
    if task.status not in (s.value for s in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW)):
        return
    if login.lower() == ours.lower():
        return  # OSIRIS closed it (a rejection it already recorded)
    user = await mapped_user(deps, task, login)
    actor = (
        actor_for(user) if user is not None and user.role != Role.AGENT.value else github_actor(task, login)
    )
    await lifecycle.cancel_task(
        deps.session, actor, task.id, reason=f"pull request closed on GitHub by @{login}"
    )


@pull_requests.register("pull_request", action="reopened")
async def on_reopened(event: sansio.Event, gh: Any, deps: Deps) -> None:
    pr = event.data["pull_request"]
    task = await find_task(deps, event.data, pr["number"], pr["head"]["ref"])
    if task is None or task.status != TaskStatus.REJECTED.value:
        return
    login = event.data["sender"]["login"]
    user = await mapped_user(deps, task, login)
    actor = (
        actor_for(user) if user is not None and user.role != Role.AGENT.value else github_actor(task, login)
    )
    await lifecycle.reopen_task(
        deps.session, actor, task.id, reason=f"pull request reopened on GitHub by @{login}"
    )


ROUTER = routing.Router(
    reviews, review_comments, issue_comments, pull_requests, github_issues.ROUTER, ci_webhooks.ci_results
)


async def dispatch(event: sansio.Event, gh: Any, deps: Deps) -> None:
    """Run the handlers for one event; a refused move is undone and logged, never a failed job."""
    try:
        async with deps.session.begin_nested():
            await ROUTER.dispatch(event, gh, deps)
    except OsirisError as exc:
        log.info("github event %s (%s) not applied: %s", event.event, event.delivery_id, exc.code)


__all__ = ["GITHUB_EVENT", "ROUTER", "dispatch", "router"]
