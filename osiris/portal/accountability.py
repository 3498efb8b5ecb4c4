"""Who closed a task, when, why, and what was merged; and which events are bookkeeping.

Read from the task's events only, so the page says what the audit log says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from osiris.app.lifecycle import UNAPPROVED_MERGE
from osiris.app.models import TaskEvent, TaskStatus

# The machinery's own records: useful in the audit log, noise on a person's timeline. The task page
# hides them behind a toggle; every other kind (decisions, submissions, failures, messages) shows.
BOOKKEEPING = frozenset(
    {
        "publish",
        "published",
        "publish_skipped",
        "merge_skipped",
        "close_skipped",
        "delivered",
        "notified",
        "requester_notified",
        "message_delivered",
        "checks_reported",
        "checks_started",
    }
)


@dataclass
class Closure:
    """A closed task's decision: the approval (DONE) or cancellation (REJECTED) that closed it."""

    status: str
    actor_name: str
    at: datetime
    comment: str | None  # the approval's comment or the cancellation's reason
    version: int | None = None
    head_sha: str | None = None
    merged_on_code_host: bool = False
    merge_commit: str | None = None  # the merge job's result, once it ran
    merged_at: datetime | None = None
    flagged: list[TaskEvent] = field(default_factory=list)  # unapproved merges seen on the code host


def closure(status: str, events: Sequence[TaskEvent]) -> Closure | None:
    """The decision that closed the task, from its events (oldest first); None for an open task or
    one whose closing event is missing (a database restored without its log)."""
    kind = {TaskStatus.DONE.value: "approve", TaskStatus.REJECTED.value: "cancel"}.get(status)
    if kind is None:
        return None
    decision = next((e for e in reversed(events) if e.kind == kind and e.to_status == status), None)
    if decision is None:
        return None
    data = decision.data or {}
    found = Closure(
        status=status,
        actor_name=decision.actor_name,
        at=decision.created_at,
        comment=data.get("comment") if kind == "approve" else data.get("reason"),
        version=data.get("version"),
        head_sha=data.get("head_sha"),
        merged_on_code_host=bool(data.get("merged_on_code_host")),
        flagged=[e for e in events if e.kind == UNAPPROVED_MERGE],
    )
    merged = next((e for e in reversed(events) if e.kind == "merged" and e.id > decision.id), None)
    if merged is not None:
        result = merged.data or {}
        # The local git host says merge_commit_sha, GitHub's merge endpoint merge_sha.
        found.merge_commit = result.get("merge_commit_sha") or result.get("merge_sha")
        found.merged_at = merged.created_at
    return found
