"""The task state machine: the only code that changes a task's status.

Every move checks the actor's role and the task's state against RULES, writes the new state, a
TaskEvent and its side-effect jobs in the caller's transaction, and publishes the event with
`pg_notify`, which PostgreSQL delivers only if that transaction commits. Services flush, never commit.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, column, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql.selectable import TextualSelect

from osiris.app import announcements, db, events, jobs, metrics, repositories, routing, task_queries
from osiris.app.actors import Actor
from osiris.app.artifacts import ValidArtifact
from osiris.app.errors import (
    ChecksFailed,
    ChecksPending,
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotClaimable,
    NotPublished,
    NotYourTask,
    StaleApproval,
    TaskNotFound,
)
from osiris.app.models import (
    HUMAN_ROLES,
    OPEN_STATUSES,
    Artifact,
    CheckRun,
    Message,
    Role,
    Task,
    TaskEvent,
    TaskStatus,
    User,
)
from osiris.app.outbound_webhooks import delivery, subscriptions
from osiris.app.ports import branch_name

S = TaskStatus
SYSTEM = "system"  # stands for the system actor in RULES
REQUESTER = "requester"  # the person who asked, through their channel (no account)


class Action(enum.StrEnum):
    CLAIM = "claim"
    RELEASE = "release"
    EXPIRE = "expire"
    SUBMIT = "submit"
    REQUEST_CHANGES = "request_changes"
    APPROVE = "approve"
    CANCEL = "cancel"
    MERGE_FAILED = "merge_failed"
    REOPEN = "reopen"
    CHECKS_FAILED = "checks_failed"


@dataclass(frozen=True)
class Rule:
    sources: frozenset[TaskStatus]
    target: TaskStatus
    roles: frozenset[Role | str]
    holder_only: bool = False  # an agent may do it only to a task it holds


RULES: dict[Action, Rule] = {
    Action.CLAIM: Rule(frozenset({S.PENDING}), S.IN_PROGRESS, frozenset({Role.AGENT})),
    Action.RELEASE: Rule(frozenset({S.IN_PROGRESS}), S.PENDING, frozenset({Role.AGENT, Role.ADMIN}), True),
    Action.EXPIRE: Rule(frozenset({S.IN_PROGRESS}), S.PENDING, frozenset({SYSTEM})),
    Action.SUBMIT: Rule(frozenset({S.IN_PROGRESS}), S.REVIEW, frozenset({Role.AGENT}), True),
    Action.REQUEST_CHANGES: Rule(
        frozenset({S.REVIEW}), S.IN_PROGRESS, frozenset({Role.REVIEWER, Role.ADMIN})
    ),
    # DONE and REJECTED need a human: no agent and no system actor appears in these two rules.
    Action.APPROVE: Rule(frozenset({S.REVIEW}), S.DONE, frozenset({Role.REVIEWER, Role.ADMIN})),
    # A requester may withdraw their own request (the channel edge checks it is theirs).
    Action.CANCEL: Rule(
        frozenset(OPEN_STATUSES), S.REJECTED, frozenset({Role.REVIEWER, Role.ADMIN, REQUESTER})
    ),
    # The code host could not merge an approved task (conflict, moved branch): only the system
    # reports that, and the task goes back to its agent; it undoes an approval, never grants one.
    Action.MERGE_FAILED: Rule(frozenset({S.DONE}), S.IN_PROGRESS, frozenset({SYSTEM})),
    # A rejected change request reopened by a person (e.g. the PR reopened on GitHub) is back in review.
    Action.REOPEN: Rule(frozenset({S.REJECTED}), S.REVIEW, frozenset({Role.REVIEWER, Role.ADMIN})),
    # A submitted version failed its repository's blocking pre-review checks: only the system says so,
    # and the task goes back to its agent before any reviewer is asked. It never approves anything.
    Action.CHECKS_FAILED: Rule(frozenset({S.REVIEW}), S.IN_PROGRESS, frozenset({SYSTEM})),
}


def check(action: Action, status: str, actor: Actor, holder_id: int | None) -> TaskStatus:
    """Decide a move without touching the database; raise the typed error that explains a refusal."""
    rule = RULES[action]
    role = actor.rule_role
    if role not in rule.roles:
        raise Forbidden(f"role {role} may not {action.value} a task")
    if rule.holder_only and actor.is_agent and holder_id != actor.user_id:
        raise NotYourTask(f"you do not hold this task; you may not {action.value} it")
    if TaskStatus(status) not in rule.sources:
        if action is Action.CLAIM:
            raise NotClaimable(f"task is {status}, not PENDING")
        raise IllegalTransition(f"cannot {action.value} a task that is {status}")
    return rule.target


async def _move(
    session: AsyncSession,
    task: Task,
    actor: Actor,
    action: Action,
    *,
    data: dict[str, Any] | None = None,
    **changes: Any,
) -> int:
    source = task.status
    target = check(action, source, actor, task.assignee_id)
    task.status = target.value
    for key, value in changes.items():
        setattr(task, key, value)
    task.updated_at = _now()
    await session.flush()
    metrics.TRANSITIONS.labels(action.value, target.value).inc()
    event_id = await events.record_event(
        session, task, actor, action.value, from_status=source, to_status=target, data=data
    )
    if task.channel != "api":
        await jobs.enqueue(session, jobs.NOTIFY_REQUESTER, {"task_id": task.id, "event_id": event_id})
    return event_id


def _now() -> datetime:
    return datetime.now(UTC)


def _lease(seconds: int) -> datetime:
    # Python's clock, not the database's: values stay readable after flush without a round trip.
    # The sweeper compares with the database's now(); replicas' clocks are assumed NTP-synced.
    return _now() + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Submission:
    artifact: Artifact
    created: bool  # False when an idempotency key matched an earlier submission
    job_id: int | None  # the publishing job, while it runs


# --- creation ----------------------------------------------------------------------------------


async def create_task(  # noqa: PLR0913 - a new task's fields, keyword-only, as TaskCreate has them
    session: AsyncSession,
    actor: Actor,
    *,
    title: str,
    description: str = "",
    priority: int = 1,
    repo: str,
    base_branch: str,
    requester: str | None = None,
    channel: str = "api",
    channel_thread: str | None = None,
    skills: list[str] | None = None,
) -> Task:
    if not title.strip():
        raise InvalidInput("title must not be empty")
    task = Task(
        skills=routing.normalize_skills(skills or []),
        org_id=actor.org_id,
        title=title.strip(),
        description=description,
        priority=priority,
        repo=repo,
        base_branch=base_branch,
        requester=requester or actor.name,
        channel=channel,
        channel_thread=channel_thread,
        created_by_id=actor.user_id,
        status=TaskStatus.PENDING.value,
    )
    session.add(task)
    await session.flush()
    await session.refresh(task)
    await events.record_event(session, task, actor, "created", to_status=task.status)
    return task


async def file_task(  # noqa: PLR0913 - create_task's fields, less what the repository rule decides
    session: AsyncSession,
    actor: Actor,
    settings: Any,
    *,
    title: str,
    description: str = "",
    priority: int = 1,
    repo: str | None = None,
    requester: str | None = None,
    skills: list[str] | None = None,
    channel: str = "api",
) -> Task:
    """A new task from REST or the portal: the repository rule (`repositories`), then
    `create_task`. `settings` gives the default repository and branch and auto-registration."""
    name = await repositories.repository_for_task(
        session,
        org_id=actor.org_id,
        name=repo,
        default_repo=settings.repos.default_repo,
        auto_register=settings.repos.repositories_auto_register,
    )
    return await create_task(
        session,
        actor,
        title=title,
        description=description,
        priority=priority,
        repo=name,
        base_branch=settings.repos.default_base_branch,
        requester=requester,
        skills=skills,
        channel=channel,
    )


# --- the agent's side --------------------------------------------------------------------------


def _claim_statement(which: str) -> TextualSelect:
    """Claim, log and announce in one round trip; `which` picks the row (an id or the queue head)."""
    sql = (
        "WITH claimed AS ("  # noqa: S608 - module constants only, never input
        "  UPDATE tasks SET status = 'IN_PROGRESS', assignee_id = :actor_id,"
        "         lease_expires_at = :lease, updated_at = :now"
        f"  WHERE id = ({which}) AND org_id = :org_id AND status = 'PENDING' AND {routing.CLAIMABLE_SQL}"
        "  RETURNING *"
        "), ev AS ("
        + events.INSERT_EVENT_SQL.format(
            values="SELECT org_id, id, 'claim', :actor_id, :actor_name, 'PENDING', status, '{}'::jsonb "
            "FROM claimed"
        )
        + ") SELECT claimed.*, ev.id AS event_id, "
        + events.ANNOUNCE_SQL.format(status="ev.to_status")
        + " AS announced, "
        + subscriptions.MATCHING_SUBSCRIPTIONS_SQL
        + " AS webhook_ids FROM claimed JOIN ev ON ev.task_id = claimed.id"
    )
    extra = (column("event_id", BigInteger), column("announced"), column("webhook_ids", ARRAY(BigInteger)))
    return text(sql).columns(*Task.__table__.c, *extra)


_CLAIM_BY_ID = _claim_statement(":task_id")
_CLAIM_NEXT = _claim_statement(
    "SELECT id FROM tasks WHERE org_id = :org_id AND status = 'PENDING'"  # noqa: S608 - constants only
    " AND (CAST(:repo AS text) IS NULL OR repo = CAST(:repo AS text))"
    f" AND {routing.CLAIMABLE_SQL}"
    f" ORDER BY {routing.EFFECTIVE_PRIORITY_SQL} DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)


# The claim in autocommit, the REST hot path (issue 17): the statement above is a whole transaction
# by itself when nothing else has to commit with it, and then runs on a connection of its own without
# BEGIN and COMMIT (two of its three round trips). Nothing else has to when the task came through the
# API (no requester to notify, NOTIFY_REQUESTER) and its organization has no webhook subscription for
# claims (no deliver_webhook job): the statement claims only such a task. For any other task at the
# head of the queue it claims nothing and returns that task's id as `picked` without a claimed row;
# the caller then claims in a transaction, with the jobs, as `claim_next` always did. The picking,
# the routing rules and the event are the same SQL as above; the announcement is sent after the
# commit, batched (announcements), so that claimers do not queue behind each other's NOTIFY.
def _claim_alone_statement(pick: str) -> tuple[str, tuple[str, ...]]:
    sql = (
        f"WITH pick AS MATERIALIZED ({pick}), alone AS MATERIALIZED ("  # noqa: S608 - constants only
        "  SELECT pick.id, pick.channel = 'api' AND cardinality(("
        f"    SELECT {subscriptions.MATCHING_SUBSCRIPTIONS_SQL}"
        "    FROM (SELECT pick.org_id, CAST('claim' AS varchar) AS kind) AS ev)) = 0 AS alone"
        "  FROM pick"
        "), claimed AS ("
        "  UPDATE tasks SET status = 'IN_PROGRESS', assignee_id = :actor_id,"
        "         lease_expires_at = :lease, updated_at = :now"
        "  WHERE id = (SELECT id FROM alone WHERE alone) AND org_id = :org_id AND status = 'PENDING'"
        f"    AND {routing.CLAIMABLE_SQL}"
        "  RETURNING *"
        "), ev AS ("
        + events.INSERT_EVENT_SQL.format(
            values="SELECT org_id, id, 'claim', :actor_id, :actor_name, 'PENDING', status, '{}'::jsonb "
            "FROM claimed"
        )
        + ") SELECT alone.id AS picked, claimed.*, ev.id AS event_id"
        " FROM alone LEFT JOIN claimed ON claimed.id = alone.id LEFT JOIN ev ON ev.task_id = claimed.id"
    )
    # asyncpg's numbered parameters, in the order the names first appear
    compiled = text(sql).compile(dialect=asyncpg_dialect())
    return compiled.string, tuple(compiled.positiontup or ())


_ALONE_NEXT = _claim_alone_statement(
    "SELECT id, org_id, channel FROM tasks WHERE org_id = :org_id AND status = 'PENDING'"  # noqa: S608
    " AND (CAST(:repo AS text) IS NULL OR repo = CAST(:repo AS text))"
    f" AND {routing.CLAIMABLE_SQL}"
    f" ORDER BY {routing.EFFECTIVE_PRIORITY_SQL} DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_ALONE_BY_ID = _claim_alone_statement(
    "SELECT id, org_id, channel FROM tasks WHERE id = :task_id AND org_id = :org_id"
)
_TASK_COLUMNS = tuple(c.key for c in Task.__table__.c)


def _claim_params(actor: Actor, params: dict[str, Any]) -> dict[str, Any]:
    """The binds both claim statements share: who claims, now, and the lease's end."""
    now = _now()
    lease = now + timedelta(seconds=params.pop("lease_seconds"))
    return params | {
        "actor_id": actor.user_id,
        "actor_name": actor.name,
        "org_id": actor.org_id,
        "now": now,
        "lease": lease,
    }


async def _claim_alone(
    engine: AsyncEngine, actor: Actor, statement: tuple[str, tuple[str, ...]], **params: Any
) -> Task | None | bool:
    """The claim as one autocommitted statement: the claimed task, None when nothing was there to
    claim, or False when the task needs a transaction (the caller then claims in one)."""
    params = _claim_params(actor, params)
    sql, names = statement
    async with db.autocommit(engine) as conn:
        row = await conn.fetchrow(sql, *(params[n] for n in names))
    if row is None:
        return None
    if row["event_id"] is None:
        return False
    # Committed: announce it now, batched with this process's other claims (a NOTIFY in the statement
    # would serialise every claimer's commit: see announcements).
    status = TaskStatus.IN_PROGRESS.value
    await announcements.announce(
        engine, announcements.payload(row["event_id"], row["id"], row["org_id"], Action.CLAIM.value, status)
    )
    _CLAIMED.inc()
    # Detached, like a row a session has let go of: read its attributes, never lazy-load.
    return Task(**{c: row[c] for c in _TASK_COLUMNS})


_CLAIMED = metrics.TRANSITIONS.labels(Action.CLAIM.value, TaskStatus.IN_PROGRESS.value)


async def claim_next_autocommit(
    engine: AsyncEngine,
    session: AsyncSession,
    actor: Actor,
    *,
    lease_seconds: int,
    repo: str | None = None,
    aging: routing.Aging,
) -> Task | None:
    """`claim_next`, in autocommit when the claim writes nothing else (see `_claim_alone_statement`),
    else in `session`'s transaction. Same choice of task, same rules, same event and announcement."""
    check(Action.CLAIM, TaskStatus.PENDING, actor, None)
    task = await _claim_alone(
        engine, actor, _ALONE_NEXT, lease_seconds=lease_seconds, repo=repo, **aging.params()
    )
    if task is False:
        return await claim_next(session, actor, lease_seconds=lease_seconds, repo=repo, aging=aging)
    return task


async def claim_task_autocommit(
    engine: AsyncEngine, session: AsyncSession, actor: Actor, task_id: int, *, lease_seconds: int
) -> Task:
    """`claim_task`, in autocommit when the claim writes nothing else; a refusal is explained by
    `claim_task` in `session`, as are tasks that need a transaction."""
    check(Action.CLAIM, TaskStatus.PENDING, actor, None)
    task = await _claim_alone(engine, actor, _ALONE_BY_ID, task_id=task_id, lease_seconds=lease_seconds)
    if not task:
        return await claim_task(session, actor, task_id, lease_seconds=lease_seconds)
    return task


async def _claim(session: AsyncSession, actor: Actor, statement: TextualSelect, **params: Any) -> Task | None:
    """A conditional UPDATE decides a race: whoever's statement matches PENDING first wins."""
    params = _claim_params(actor, params)
    stmt = (
        select(Task, statement.selected_columns.event_id, statement.selected_columns.webhook_ids)
        .from_statement(statement)
        .execution_options(populate_existing=True)
    )
    row = (await session.execute(stmt, params)).first()
    if row is None:
        return None
    task, event_id, webhooks = row
    if webhooks:
        await delivery.enqueue_deliveries(session, event_id=event_id, subscription_ids=webhooks)
    metrics.TRANSITIONS.labels(Action.CLAIM.value, task.status).inc()
    if task.channel != "api":
        await jobs.enqueue(session, jobs.NOTIFY_REQUESTER, {"task_id": task.id, "event_id": event_id})
    return task


async def claim_task(session: AsyncSession, actor: Actor, task_id: int, *, lease_seconds: int) -> Task:
    check(Action.CLAIM, TaskStatus.PENDING, actor, None)  # the role check, before any SQL
    task = await _claim(session, actor, _CLAIM_BY_ID, task_id=task_id, lease_seconds=lease_seconds)
    if task is None:
        current = await task_queries.get_task(session, actor, task_id)  # TaskNotFound if absent
        if current.status != TaskStatus.PENDING.value:
            raise NotClaimable(f"task {task_id} is {current.status}, not PENDING")
        if current.reserved_for_id is not None and current.reserved_for_id != actor.user_id:
            raise NotClaimable(f"task {task_id} is reserved for another agent")
        raise NotClaimable(f"task {task_id} needs skills {', '.join(current.skills)}; you lack some of them")
    return task


async def claim_next(
    session: AsyncSession,
    actor: Actor,
    *,
    lease_seconds: int,
    repo: str | None = None,
    aging: routing.Aging,
) -> Task | None:
    """Take the best pending task this agent may take; concurrent callers skip the rows others are
    taking. Best is `routing.EFFECTIVE_PRIORITY_SQL` (priority lifted by age), then oldest."""
    check(Action.CLAIM, TaskStatus.PENDING, actor, None)
    return await _claim(
        session,
        actor,
        _CLAIM_NEXT,
        repo=repo,
        lease_seconds=lease_seconds,
        **aging.params(),
    )


async def heartbeat(session: AsyncSession, actor: Actor, task_id: int, *, lease_seconds: int) -> Task:
    """Renew the holder's lease; any call by the holder does this."""
    stmt = (
        update(Task)
        .where(
            Task.id == task_id,
            Task.org_id == actor.org_id,
            Task.assignee_id == actor.user_id,
            Task.status == TaskStatus.IN_PROGRESS.value,
        )
        .values(lease_expires_at=_lease(lease_seconds))
        .returning(Task)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    task = (await session.execute(stmt)).scalar_one_or_none()
    if task is None:
        current = await task_queries.get_task(session, actor, task_id)
        if current.assignee_id != actor.user_id:
            raise NotYourTask(f"you do not hold task {task_id}")
        raise IllegalTransition(f"task {task_id} is {current.status}; there is no lease to renew")
    return task


async def release_task(session: AsyncSession, actor: Actor, task_id: int, *, reason: str = "") -> Task:
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    await _move(
        session, task, actor, Action.RELEASE, data={"reason": reason}, assignee_id=None, lease_expires_at=None
    )
    return task


async def submit_artifact(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    artifact: ValidArtifact,
    summary: str | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """Store the next version and move the task to REVIEW.

    The task row lock serialises submissions, so versions are 1..n without gaps; the unique
    (task, version) constraint backs that up. A repeated idempotency key returns the first result.
    """
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    if idempotency_key:
        existing = (
            await session.execute(
                select(Artifact).where(
                    Artifact.task_id == task.id, Artifact.idempotency_key == idempotency_key
                )
            )
        ).scalar_one_or_none()
        if existing is not None:
            if existing.author_id != actor.user_id:
                raise NotYourTask("that idempotency key belongs to another agent's submission")
            return Submission(existing, created=False, job_id=None)
    check(Action.SUBMIT, task.status, actor, task.assignee_id)  # refuse before writing anything
    version = task.artifact_count + 1
    row = Artifact(
        org_id=task.org_id,
        task_id=task.id,
        version=version,
        kind=artifact.kind.value,
        content=artifact.content,
        summary=summary,
        size_bytes=len(artifact.content.encode()),
        author_id=actor.user_id,
        idempotency_key=idempotency_key,
        branch=branch_name(task.id),
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:  # the database disagrees with our lock: refuse rather than guess
        raise IllegalTransition("a concurrent submission took this version") from exc
    await _move(
        session,
        task,
        actor,
        Action.SUBMIT,
        data={"version": version, "artifact_id": row.id},
        artifact_count=version,
    )
    job_id = await jobs.enqueue(
        session,
        jobs.PUBLISH_ARTIFACT,
        {"artifact_id": row.id, "task_id": task.id},
        dedupe_key=f"publish-{row.id}",
    )
    return Submission(row, created=True, job_id=job_id)


# --- the humans' side --------------------------------------------------------------------------


async def request_changes(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    feedback: str,
    lease_seconds: int,
    source: str = "api",
    provider_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Task:
    if not feedback.strip():
        raise InvalidInput("feedback must say what to change")
    return await _back_to_holder(
        session,
        actor,
        task_id,
        Action.REQUEST_CHANGES,
        feedback,
        source,
        lease_seconds,
        meta,
        provider_id=provider_id,
        meta_in_event=False,  # the message carries the review; the event only says it happened
    )


# A version's OSIRIS checks in these states hold back its approval (block mode only).
CHECKS_PENDING = ("queued", "running")
CHECKS_FAILING = ("failed", "error")


async def checks_hold(session: AsyncSession, task: Task) -> None:
    """Refuse approving a task whose latest version's blocking checks are unfinished or failing.

    `inform` checks never hold. A version without a check_runs row (no checks configured, or not
    published yet) does not either: `approval_hold` refuses an unpublished version first."""
    status = await session.scalar(
        select(CheckRun.status).where(
            CheckRun.task_id == task.id, CheckRun.version == task.artifact_count, CheckRun.mode == "block"
        )
    )
    if status in CHECKS_PENDING:
        raise ChecksPending(
            f"version {task.artifact_count}'s blocking checks are {status}; approve once they pass"
        )
    if status in CHECKS_FAILING:
        raise ChecksFailed(
            f"version {task.artifact_count}'s blocking checks {'failed' if status == 'failed' else 'could not run'}"
            "; request changes or wait for a new version"
        )


UNAPPROVED_MERGE = "unapproved_merge"  # the code host says merged, and no person approved it here


async def unapproved_merge(session: AsyncSession, task: Task) -> TaskEvent | None:
    """The code host merge of the version now in review that no approval covers, if any: the newest
    `unapproved_merge` event since the task's latest submission (a new version is a new question).
    Such a merge (by the agent's own GitHub login, say) never moves the task; a person's approval
    then accepts it, and `approve_task` records it as merged on the code host."""
    since = (
        select(func.max(TaskEvent.id))
        .where(TaskEvent.task_id == task.id, TaskEvent.kind == Action.SUBMIT.value)
        .scalar_subquery()
    )
    return await session.scalar(
        select(TaskEvent)
        .where(
            TaskEvent.task_id == task.id,
            TaskEvent.kind == UNAPPROVED_MERGE,
            TaskEvent.id > func.coalesce(since, 0),
        )
        .order_by(TaskEvent.id.desc())
        .limit(1)
    )


async def approval_hold(session: AsyncSession, task: Task) -> Artifact:
    """The latest version, if a person may approve it now; else the typed refusal.

    A version is approvable only once published: its commit is what a reviewer can see and what
    the merge job will merge, and the publish job records that commit in the same transaction as
    the version's checks decision (a queued `check_runs` row, or none). So "published" also means
    "checks_hold below has what it needs": an approval can never slip in before the hold exists."""
    latest = await session.scalar(
        select(Artifact).where(Artifact.task_id == task.id, Artifact.version == task.artifact_count)
    )
    if latest is None or latest.commit_sha is None:
        raise NotPublished(
            f"version {task.artifact_count} is not published yet; approve it once its change request "
            "shows it (a reviewer approves what they can see)"
        )
    await checks_hold(session, task)
    return latest


async def approve_task(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    comment: str | None = None,
    version: int | None = None,
    head_sha: str | None = None,
    already_merged: bool = False,
) -> Task:
    """A person approves the latest version, which is then merged at exactly its published commit.

    `version` and `head_sha` name what the reviewer saw; anything but the latest version and its
    published commit is `stale_approval` (any new version voids earlier approvals). The latest
    version must be published (`not_published`), and its blocking checks that are queued, running
    or failing refuse it (`checks_pending` / `checks_failed`), whatever the edge. `already_merged`
    (a person merged the PR on the code host) records a fact, not a request: none of these apply."""
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    check(Action.APPROVE, task.status, actor, task.assignee_id)  # role and state first
    if not already_merged and await unapproved_merge(session, task) is not None:
        already_merged = True  # merged on the code host without an approval: this accepts that fact
    data: dict[str, Any] = {"comment": comment} if comment else {}
    merge: dict[str, Any] = {"task_id": task.id}
    if already_merged:
        data["merged_on_code_host"] = True
    else:
        # The task row lock serialises this with submissions: artifact_count is the latest version.
        if version is not None and version != task.artifact_count:
            raise StaleApproval(
                f"the approval is for version {version}, but the latest is version {task.artifact_count}; "
                "review the latest version and approve again"
            )
        latest = await approval_hold(session, task)
        if head_sha is not None and head_sha.lower() != latest.commit_sha.lower():
            raise StaleApproval(
                f"the approval is for commit {head_sha[:12]}, but version {latest.version} was published "
                f"as {latest.commit_sha[:12]}; review it and approve again"
            )
        data.update(version=latest.version, head_sha=latest.commit_sha)
        merge["head_sha"] = latest.commit_sha  # the merge job merges this commit or nothing
    await _move(
        session,
        task,
        actor,
        Action.APPROVE,
        data=data or None,
        lease_expires_at=None,
    )
    await jobs.enqueue(session, jobs.MERGE_TASK, merge, dedupe_key=f"merge-{task.id}")
    return task


async def cancel_task(
    session: AsyncSession, actor: Actor, task_id: int, *, reason: str | None = None
) -> Task:
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    had_artifacts = task.artifact_count > 0
    await _move(
        session,
        task,
        actor,
        Action.CANCEL,
        data={"reason": reason} if reason else None,
        lease_expires_at=None,
    )
    if had_artifacts:
        await jobs.enqueue(session, jobs.CLOSE_TASK, {"task_id": task.id}, dedupe_key=f"close-{task.id}")
    return task


async def merge_failed(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    feedback: str,
    lease_seconds: int,
    meta: dict[str, Any] | None = None,
) -> Task:
    """An approved task could not be merged: back to its holder, with the reason as feedback."""
    return await _back_to_holder(
        session, actor, task_id, Action.MERGE_FAILED, feedback, "code_host", lease_seconds, meta
    )


async def checks_failed(
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    *,
    feedback: str,
    lease_seconds: int,
    meta: dict[str, Any] | None = None,
) -> Task:
    """A version failed its blocking pre-review checks: back to its holder with the failing output,
    before any reviewer was asked (no review_requested event is written for it)."""
    return await _back_to_holder(
        session, actor, task_id, Action.CHECKS_FAILED, feedback, "checks", lease_seconds, meta
    )


async def _back_to_holder(  # noqa: PLR0913 - the three ways back to the holder differ in these values only
    session: AsyncSession,
    actor: Actor,
    task_id: int,
    action: Action,
    feedback: str,
    source: str,
    lease_seconds: int,
    meta: dict[str, Any] | None,
    *,
    provider_id: str | None = None,
    meta_in_event: bool = True,
) -> Task:
    """Work goes back to the agent who holds it, with a fresh lease and the feedback as a message:
    a reviewer's request for changes, or a system move (a merge conflict, failing checks)."""
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    data = meta if meta_in_event else None
    await _move(session, task, actor, action, data=data, lease_expires_at=_lease(lease_seconds))
    await add_message(
        session,
        task,
        actor,
        body=feedback,
        source=source,
        provider_id=provider_id,
        meta=meta,
        kind="feedback",
    )
    return task


async def reopen_task(
    session: AsyncSession, actor: Actor, task_id: int, *, reason: str | None = None
) -> Task:
    """A rejected task whose change request a person reopened goes back to REVIEW."""
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    check(Action.REOPEN, task.status, actor, task.assignee_id)  # role and state first
    if task.artifact_count == 0:
        raise IllegalTransition("only a task with a submitted version can be reopened for review")
    await _move(session, task, actor, Action.REOPEN, data={"reason": reason} if reason else None)
    return task


# --- messages ----------------------------------------------------------------------------------


async def add_message(  # noqa: PLR0913 - a message row's fields, keyword-only
    session: AsyncSession,
    task: Task,
    actor: Actor,
    *,
    body: str,
    source: str,
    provider_id: str | None = None,
    meta: dict[str, Any] | None = None,
    kind: str = "message",
    author_name: str | None = None,
) -> Message | None:
    """Append to the task's thread; a provider id seen before is ignored (returns None)."""
    if not body.strip():
        raise InvalidInput("message body must not be empty")
    if provider_id is not None:
        seen = await session.scalar(
            select(Message.id).where(
                Message.task_id == task.id, Message.source == source, Message.provider_id == provider_id
            )
        )
        if seen is not None:
            return None
    msg = Message(
        org_id=task.org_id,
        task_id=task.id,
        author_id=actor.user_id,
        author_name=author_name or actor.name,
        direction="from_agent" if actor.is_agent else "to_agent",
        source=source,
        body=body,
        provider_id=provider_id,
        meta={"kind": kind, **(meta or {})},
    )
    session.add(msg)
    await session.flush()
    await events.record_event(session, task, actor, "message", data={"message_id": msg.id, "source": source})
    if source in ("api", "portal", "mcp"):  # our own words go out; imported ones came from there
        await jobs.enqueue(session, jobs.DELIVER_MESSAGE, {"message_id": msg.id, "task_id": task.id})
    return msg


async def post_message(
    session: AsyncSession, actor: Actor, task_id: int, *, body: str, source: str
) -> Message:
    task = await task_queries.get_task(session, actor, task_id, for_update=actor.is_agent)
    if actor.is_agent and task.assignee_id != actor.user_id:
        raise NotYourTask("an agent may only write on a task it holds")
    msg = await add_message(session, task, actor, body=body, source=source)
    assert msg is not None  # noqa: S101 - no provider id, so never deduplicated
    return msg


# --- the lease sweeper -------------------------------------------------------------------------


async def expire_leases(session: AsyncSession, *, limit: int = 100) -> list[int]:
    """Return expired claims to PENDING, each with an event. Safe to run on every replica at once."""
    from osiris.app.actors import system_actor

    stale = (
        select(Task)
        .where(Task.status == TaskStatus.IN_PROGRESS.value, Task.lease_expires_at < func.now())
        .order_by(Task.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    returned = []
    for task in (await session.execute(stale)).scalars().all():
        holder = task.assignee_id
        await _move(
            session,
            task,
            system_actor(task.org_id, "lease-sweeper"),
            Action.EXPIRE,
            data={"previous_holder_id": holder},
            assignee_id=None,
            lease_expires_at=None,
        )
        returned.append(task.id)
    return returned


__all__ = ["RULES", "Action", "TaskNotFound", "check"]


# --- routing a task: what it needs and who may take it (the rules themselves are in routing) ---


def _require_supervisor(actor: Actor) -> None:
    if actor.role not in HUMAN_ROLES:
        raise Forbidden("only a reviewer or an admin routes tasks")


async def set_task_skills(
    session: AsyncSession, actor: Actor, task_id: int, *, skills: Iterable[str]
) -> Task:
    _require_supervisor(actor)
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    before, task.skills = list(task.skills or []), routing.normalize_skills(skills)
    await session.flush()
    await events.record_event(session, task, actor, "skills_set", data={"from": before, "to": task.skills})
    return task


async def set_task_priority(session: AsyncSession, actor: Actor, task_id: int, *, priority: int) -> Task:
    """A reviewer or admin re-ranks a task (0 low … 3 urgent); recorded as `priority_set`."""
    _require_supervisor(actor)
    if priority not in range(4):
        raise InvalidInput("priority is low, normal, high or urgent")
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    before, task.priority = task.priority, priority
    await session.flush()
    await events.record_event(session, task, actor, "priority_set", data={"from": before, "to": priority})
    return task


async def reserve_task(session: AsyncSession, actor: Actor, task_id: int, *, agent_id: int | None) -> Task:
    """Reserve a task for one agent of the organization (None lifts the reservation)."""
    _require_supervisor(actor)
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    if agent_id is not None:
        agent = await session.get(User, agent_id)
        if agent is None or agent.org_id != actor.org_id or agent.role != Role.AGENT.value:
            raise InvalidInput(f"user {agent_id} is not an agent of this organization")
    # On a task already taken this applies when it comes back to the queue (release, lease expiry).
    task.reserved_for_id = agent_id
    await session.flush()
    await events.record_event(session, task, actor, "reserved", data={"agent_id": agent_id})
    return task
