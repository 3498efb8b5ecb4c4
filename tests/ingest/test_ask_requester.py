"""`ask_requester` with the official MCP client (streamable HTTP to a live OSIRIS): the question goes into
the requester's own chat thread (the Telegram fake), their reply in that thread comes back to the agent
through `read_feedback`; an API task has no requester chat."""

from __future__ import annotations

import re

import pytest

from osiris.app.models import Role
from osiris.app.ratelimit import RateLimiter
from tests.support.servers import LiveServer, mcp_over_http

from .ingest_helpers import ANN, ours, update
from .review_helpers import fresh_task_ids


@pytest.fixture(autouse=True)
async def _fresh(runtime, monkeypatch):
    monkeypatch.setattr(runtime.services, "channel_limiter", RateLimiter(1000))
    await fresh_task_ids(runtime)


@pytest.fixture
def live(settings):
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


def _ok(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


async def test_the_agent_asks_the_requester_and_reads_the_answer(
    client, factory, runtime, drain, channels, fake_telegram, live
):
    _, agent = await factory.member(Role.AGENT)
    token = agent["Authorization"].removeprefix("Bearer ")
    assert (await channels.telegram(update("the login page is slow on Safari"))).status_code == 200
    await drain()
    task_id = int(re.search(r"#(\d+)", fake_telegram.sent[-1]["text"]).group(1))
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
    await drain()
    fake_telegram.calls.clear()

    async with mcp_over_http(live.url, token) as mcp:
        asked = _ok(
            await mcp.call_tool("ask_requester", {"task_id": task_id, "question": "Which Safari version?"})
        )
        assert asked["channel"] == "telegram"
        await drain()
        [question] = fake_telegram.sent
        assert question["text"] == f"Task #{task_id}: the agent asks:\nWhich Safari version?"
        assert int(question["chat_id"]) == ANN["id"]
        # the requester answers in the thread: a reply to the question
        chat = {"id": ANN["id"], "type": "private", "first_name": "Ann"}
        our_message = fake_telegram._next_id  # the id the fake gave the question it delivered
        assert (
            await channels.telegram(update("Safari 17.2", reply_to=ours(our_message, chat)))
        ).status_code == 200
        feedback = _ok(await mcp.call_tool("read_feedback", {"task_id": task_id}))
        bodies = [item["body"] for item in feedback["items"]]
        assert "Safari 17.2" in bodies


async def test_an_api_task_has_no_requester_chat(client, factory, live):
    _, agent = await factory.member(Role.AGENT)
    r = await client.post("/api/v1/tasks", json={"title": "from the API"}, headers=agent)
    task_id = r.json()["id"]
    assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
    async with mcp_over_http(live.url, agent["Authorization"].removeprefix("Bearer ")) as mcp:
        result = await mcp.call_tool("ask_requester", {"task_id": task_id, "question": "Why?"})
        assert result.is_error and result.structured_content["error"]["code"] == "invalid_input"
