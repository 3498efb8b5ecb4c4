"""What an agent needs to fetch a task's code: the clone URL, the branches, and how git authenticates.

Only placeholders ever appear here: the agent fills in its own token. The header goes through
`git -c http.extraHeader=…`, never into the URL, where it would land in `.git/config`, shell
history and proxy logs.
"""

from __future__ import annotations

from typing import Any

from osiris.app.errors import OsirisError
from osiris.app.models import Task
from osiris.app.ports import CloneSource, branch_name
from osiris.app.schemas import GitAccess

OSIRIS_TOKEN = "<your token>"
GITHUB_TOKEN = "<base64 of x-access-token:YOUR_GITHUB_TOKEN>"


def _command(header: str, *args: str) -> str:
    return f'git -c http.extraHeader="{header}" ' + " ".join(args)


async def git_access(code_host: Any, task: Task) -> GitAccess | None:
    """None when the code host serves no clones (none configured, or a repository GitHub does not map)."""
    if not isinstance(code_host, CloneSource):
        return None
    try:
        url = await code_host.clone_url(task)
    except OsirisError:
        return None
    branch = branch_name(task.id)
    if code_host.name == "github":
        header = f"Authorization: Basic {GITHUB_TOKEN}"
        note = (
            "GitHub does not accept OSIRIS tokens: use a GitHub token of your own with read access "
            "(a public repository needs none). Never put a token in the URL. Hand work in with "
            "submit_artifact; OSIRIS pushes the task branch and opens the pull request."
        )
        host = "github"
    else:
        header = f"Authorization: Bearer {OSIRIS_TOKEN}"
        note = (
            "Authenticate with the same token you use for OSIRIS, as an HTTP header, never in the URL. "
            "The repository is read-only: hand work in with submit_artifact, which commits it to the "
            "task branch."
        )
        host = "local"
    return GitAccess(
        code_host=host,
        clone_url=url,
        base_branch=task.base_branch,
        branch=branch,
        auth_header=header,
        clone_command=_command(header, "clone", "--branch", task.base_branch, url),
        fetch_task_branch=_command(header, "fetch", "origin", f"{branch}:{branch}"),
        note=note,
    )
