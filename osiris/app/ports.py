"""The ports: every protocol the core calls out through, and the errors that cross them.

The core (the job handlers in `app.effects` and `app.check_runs`, the submit path, git access)
calls these; the adapters implement them: the local git host (`github_bridge.local_git.LocalGitHost`)
and GitHub (`github_bridge.github_host.GitHubHost`) for the code host, `ingest.notify.ChannelNotifier`
for the notifier. Adapters import this module; nothing here imports an adapter. The ports a process
has are registered in `JobContext.services` (`code_host`, `notifier`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from osiris.app.artifacts import ValidArtifact
from osiris.app.errors import OsirisError
from osiris.app.models import Artifact, Message, Task

# The keys of a publish result that are stored on the Artifact row (others only go to the event).
PUBLISHED_FIELDS = ("branch", "commit_sha", "pr_number", "pr_url")


BRANCH_PREFIX = "osiris/task-"
_BRANCH = re.compile(rf"^{re.escape(BRANCH_PREFIX)}(\d+)$")


def branch_name(task_id: int) -> str:
    """Deterministic, so a retried publish finds what an earlier attempt made."""
    return f"{BRANCH_PREFIX}{task_id}"


def task_id_of_branch(branch: str | None) -> int | None:
    """The task a branch was named for by `branch_name`, or None for any other branch."""
    match = _BRANCH.match(branch or "")
    return int(match.group(1)) if match else None


class MergeConflict(OsirisError):
    """The approved head cannot be merged into its base; `files` names the conflicting paths."""

    code, status, title = "merge_conflict", 409, "The change cannot be merged into its base branch"

    def __init__(self, detail: str, *, files: Iterable[str] = ()) -> None:
        self.files = list(files)
        super().__init__(detail, files=self.files)


class CheckoutFailed(Exception):
    """A copy of a commit for the pre-review checks could not be made (a git command failed, a fetch
    timed out). The adapters raise it (their git errors are this kind); `check_runs.py` turns it into an
    `error` result."""


class CodeHost(Protocol):
    """Publishing, merging and closing one task's change request. Every method is idempotent."""

    async def check(self, task: Task, artifact: ValidArtifact) -> None:
        """Refuse, before anything is stored, what could never be published.

        Raises `osiris.app.errors.PatchDoesNotApply` carrying git's own message.
        """

    async def publish(self, task: Task, artifact: Artifact) -> dict[str, Any]:
        """Make the artifact version a commit on `branch_name(task.id)` and open or update the
        change request. Returns at least the PUBLISHED_FIELDS; publishing the same version again
        returns the same commit (with `created: False`)."""

    async def merge(self, task: Task, *, head_sha: str | None = None) -> dict[str, Any]:
        """Merge the change request into the task's base branch, pinned to `head_sha` (the commit
        that was approved). Raises MergeConflict, leaving nothing half-done, when it cannot."""

    async def close(self, task: Task) -> dict[str, Any]:
        """Close the change request unmerged (the branch is kept)."""

    async def comment(self, task: Task, message: Message) -> dict[str, Any]:
        """Mirror a message written in OSIRIS onto the change request."""

    async def changes(self, task: Task, *, head_sha: str, paths: list[str] | None = None) -> dict[str, Any]:
        """What merging `head_sha` (a version's published commit) into the base branch brings in:
        the diff from their merge base (for a merged change, what the merge brought in). Returns
        state, base_sha, merge_base_sha, mergeable (None when unknown), mergeable_state, conflicts,
        head_moved, truncated, and files as `osiris.app.changes.FileChange` fields (exact paths, counts, hunks;
        `too_large` when the host sent no lines). `paths` may narrow it to those files. Raises
        osiris.app.errors.NotFound when there is no change request yet."""


@runtime_checkable
class CloneSource(Protocol):
    """A host agents fetch a task's code from (`GitAccess` on claim and GET of a task)."""

    name: str  # "local" or "github"

    async def clone_url(self, task: Task) -> str:
        """The repository's HTTPS clone URL, without credentials."""


@runtime_checkable
class ChangeRequestSource(Protocol):
    """A host whose change requests OSIRIS itself shows (`GET /api/v1/tasks/{id}/change-request`)."""

    async def change_request(self, task: Task) -> dict[str, Any]:
        """number, url, state (draft|open|merged|closed), base, head, base_sha, head_sha, diff,
        files, mergeable, conflicts. Raises osiris.app.errors.NotFound when there is none yet."""


@runtime_checkable
class CheckoutSource(Protocol):
    """A host that can give the pre-review checks a copy of a published commit (blocking calls;
    run them in a thread)."""

    def base_file(self, task: Task, path: str) -> str | None:
        """A file's text on the task's base branch, or None."""

    def worktree(self, task: Task, sha: str) -> AbstractContextManager[Path]:
        """`<fresh temp dir>/src`: a copy of `sha` sharing nothing with the repository (no linked
        work tree, alternates or hard links; `copies.check_copy`), removed when the context ends."""


@runtime_checkable
class RemoteCheckoutSource(Protocol):
    """A host whose code lives elsewhere (GitHub): the checks' configuration is read through its API
    and a version is fetched into a local cache clone before a work tree of it can be made."""

    async def checks_file(self, task: Task, path: str) -> str | None:
        """A file's text on the task's base branch, or None."""

    async def checkout(self, task: Task, sha: str) -> AbstractContextManager[Path]:
        """A context (blocking enter and exit: run them in a thread) that fetches `sha` and gives a
        throw-away copy of it, as `CheckoutSource.worktree`, removed when the context ends."""


@runtime_checkable
class CheckReporter(Protocol):
    """A host that shows the pre-review checks' progress and outcome on the change request."""

    async def report_checks(
        self, task: Task, run: Any, *, commands: list[str], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Report `run` (a CheckRun: running, or finished); `previous` is what the last report of
        this run returned. Returns what to remember of this report (ids, state)."""


class Notifier(Protocol):
    """Tells a requester about their task in the channel they asked from."""

    async def notify(self, task: Task, kind: str, text: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ReviewPrompt:
    """A review reminder as the channels show it: the words, and what approving from chat pins to."""

    task_id: int
    version: int
    head_sha: str
    text: str
    url: str  # the task's page in the portal (approve there)
    reply_code: str = ""  # shown in email only: an answer by email must carry it (review_replies)


class ReviewerNotifier(Protocol):
    """Sends a review reminder to one reviewer's verified address on one chat channel (Slack with
    Approve / Request changes controls); `key` makes a retried job send it once."""

    async def remind(self, channel: str, address: str, prompt: ReviewPrompt, key: str) -> dict[str, Any]: ...


@runtime_checkable
class ReviewRequester(Protocol):
    """A code host that can ask people to review the change request (GitHub's requested reviewers)."""

    async def request_review(self, task: Task, logins: list[str]) -> dict[str, Any]:
        """Ask these logins to review the task's change request (again: GitHub notifies them anew)."""
