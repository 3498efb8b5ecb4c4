"""get_artifact: a version read back over MCP, files content as an object, only in one's own
organization; over streamable HTTP and over stdio alike."""

from __future__ import annotations

from .mcp_helpers import error_code, new_task, ok, token_of

FILES = {
    "src/app.py": "print('hi')\n",
    "dir with space/naïve 日本.txt": "héllo\n",
    "web/<b>.html": "<b>x</b>\n",
}


async def test_get_artifact_returns_files_as_an_object(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    task_id = await new_task(rest, reviewer)

    async with connect(token_of(agent)) as client:
        ok(await client.call_tool("claim_task", {"task_id": task_id}))
        ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": FILES}))
        got = ok(await client.call_tool("get_artifact", {"task_id": task_id, "version": 1}))
        assert got["kind"] == "files" and got["version"] == 1
        assert got["content"] == FILES  # an object, not a string holding JSON

        listed = ok(await client.call_tool("get_task", {"task_id": task_id}))["artifacts"]
        assert [a["version"] for a in listed] == [1] and "content" not in listed[0]

        assert error_code(await client.call_tool("get_artifact", {"task_id": task_id, "version": 2})) == (
            "not_found"
        )

    r = await rest.get(f"/api/v1/tasks/{task_id}/artifacts/1", headers=reviewer)
    assert r.json()["content"] == FILES

    other = await factory.org("elsewhere")
    _, outsider = await factory.member("agent", org=other)
    async with connect(token_of(outsider)) as client:
        result = await client.call_tool("get_artifact", {"task_id": task_id, "version": 1})
        assert error_code(result) == "task_not_found"
        assert "print" not in str(result.content)
