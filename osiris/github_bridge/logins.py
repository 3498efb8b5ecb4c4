"""Who a GitHub login is to a task: the one rule for whose action on GitHub counts as a reviewer's.

Every GitHub edge that could move a task on a person's word (reviews and `/approve` on the PR, a
merge, close or reopen there, an issue closed before work starts, a CI failure) asks here first.
Only `Standing.REVIEWER` is a human decision. The task's agent (its holder, an author of one of
its versions, or any agent-role account mapped to the login), the requester (with separation of
duties), bots and anyone not an approver under `github_approvers` are recorded as themselves and
never stand in for a reviewer.

Kept apart from `github_events.py` so the issue intake and the CI edge, which that module imports, can
ask the same question without an import cycle.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gidgethub import BadRequest
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app.actors import Actor
from osiris.app.auth import actor_for
from osiris.app.models import Artifact, Role, Task, User
from osiris.github_bridge.github_client import repo_path

if TYPE_CHECKING:
    from osiris.github_bridge.deps import Deps


class Standing(enum.StrEnum):
    BOT = "bot"  # OSIRIS's own account, or any GitHub App bot
    AGENT = "agent"
    REQUESTER = "requester"
    REVIEWER = "reviewer"
    NOT_A_REVIEWER = "not_a_reviewer"


@dataclass(frozen=True)
class Judged:
    login: str
    standing: Standing
    actor: Actor  # who acted, for the record: a reviewer's actor only when standing is REVIEWER
    why: str = ""  # why it does not count (empty for a reviewer)

    @property
    def approver(self) -> Actor | None:
        return self.actor if self.standing is Standing.REVIEWER else None


def github_actor(task: Task, login: str) -> Actor:
    """A GitHub account without an OSIRIS user that GitHub says may write (`github_approvers=write`)."""
    return Actor(org_id=task.org_id, user_id=None, name=f"github:{login}", role=Role.REVIEWER)


def commenter(task: Task, login: str, user: User | None) -> Actor:
    """Who said or did something, as themselves: their OSIRIS user, else `@login` with no role."""
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


async def is_agent_login(session: AsyncSession, task: Task, login: str) -> bool:
    """The login is the task's agent's: mapped to its holder, to an author of one of its versions,
    or to any account with the agent role (in any organization, active or not: an account that is
    an agent anywhere never decides for a person)."""
    authors = select(Artifact.author_id).where(Artifact.task_id == task.id, Artifact.author_id.is_not(None))
    found = await session.scalar(
        select(User.id)
        .where(
            func.lower(User.github_login) == login.lower(),
            or_(User.role == Role.AGENT.value, User.id == task.assignee_id, User.id.in_(authors)),
        )
        .limit(1)
    )
    return found is not None


def _is_requester(task: Task, login: str, user: User | None) -> bool:
    requester = (task.requester or "").lower().lstrip("@")
    low = login.lower()
    return bool(requester) and (
        requester in {low, f"github:{low}"} or (user is not None and user.username.lower() == requester)
    )


async def _may_write(deps: Deps, gh: Any, task: Task, login: str) -> bool:
    repo = await deps.host.repo_for(task)
    try:
        found = await gh.get(repo_path(repo, "collaborators", login, "permission"))
    except BadRequest as exc:
        if int(exc.status_code) == 404:  # not a collaborator (or not a user): no write access
            return False
        raise
    return found.get("permission") in ("admin", "write") or found.get("role_name") == "maintain"


async def judge(deps: Deps, gh: Any, task: Task, login: str, *, pr_author: str | None) -> Judged:
    """What an action on GitHub by `login` counts as for `task`."""
    low = login.lower()
    user = await mapped_user(deps, task, login)
    as_themselves = commenter(task, login, user)
    if low.endswith("[bot]") or (pr_author and low == pr_author.lower()):
        return Judged(login, Standing.BOT, as_themselves, "OSIRIS's own account does not review its work")
    if await is_agent_login(deps.session, task, login):
        return Judged(login, Standing.AGENT, as_themselves, "the agent does not approve its own work")
    if deps.settings.tasks.separation_of_duties and _is_requester(task, login, user):
        return Judged(
            login, Standing.REQUESTER, as_themselves, "the requester does not approve their own request"
        )
    if user is not None:
        if user.role in (Role.REVIEWER.value, Role.ADMIN.value):
            return Judged(login, Standing.REVIEWER, actor_for(user))
        why = f"@{login} is mapped to an OSIRIS {user.role}, not a reviewer"
        return Judged(login, Standing.NOT_A_REVIEWER, as_themselves, why)
    if deps.settings.github.approvers == "write" and await _may_write(deps, gh, task, login):
        return Judged(login, Standing.REVIEWER, github_actor(task, login))
    return Judged(
        login, Standing.NOT_A_REVIEWER, as_themselves, f"@{login} is not mapped to an OSIRIS reviewer"
    )


async def reviewer(
    deps: Deps, gh: Any, task: Task, login: str, *, pr_author: str | None
) -> tuple[Actor | None, str]:
    """The actor an approval or verdict from `login` counts as, or (None, why it does not count)."""
    judged = await judge(deps, gh, task, login, pr_author=pr_author)
    return judged.approver, judged.why
