"""GitHub issues as a way in: a labelled issue is a request, its comments follow-ups, our answers comments.

The bridge's webhook route (signature, delivery dedupe, the `github_event` job) carries the events;
these routers turn them into the intake's `Inbound` and call the one intake service, like any chat
channel. The thread key is `owner/repo#<number>`; the requester is `github:<login>`. OSIRIS marks its
own comments (a hidden marker) and remembers their ids (`channel_notifications.provider_id`), so
their webhook echo is never imported back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gidgethub import BadRequest, sansio
from gidgethub.routing import Router
from sqlalchemy import case, func, select

from osiris.app import accounts, lifecycle, repositories
from osiris.app.actors import requester_actor
from osiris.app.errors import IllegalTransition
from osiris.app.events import record_event
from osiris.app.models import OPEN_STATUSES, ChannelNotification, Task, TaskStatus
from osiris.app.runtime import Services
from osiris.github_bridge import logins
from osiris.github_bridge.deps import Deps
from osiris.github_bridge.github_client import repo_path
from osiris.github_bridge.github_host import GitHubHost, is_ours, marker
from osiris.ingest import intake
from osiris.ingest.intake import Inbound, Outcome
from osiris.ingest.notify import SendFailed, Target, enqueue_reply

CHANNEL = "github"
OPEN = [s.value for s in OPEN_STATUSES]

issue_requests = Router()  # issues: opened / labeled / reopened → a task; unlabeled / closed → cancel
issue_threads = Router()  # issue_comment on a plain issue → a message (or a command)


def thread_key(full_name: str, number: int) -> str:
    return f"{full_name}#{number}"


def parse_thread(key: str) -> tuple[str, int]:
    repo, _, number = key.rpartition("#")
    if repo.count("/") != 1 or not number.isdigit():
        raise SendFailed(f"not an issue thread: {key!r}")
    return repo, int(number)


def is_osiris(settings: Any, login: str) -> bool:
    """OSIRIS's own account: the configured bot login, or any GitHub App bot."""
    low = login.lower()
    own = (settings.github.bot_login or "").lower()
    return low.endswith("[bot]") or (bool(own) and low == own)


def _labelled(issue: Mapping[str, Any], label: str) -> bool:
    return any((item or {}).get("name", "").lower() == label.lower() for item in issue.get("labels") or [])


def _names_our_label(data: Mapping[str, Any], label: str) -> bool:
    """A `labeled` / `unlabeled` event about our label (not another one)."""
    return str((data.get("label") or {}).get("name", "")).lower() == label.lower()


async def _repo_name(deps: Deps, full_name: str) -> str:
    """The OSIRIS repository served by this GitHub repository (the default one when several)."""
    default = deps.settings.repos.default_repo
    names = await deps.host.osiris_repos(full_name)
    if not names or default in names:
        return default
    return sorted(names)[0]


async def _issue_tasks(deps: Deps, thread: str) -> tuple[Task | None, int]:
    """The issue's current task (open first, else the newest) and how many it has had."""
    where = (Task.channel == CHANNEL, Task.channel_thread == thread)
    count = await deps.session.scalar(select(func.count()).select_from(Task).where(*where)) or 0
    task = await deps.session.scalar(
        select(Task)
        .where(*where)
        .order_by(case((Task.status.in_(OPEN), 0), else_=1), Task.id.desc())
        .limit(1)
    )
    return task, count


async def _answer(deps: Deps, thread: str, outcome: Outcome, key: str) -> None:
    if outcome.worth_a_reply:
        target = Target(CHANNEL, thread, task_id=outcome.task_id)
        await enqueue_reply(deps.session, target, outcome.reply, key=key)


def accounts_of(data: Mapping[str, Any]) -> tuple[str, ...]:
    """The repository, then the App installation: what maps an issue to an organization."""
    full_name = str((data.get("repository") or {}).get("full_name") or "").lower()
    installation = (data.get("installation") or {}).get("id")
    return tuple(a for a in (full_name, str(installation) if installation else "") if a)


async def _receive(deps: Deps, inbound: Inbound, full_name: str) -> Outcome:
    policy = intake.Policy.from_settings(deps.settings)
    destination = await intake.organization_for(deps.session, inbound, unmapped=policy.unmapped)
    if destination is None:
        return Outcome("ignored", "")  # nobody's, and unmapped accounts are refused: nothing stored
    org_id = destination.org_id
    # The organization's repository registered for this GitHub repository; for the default
    # organization the settings' mapping (OSIRIS_GITHUB_REPO); for another (mapped by its App
    # installation) its own default repository.
    registered = await repositories.name_for_github_repo(deps.session, org_id=org_id, full_name=full_name)
    if registered is not None:
        policy = dataclasses.replace(policy, repo=registered, repo_named=True)
    elif org_id == (await accounts.default_org(deps.session)).id:
        policy = dataclasses.replace(policy, repo=await _repo_name(deps, full_name), repo_named=True)
    # No per-sender rate limit here: GitHub accounts and labels are already gated by the repository.
    return await intake.receive(deps.session, inbound, policy=policy, limiter=None, destination=destination)


# --- issues ------------------------------------------------------------------------------------


@issue_requests.register("issues", action="opened")
@issue_requests.register("issues", action="labeled")
@issue_requests.register("issues", action="reopened")
async def on_issue_request(event: sansio.Event, gh: Any, deps: Deps) -> None:
    data = event.data
    issue, full_name = data["issue"], data["repository"]["full_name"]
    label = deps.settings.github.issue_label
    if issue.get("pull_request") or issue.get("state", "open") != "open" or not _labelled(issue, label):
        return
    if data["action"] == "labeled" and not _names_our_label(data, label):
        return  # another label on an issue we already know about
    thread = thread_key(full_name, issue["number"])
    current, earlier = await _issue_tasks(deps, thread)
    if current is not None and current.status in OPEN:
        return  # opened with the label, then the `labeled` event: one task
    login = issue["user"]["login"]
    inbound = Inbound(
        channel=CHANNEL,
        provider="github-issue",
        # The n-th task of this issue: `opened` and `labeled` for the same issue, even handled at
        # once by two workers, meet on this one key and create one task.
        delivery_id=f"{thread}/task-{earlier + 1}",
        sender=f"github:{login}",
        text=(issue.get("body") or "").strip(),
        subject=issue.get("title") or f"Issue #{issue['number']}",
        followup_text="",  # an issue body is a request, never a command
        new_thread=thread,
        display_name=login,
        meta={"issue_url": issue.get("html_url"), "github_login": login},
        accounts=accounts_of(data),
    )
    outcome = await _receive(deps, inbound, full_name)
    await _answer(deps, thread, outcome, key=f"reply-github-{inbound.delivery_id}")


@issue_requests.register("issues", action="unlabeled")
@issue_requests.register("issues", action="closed")
async def on_issue_withdrawn(event: sansio.Event, gh: Any, deps: Deps) -> None:
    """Before work starts, taking the label off or closing the issue withdraws the request."""
    data = event.data
    issue, full_name = data["issue"], data["repository"]["full_name"]
    label = deps.settings.github.issue_label
    if data["action"] == "unlabeled" and not _names_our_label(data, label):
        return
    thread = thread_key(full_name, issue["number"])
    task, _ = await _issue_tasks(deps, thread)
    if task is None or task.status != TaskStatus.PENDING.value:
        return  # work has started (or finished): the PR and its review decide from here
    who = (data.get("sender") or {}).get("login", "someone")
    if await logins.is_agent_login(deps.session, task, who):
        await _agent_withdrawal(deps, gh, task, data, who)
        return
    why = "the label was removed" if data["action"] == "unlabeled" else "the issue was closed"
    try:
        await lifecycle.cancel_task(
            deps.session,
            requester_actor(task.org_id, task.requester or f"github:{who}"),
            task.id,
            reason=f"{why} on GitHub by @{who}",
        )
    except IllegalTransition:
        return
    await _answer(
        deps,
        thread,
        Outcome("cancelled", f"Task #{task.id} cancelled: {why} before work started.", task.id),
        key=f"github-withdrawn-{task.id}",
    )


async def _agent_withdrawal(deps: Deps, gh: Any, task: Task, data: Mapping[str, Any], login: str) -> None:
    """An agent's GitHub login closed the issue or took the label off: an agent never withdraws a
    request. The task stays PENDING, the event is recorded as the agent's, and the issue is put back."""
    issue, full_name, action = data["issue"], data["repository"]["full_name"], data["action"]
    path = repo_path(full_name, "issues", str(issue["number"]))
    info: dict[str, Any] = {
        "flagged": True,
        "github_login": login,
        "issue": thread_key(full_name, issue["number"]),
    }
    try:
        if action == "closed":
            await gh.patch(path, {"state": "open"})
        else:
            await gh.post(f"{path}/labels", {"labels": [deps.settings.github.issue_label]})
    except BadRequest as exc:  # locked, deleted, issues turned off: recorded, the task is unchanged
        info["restore_failed"] = f"{int(exc.status_code)} {exc}"
    actor = logins.commenter(task, login, await logins.mapped_user(deps, task, login))
    await record_event(deps.session, task, actor, f"issue_{action}_by_agent", data=info)


# --- comments on issues ------------------------------------------------------------------------


async def posted_by_us(deps: Deps, comment_id: int) -> bool:
    found = await deps.session.scalar(
        select(ChannelNotification.id).where(
            ChannelNotification.channel == CHANNEL, ChannelNotification.provider_id == str(comment_id)
        )
    )
    return found is not None


@issue_threads.register("issue_comment", action="created")
async def on_issue_thread_comment(event: sansio.Event, gh: Any, deps: Deps) -> None:
    data = event.data
    issue, comment, full_name = data["issue"], data["comment"], data["repository"]["full_name"]
    if issue.get("pull_request"):
        return  # a PR conversation: the code host bridge's
    login = comment["user"]["login"]
    body = comment.get("body") or ""
    if is_ours(body) or is_osiris(deps.settings, login) or await posted_by_us(deps, comment["id"]):
        return
    thread = thread_key(full_name, issue["number"])
    inbound = Inbound(
        channel=CHANNEL,
        provider="github-comment",
        delivery_id=f"{full_name}/comment/{comment['id']}",
        sender=f"github:{login}",
        text=body.strip(),
        new_thread=thread,
        thread_keys=(thread,),
        may_create=False,  # a comment follows up on the issue's task; the label asks for work
        accounts=accounts_of(data),
        display_name=login,
        meta={"comment_id": comment["id"], "url": comment.get("html_url"), "github_login": login},
    )
    outcome = await _receive(deps, inbound, full_name)
    await _answer(deps, thread, outcome, key=f"reply-github-comment-{comment['id']}")


ROUTER = Router(issue_requests, issue_threads)


# --- answers on the issue ----------------------------------------------------------------------


class GitHubIssueSender:
    """Posts OSIRIS's answers as issue comments with the code host's GitHub client.

    The client is looked up when sending: the GitHub host is the process's code host, set up by the
    bridge's extension (and replaced by a fake in tests).
    """

    def __init__(self, services: Services) -> None:
        self.services = services

    async def send(self, target: Target, text: str, key: str) -> dict[str, Any]:
        host = self.services.code_host
        if not isinstance(host, GitHubHost):
            raise SendFailed("GitHub is not the code host here")
        repo, number = parse_thread(target.to)
        try:
            posted = await host.gh.post(
                repo_path(repo, "issues", str(number), "comments"), {"body": f"{text}\n\n{marker(key)}"}
            )
        except BadRequest as exc:  # 403 locked, 404 gone, 410 issues off, 422 refused: for good
            raise SendFailed(f"github refused the comment: {exc.status_code}") from exc
        return {"provider_id": str(posted["id"]), "comment_id": posted["id"], "url": posted.get("html_url")}
