"""The task resource (`osiris://tasks/{id}`) and the `work_on_task` prompt."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from osiris.app.errors import OsirisError, TaskNotFound
from osiris.mcp.gateway import Gateway
from osiris.mcp.subscriptions import TASK_URI

WORK_LOOP = """You are working for OSIRIS, where humans review every change an agent makes.

1. Call read_pending_tasks to see what is waiting (highest priority first).{pick}
2. Call claim_task with the task id. It returns the description, the conversation, the repository,
   the base branch to start from and the branch your work is published to. The claim is a lease:
   any tool call on the task renews it; if you stop, the task goes back to the queue.
3. Do the work. If something is unclear, ask with post_message and wait for the answer.
4. Call submit_artifact with a unified diff against the base branch, an object of
   {{path: full content}}, or text. Write a summary for the reviewer. The task moves to REVIEW and a
   draft pull request is opened: each version is a commit on the task branch osiris/task-<id>.
5. Subscribe to the task resource osiris://tasks/<id> (or call read_feedback now and then). When a
   reviewer requests changes the task is IN_PROGRESS again: read_feedback gives the comments with file,
   line and diff hunk. Address every one and submit again. A later patch may be a diff against the
   task branch (fetch osiris/task-<id>: only what changed since your last version) or the whole change
   against the base, from the commit the task branch starts at: OSIRIS tries the task branch first,
   then the base, and a diff against the base becomes the new version as sent (what you leave out of
   it goes back to the base). A patch that applies to both is read as a diff against the task branch.
6. A human approves and merges; the task is DONE. Only humans approve: do not ask to.
If you cannot finish, say why with post_message, then call release_task.
Errors carry a code: not_claimable (someone else took it: pick another), not_your_task,
illegal_transition, patch_does_not_apply (it applies neither to osiris/task-<id> nor to the base
commit that branch starts at: diff against one of them exactly), too_large, invalid_artifact."""


def register_resources(server: MCPServer, gateway: Gateway) -> None:
    @server.resource(
        TASK_URI,
        name="task",
        title="An OSIRIS task",
        description="A task with its conversation, feedback and versions. Subscribe to hear when it "
        "changes state or feedback arrives.",
        mime_type="application/json",
    )
    async def task(task_id: str) -> str:
        if not task_id.isdigit():
            raise ResourceNotFoundError(f"task_not_found: {task_id!r} is not a task id")
        try:
            return (await gateway.get_task(int(task_id))).model_dump_json()
        except TaskNotFound as exc:
            raise ResourceNotFoundError(f"{exc.code}: {exc.detail}") from exc
        except OsirisError as exc:
            raise ResourceError(f"{exc.code}: {exc.detail}") from exc

    @server.prompt(
        name="work_on_task",
        title="Work on an OSIRIS task",
        description="Walks an agent through the loop: find, claim, work, submit, address review, done.",
    )
    def work_on_task(task_id: str | None = None) -> str:
        pick = f"\n   (You were asked to work on task {task_id}: skip to step 2 with it.)" if task_id else ""
        return WORK_LOOP.format(pick=pick)
