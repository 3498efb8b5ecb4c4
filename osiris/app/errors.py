"""Domain errors. Each has a stable `code`; every edge turns them into its own error shape."""

from __future__ import annotations

from typing import Any


class OsirisError(Exception):
    code: str = "error"
    status: int = 400
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)


class Unauthenticated(OsirisError):
    code, status, title = "unauthenticated", 401, "Missing or invalid credentials"


class Forbidden(OsirisError):
    code, status, title = "forbidden", 403, "Your role does not allow this"


class NotYourTask(OsirisError):
    code, status, title = "not_your_task", 403, "The task is held by someone else"


class TaskNotFound(OsirisError):
    code, status, title = "task_not_found", 404, "No such task"


class NotFound(OsirisError):
    code, status, title = "not_found", 404, "Not found"


class NotClaimable(OsirisError):
    code, status, title = "not_claimable", 409, "The task is not waiting to be claimed"


class IllegalTransition(OsirisError):
    code, status, title = "illegal_transition", 409, "That move is not allowed from the task's state"


class Conflict(OsirisError):
    code, status, title = "conflict", 409, "Conflicts with existing data"


class TooLarge(OsirisError):
    code, status, title = "too_large", 413, "Payload too large"


class InvalidInput(OsirisError):
    code, status, title = "invalid_input", 422, "Invalid input"


class InvalidArtifact(InvalidInput):
    code, title = "invalid_artifact", "The artifact is not valid"


class UnknownRepository(InvalidInput):
    # Also for another organization's repository: the answer never says whether it exists.
    code, title = "unknown_repository", "No such repository in your organization"


class PatchDoesNotApply(OsirisError):
    # A later version is tried as a diff against the task branch, then against the commit the branch
    # starts from (a cumulative diff against the base); the detail says what each attempt found.
    code, status = "patch_does_not_apply", 422
    title = "The patch applies neither to the task branch nor to the base commit it starts from"

    @classmethod
    def on_neither(
        cls, branch: str, on_branch: OsirisError, start: str, on_start: OsirisError
    ) -> PatchDoesNotApply:
        """Both readings of a later version failed: as a diff against `branch`, as one against `start`."""
        return cls(
            f"not as a diff against the task branch, {branch}: {on_branch.detail}\n"
            f"nor as a diff against the base, {start}: {on_start.detail}"
        )


class RateLimited(OsirisError):
    code, status, title = "rate_limited", 429, "Too many requests"


class Unavailable(OsirisError):
    code, status, title = "unavailable", 503, "A dependency is unavailable"


class ChecksPending(OsirisError):
    code, status, title = "checks_pending", 409, "The latest version's blocking checks have not finished"


class ChecksFailed(OsirisError):
    code, status, title = "checks_failed", 409, "The latest version failed its blocking checks"


class NotPublished(OsirisError):
    code, status, title = "not_published", 409, "The latest version is not published yet"


class StaleApproval(OsirisError):
    code, status, title = "stale_approval", 409, "The approval is for something other than the latest version"
