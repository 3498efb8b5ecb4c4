"""`ask_requester`: the agent asks the person who asked for the task a question, in their own chat.

The question is a message from the agent (`kind: question`), which the existing path delivers after
commit: the `deliver_message` job hands it to the channel notifier, which sends it into the task's
thread (WhatsApp, Slack, email, Telegram, the GitHub issue) as "Task #N: the agent asks: …". The
requester's answer in that thread is a follow-up (ingest's intake), a message to the agent, which
`read_feedback` returns like any other. A task filed over REST has no chat to ask in: refused.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from osiris.app import lifecycle, task_queries
from osiris.app.actors import Actor
from osiris.app.errors import Forbidden, InvalidInput, NotYourTask
from osiris.app.runtime import Runtime
from osiris.app.schemas import MessageRead


class AskedRequester(BaseModel):
    message: MessageRead
    channel: str = Field(description="where the question goes: whatsapp, slack, email, telegram or github")


def requester_channel(channel: str) -> str:
    if channel == "api":
        raise InvalidInput(
            "this task was filed through the API or the portal: there is no requester chat to ask in; "
            "use post_message to ask the supervisors"
        )
    return channel


async def ask_requester(
    session: AsyncSession, runtime: Runtime, actor: Actor, task_id: int, *, question: str
) -> AskedRequester:
    if not actor.is_agent:
        raise Forbidden("only the agent holding the task asks its requester")
    task = await task_queries.get_task(session, actor, task_id, for_update=True)
    if task.assignee_id != actor.user_id:
        raise NotYourTask("an agent may only ask about a task it holds")
    channel = requester_channel(task.channel)
    message = await lifecycle.add_message(session, task, actor, body=question, source="mcp", kind="question")
    assert message is not None  # noqa: S101 - no provider id, so never deduplicated
    if task.status == "IN_PROGRESS":
        await lifecycle.heartbeat(session, actor, task.id, lease_seconds=runtime.settings.tasks.lease_seconds)
    return AskedRequester(message=MessageRead.model_validate(message), channel=channel)
