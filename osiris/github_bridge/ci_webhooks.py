"""The repository's own CI on GitHub counts as a pre-review check.

`check_run`, `check_suite` and `status` events for the head commit of a task's current version are
recorded as `ci_result` events; in `block` mode (settings `checks_mode`, per repository) a failure
sends a task in REVIEW back to its agent (`lifecycle.checks_failed`) with the failing check's name
and link. Results for older commits are recorded and change nothing. OSIRIS's own results (its check runs, by
external id or App id, and its `osiris/…` statuses) come back here too and are skipped: the
`run_checks` job has counted them already.
"""

from __future__ import annotations

from typing import Any

from gidgethub import sansio
from gidgethub.routing import Router
from sqlalchemy import select

from osiris.app import lifecycle
from osiris.app.actors import system_actor
from osiris.app.events import record_event
from osiris.app.models import Artifact, Task, TaskStatus
from osiris.github_bridge import logins
from osiris.github_bridge.check_reports import CONTEXT_PREFIX, EXTERNAL_ID_PREFIX

EVENTS = frozenset({"check_run", "check_suite", "status"})
FAILED = frozenset({"failure", "timed_out", "error", "action_required", "startup_failure"})

ci_results = Router()


async def _current_task(deps: Any, full_name: str | None, sha: str | None) -> tuple[Task, Artifact] | None:
    """The task whose latest version is `sha`, in a repository this host serves."""
    if not sha or not full_name:
        return None
    names = await deps.host.osiris_repos(full_name)
    stmt = (
        select(Task, Artifact)
        .join(Artifact, Artifact.task_id == Task.id)
        .where(Artifact.commit_sha == sha, Artifact.version == Task.artifact_count)
        .order_by(Task.id.desc())
        .with_for_update(of=Task)
    )
    for task, artifact in (await deps.session.execute(stmt)).all():
        if names is None or task.repo in names:
            return task, artifact
    return None


async def _record(
    deps: Any, data: dict[str, Any], *, sha: str | None, name: str, result: str, url: str | None
) -> None:
    if not deps.settings.checks.github_ci:
        return
    found = await _current_task(deps, (data.get("repository") or {}).get("full_name"), sha)
    if found is None:
        return
    task, artifact = found
    actor = system_actor(task.org_id, "github-ci")
    failed = result in FAILED
    info: dict[str, Any] = {
        "name": name,
        "result": result,
        "url": url,
        "sha": sha,
        "version": artifact.version,
    }
    mode = deps.settings.checks.mode.get(task.repo, deps.settings.checks.default_mode)
    moves = failed and mode == "block" and task.status == TaskStatus.REVIEW.value
    sender = str((data.get("sender") or {}).get("login") or "")
    if moves and sender and await logins.is_agent_login(deps.session, task, sender):
        # A commit status or check the agent's own login reported would take the version out of
        # review on the agent's word: recorded as what it is, and it moves nothing.
        info.update(not_counted="reported by the agent's GitHub login", github_login=sender, flagged=True)
        moves = False
    await record_event(deps.session, task, actor, "ci_result", data=info)
    if moves:
        link = f" — {url}" if url else ""
        feedback = (
            f"The repository's CI failed on version {artifact.version} ({sha[:12] if sha else ''}):\n"
            f"- {name}: {result}{link}\n\nFix it and submit a new version."
        )
        await lifecycle.checks_failed(
            deps.session,
            actor,
            task.id,
            feedback=feedback,
            lease_seconds=deps.settings.tasks.lease_seconds,
            meta={"failing": [name], "links": [url] if url else [], "sha": sha, "version": artifact.version},
        )


def _our_app(deps: Any, app: Any) -> bool:
    """A check run or suite made by OSIRIS's own GitHub App: our checks, already counted."""
    ours = deps.settings.github.app_id
    return ours is not None and isinstance(app, dict) and str(app.get("id")) == str(ours)


@ci_results.register("check_run", action="completed")
async def on_check_run(event: sansio.Event, gh: Any, deps: Any) -> None:
    run = event.data.get("check_run") or {}
    if str(run.get("external_id") or "").startswith(EXTERNAL_ID_PREFIX) or _our_app(deps, run.get("app")):
        return  # the echo of OSIRIS's own check run
    await _record(
        deps,
        event.data,
        sha=run.get("head_sha"),
        name=str(run.get("name") or "check run"),
        result=str(run.get("conclusion") or "unknown"),
        url=run.get("html_url") or run.get("details_url"),
    )


@ci_results.register("check_suite", action="completed")
async def on_check_suite(event: sansio.Event, gh: Any, deps: Any) -> None:
    suite = event.data.get("check_suite") or {}
    app = suite.get("app") or {}
    if _our_app(deps, app):
        return  # the suite of OSIRIS's own check runs
    await _record(
        deps,
        event.data,
        sha=suite.get("head_sha"),
        name=f"check suite {app.get('name') or app.get('slug') or suite.get('id')}",
        result=str(suite.get("conclusion") or "unknown"),
        url=suite.get("url"),
    )


@ci_results.register("status")
async def on_status(event: sansio.Event, gh: Any, deps: Any) -> None:
    state = str(event.data.get("state") or "unknown")
    if state == "pending" or str(event.data.get("context") or "").lower().startswith(CONTEXT_PREFIX):
        return  # still running, or the echo of a status OSIRIS set for its own checks
    await _record(
        deps,
        event.data,
        sha=event.data.get("sha"),
        name=str(event.data.get("context") or "status"),
        result=state,
        url=event.data.get("target_url"),
    )
