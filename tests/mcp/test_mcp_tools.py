"""The tool surface: names, input and output schemas, annotations; identical over HTTP and stdio."""

from __future__ import annotations

from .mcp_helpers import TOOLS, new_task, token_of


def _surface(tools) -> dict:
    return {
        t.name: {
            "input": t.input_schema,
            "output": t.output_schema,
            "annotations": t.annotations.model_dump() if t.annotations else None,
            "description": t.description,
        }
        for t in tools
    }


async def test_every_tool_has_schemas_and_annotations(http_mcp, factory):
    _, agent = await factory.member("agent")
    async with http_mcp(token_of(agent)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS  # no approve/reject: only humans decide, and not over MCP
    for tool in tools.values():
        assert tool.description and tool.title
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is not None
        assert tool.annotations.open_world_hint is not None

    claim = tools["claim_task"]
    assert claim.input_schema["required"] == ["task_id"]
    assert claim.input_schema["properties"]["task_id"]["type"] == "integer"
    assert {"task", "branch", "base_branch", "repo", "feedback", "messages", "lease_expires_at"} <= set(
        claim.output_schema["properties"]
    )
    submit = tools["submit_artifact"]
    assert submit.input_schema["required"] == ["task_id", "content"]
    assert submit.input_schema["properties"]["kind"]["default"] == "auto"
    assert set(submit.input_schema["properties"]["kind"]["enum"]) == {"auto", "patch", "files", "text"}
    assert {"idempotency_key", "summary"} <= set(submit.input_schema["properties"])
    assert {"version", "branch", "pr_url", "publish_state", "publish_job_id"} <= set(
        submit.output_schema["properties"]
    )
    pending = tools["read_pending_tasks"]
    assert pending.input_schema.get("required", []) == []
    assert {"limit", "repo", "priority"} == set(pending.input_schema["properties"])
    assert set(tools["read_feedback"].input_schema["properties"]) == {"task_id", "since"}

    assert tools["read_pending_tasks"].annotations.read_only_hint is True
    assert tools["get_task"].annotations.idempotent_hint is True
    assert tools["claim_task"].annotations.read_only_hint is False
    assert tools["release_task"].annotations.destructive_hint is True
    assert tools["submit_artifact"].annotations.destructive_hint is False


async def test_stdio_exposes_the_same_tools_with_the_same_schemas(http_mcp, stdio_mcp, factory):
    _, agent = await factory.member("agent")
    async with http_mcp(token_of(agent)) as client:
        over_http = _surface((await client.list_tools()).tools)
    async with stdio_mcp(token_of(agent)) as client:
        over_stdio = _surface((await client.list_tools()).tools)
    assert over_stdio == over_http


async def test_resource_template_and_prompt(connect, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")

    task_id = await new_task(rest, reviewer)
    async with connect(token_of(agent)) as client:
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["osiris://tasks/{task_id}"]
        read = await client.read_resource(f"osiris://tasks/{task_id}")
        assert f'"id":{task_id}' in read.contents[0].text
        assert read.contents[0].mime_type == "application/json"

        prompts = (await client.list_prompts()).prompts
        assert [p.name for p in prompts] == ["work_on_task"]
        prompt = await client.get_prompt("work_on_task", {"task_id": str(task_id)})
        text = prompt.messages[0].content.text
        for step in (
            "read_pending_tasks",
            "claim_task",
            "submit_artifact",
            "read_feedback",
            f"task {task_id}",
        ):
            assert step in text
