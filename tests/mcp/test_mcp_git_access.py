"""claim_task and get_task tell the agent where the code is and how git authenticates, and what they
say works: a real `git -c http.extraHeader=… clone` of the returned URL, with no token in any URL."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path

from tests.support.jobs import drain

from .mcp_helpers import new_task, ok, token_of

# git must never stop to ask for a password, nor use a credential store of the machine.
GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "GIT_CONFIG_NOSYSTEM": "1"}


async def _shell(command: str, cwd: Path) -> tuple[int, str]:
    """A command as the agent would paste it into a shell."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        cwd=cwd,
        env=GIT_ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode() + err.decode()


async def _run(command: str, cwd: Path) -> str:
    status, out = await _shell(command, cwd)
    assert status == 0, out
    return out


def _assert_no_secret(payload: dict, token: str) -> None:
    text = json.dumps(payload)
    assert token not in text
    git = payload["git"]
    assert "@" not in git["clone_url"]
    assert "<your token>" in git["auth_header"]


async def test_claim_and_get_task_carry_the_clone_url_branches_and_auth(
    connect, live_server, factory, rest, tmp_path
):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    token = token_of(agent)
    repo = f"ga-{secrets.token_hex(4)}"
    task_id = await new_task(rest, reviewer, repo=repo)
    async with connect(token) as client:
        claimed = ok(await client.call_tool("claim_task", {"task_id": task_id}))
        git = claimed["git"]
        assert git["code_host"] == "local"
        assert git["clone_url"] == f"{live_server.url}/git/{repo}.git"
        assert git["branch"] == claimed["branch"] == f"osiris/task-{task_id}"
        assert git["base_branch"] == claimed["base_branch"] == "main"
        assert git["auth_header"] == "Authorization: Bearer <your token>"
        assert git["clone_command"] == (
            f'git -c http.extraHeader="Authorization: Bearer <your token>" clone --branch main {git["clone_url"]}'
        )
        assert claimed["task"]["git"] == git
        assert git["clone_command"] in claimed["next_steps"]
        _assert_no_secret(claimed, token)

        ok(await client.call_tool("submit_artifact", {"task_id": task_id, "content": {"NOTES.md": "v1\n"}}))
        runtime = factory.runtime  # the worker publishes the version to the task branch
        await drain(runtime)
        fetched = ok(await client.call_tool("get_task", {"task_id": task_id}))
        assert fetched["git"] == git
        _assert_no_secret(fetched, token)

    # REST answers the same for the task, and a person reading it sees the same instructions.
    r = await rest.get(f"/api/v1/tasks/{task_id}", headers=agent)
    assert r.status_code == 200 and r.json()["git"] == git
    assert (await rest.get(f"/api/v1/tasks/{task_id}", headers=reviewer)).json()["git"] == git

    # What the agent was told to run works, with its own token in the header and nowhere else.
    await _run(git["clone_command"].replace("<your token>", token) + " work", tmp_path)
    work = tmp_path / "work"
    assert (work / "README.md").read_text().startswith(f"# {repo}")
    assert token not in (work / ".git" / "config").read_text()
    await _run(git["fetch_task_branch"].replace("<your token>", token), work)
    shown = await _run(f"git show {git['branch']}:NOTES.md", work)
    assert shown.strip() == "v1"

    # Without the header the same URL is refused.
    status, _ = await _shell(f"git clone {git['clone_url']} anon", tmp_path)
    assert status != 0


async def test_rest_claim_and_claim_next_carry_git_access(live_server, factory, rest):
    _, reviewer = await factory.member("reviewer")
    _, agent = await factory.member("agent")
    first = await new_task(rest, reviewer)
    r = await rest.post(f"/api/v1/tasks/{first}/claim", headers=agent)
    assert r.status_code == 200, r.text
    git = r.json()["git"]
    repo = r.json()["repo"]
    assert git["clone_url"] == f"{live_server.url}/git/{repo}.git"
    assert git["branch"] == f"osiris/task-{first}" and git["base_branch"] == r.json()["base_branch"]
    assert token_of(agent) not in r.text

    # a listing stays lean: the instructions come with a claim or a read of one task
    listed = (await rest.get("/api/v1/tasks", headers=reviewer)).json()["items"]
    assert all(t["git"] is None for t in listed)
