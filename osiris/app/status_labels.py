"""What a person reads for a task's status, wherever people read it: the portal (board columns, the
task page, the audit log) and the chat replies and notifications. API values, WebSocket events and
webhooks keep the enum's (`REJECTED`); only the words people read say "Cancelled"."""

from __future__ import annotations

from osiris.app.models import TaskStatus

STATUS_LABELS = {
    TaskStatus.PENDING.value: "Pending",
    TaskStatus.IN_PROGRESS.value: "In progress",
    TaskStatus.REVIEW.value: "Review",
    TaskStatus.DONE.value: "Done",
    TaskStatus.REJECTED.value: "Cancelled",
}


def status_label(status: str | TaskStatus | None) -> str:
    value = status.value if isinstance(status, TaskStatus) else (status or "")
    return STATUS_LABELS.get(value, value.replace("_", " "))
