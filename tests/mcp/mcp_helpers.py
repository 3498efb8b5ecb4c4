"""Small helpers shared by the MCP tests (a unique module name: tests/mcp has no __init__.py, since a
package called `mcp` here would shadow the SDK)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
from mcp_types import CallToolResult

TOOLS = {
    "read_pending_tasks",
    "claim_task",
    "submit_artifact",
    "read_feedback",
    "get_task",
    "get_artifact",
    "list_my_tasks",
    "post_message",
    "ask_requester",
    "release_task",
}


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful tool call."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_code(result: CallToolResult) -> str:
    """The stable code of a failed tool call; the text and the structured content must agree."""
    assert result.is_error, result.structured_content
    code = result.structured_content["error"]["code"]
    assert result.content[0].text.startswith(f"{code}: "), result.content
    return code


async def new_task(rest: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> int:
    body = {"title": "Add a README", "description": "Explain how to run the thing.", **fields}
    r = await rest.post("/api/v1/tasks", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def osiris_command() -> list[str]:
    installed = Path(sys.executable).with_name("osiris")
    if installed.exists():
        return [str(installed), "mcp"]
    found = shutil.which("osiris")
    return [found, "mcp"] if found else [sys.executable, "-m", "osiris.cli", "mcp"]
