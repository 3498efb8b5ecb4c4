"""Every shell block of README.md and docs/*.md, run word for word against a fresh `make run`
(tests/support/walkthrough.py extracts them), or marked in the markdown as not runnable here, with the
reason next to it. A new block is run as soon as it is written: the docs cannot drift.

A run is one fresh `make run` in a folder laid out like a checkout (the embedded default in its
`.osiris`), in a network namespace of its own so that it serves the docs' localhost:8000, and one
bash that runs the blocks in document order, as a reader pastes them into one shell. A block with a
`make run` line is that reader's first shell: it starts the server (in the background), and its other
lines (the `export`s) open the second shell. What the docs show as output (`# → …`) is checked, and
what the blocks leave behind (the task merged, the branch fetched, the messages turned into tasks)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import walkthrough
from tests.support.walkthrough import ROOT, Block, Run

README = ROOT / "README.md"
TRY_IT = "Try it without any channel"

# Reads the outcome after a run with the admin's token (the README's own commands), into files.
ADMIN = """P=$(cat .osiris/admin-password)
T=$(curl -s -d username=admin -d "password=$P" localhost:8000/api/v1/auth/token | jq -r .access_token)
get() { curl -s -H "Authorization: Bearer $T" "localhost:8000/api/v1/$1" >"$2"; }
"""


@dataclass
class Walk:
    """One fresh server: the runnable blocks of `docs`, in order, after `prelude` blocks (from
    another page: what the doc says the reader did first) and `settle` (a wait of the test's own)."""

    name: str
    docs: tuple[str, ...]
    prelude: Callable[[], list[Block]] = list
    settle: str = ""
    after: str = ""
    check: Callable[[Run], None] = lambda run: None

    def collect(self) -> list[Block]:
        return [b for doc in self.docs for b in walkthrough.runnable(ROOT / doc)]


def check_readme(run: Run) -> None:
    task = json.loads((run.work / "task.json").read_text())
    assert task["status"] == "DONE", task
    assert [a["version"] for a in task["artifacts"]] == [1, 2]
    assert json.loads((run.work / "cr.json").read_text())["state"] == "merged"
    main = subprocess.run(
        ["git", "--git-dir", str(run.work / ".osiris/repos/default.git"), "show", "main:README.md"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert main.stdout == "# Hello\n\nRun `make test`.\n"
    # First run: the generated password is kept privately and announced as one pasteable line; no
    # command printed a warning about the runtime dir.
    stored = run.work / ".osiris" / "admin-password"
    assert stored.stat().st_mode & 0o777 == 0o600
    serve_err = (run.work / "serve.err").read_text()
    assert f"export OSIRIS_ADMIN_PASSWORD={stored.read_text().strip()}\n" in serve_err
    assert "XDG_RUNTIME_DIR" not in run.log + serve_err
    # Organizations: Beta, its admin, its WhatsApp number with Beta's own settings.
    accounts = json.loads((run.work / "accounts.json").read_text())
    orgs = {o["slug"]: o["id"] for o in json.loads((run.work / "orgs.json").read_text())}
    beta = [a for a in accounts if a["org_id"] == orgs["beta"]]
    assert [(a["channel"], a["account"]) for a in beta] == [("whatsapp", "+15550109999")], accounts
    assert beta[0]["settings"]["repo"] == "beta-app", beta


def check_local_git_host(run: Run) -> None:
    clone = run.work / "default"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(clone), *args], capture_output=True, text=True, check=True
        ).stdout

    assert git("branch", "--show-current") == "main\n"
    assert git("show", "osiris/task-1:README.md") == "# Hello\n"
    assert "Bearer" not in (clone / ".git" / "config").read_text()  # the token stayed in a header


def check_channels(run: Run) -> None:
    (send,) = (out for i, out in run.outputs.items() if "send_channel_message" in run.blocks[i].text)
    assert send.count("HTTP 200") == 5, send
    assert "<Response><Message>Task #1 created: The export button crashes</Message></Response>" in send
    assert "Task #5 created: CSV export is slow" in send
    tasks = json.loads((run.work / "tasks.json").read_text())
    items = tasks["items"] if isinstance(tasks, dict) else tasks
    by_channel = {t["channel"]: t for t in items}
    assert sorted(t["channel"] for t in items) == ["email", "slack", "slack", "telegram", "whatsapp"], items
    assert by_channel["whatsapp"]["title"] == "The export button crashes"
    assert (by_channel["telegram"]["priority"], by_channel["whatsapp"]["priority"]) == ("urgent", "normal")
    assert by_channel["email"]["title"] == "CSV export is slow"
    assert all(t["status"] == "PENDING" for t in items)


WALKS = [
    # The README top to bottom, then the MCP page it sends an agent's owner to.
    Walk(
        "readme",
        ("README.md", "docs/mcp.md"),
        after=ADMIN
        + "get tasks/1 task.json; get tasks/1/change-request cr.json\n"
        + "get channel-accounts accounts.json; get organizations orgs.json\n",
        check=check_readme,
    ),
    # Fetching over HTTP, after the README's first "Try it" block (task 1 has a version), once the
    # version is published (the branch exists).
    Walk(
        "local git host",
        ("docs/code_host_local.md",),
        prelude=lambda: walkthrough.section(README, TRY_IT)[:1],
        settle=ADMIN
        + 'until curl -s -H "Authorization: Bearer $T" localhost:8000/api/v1/tasks/1/artifacts/1'
        + " | jq -e .commit_sha >/dev/null; do sleep 0.2; done\n",
        check=check_local_git_host,
    ),
    Walk(
        "channels",
        ("docs/channels.md",),
        after=ADMIN + 'get "tasks?limit=50" tasks.json\n',
        check=check_channels,
    ),
]


def _all_walks() -> list[Walk]:
    """The walks above, and one of its own for any other page that has a runnable block."""
    covered = {doc for w in WALKS for doc in w.docs}
    extra = [
        Walk(str(path.relative_to(ROOT)), (str(path.relative_to(ROOT)),))
        for path in walkthrough.documents()
        if str(path.relative_to(ROOT)) not in covered and walkthrough.runnable(path)
    ]
    return WALKS + extra


def test_every_block_is_labelled_and_every_marker_names_its_reason():
    problems = []
    for path in walkthrough.documents():
        for block in walkthrough.blocks(path):
            if not block.lang:
                problems.append(
                    f"{block.where}: a fence without a language (`text` for a diagram, `sh` for commands)"
                )
            if block.stray_marker:
                problems.append(
                    f"{block.where}: write `<!-- walkthrough: skip — why -->` just above the block"
                )
            if block.skip is not None and not block.is_shell:
                problems.append(f"{block.where}: only shell blocks are run, so only they are marked")
    assert not problems, "\n".join(problems)


def test_every_shell_block_is_run_or_marked_with_a_reason():
    skipped = [b for path in walkthrough.documents() for b in walkthrough.shell_blocks(path) if b.skip]
    assert all(len(b.skip.split()) >= 3 for b in skipped), [(b.where, b.skip) for b in skipped]
    run = {b.where for w in _all_walks() for b in w.collect()}
    every = {b.where for path in walkthrough.documents() for b in walkthrough.shell_blocks(path)}
    assert every == run | {b.where for b in skipped}


@pytest.mark.parametrize("walk", _all_walks(), ids=lambda w: w.name)
def test_the_walkthrough_runs_word_for_word(walk: Walk):
    for tool in ("bash", "curl", "jq", "git", "make"):
        assert shutil.which(tool), f"the walkthroughs need {tool} (.ci/run installs it)"
    blocks = walk.prelude() + walk.collect()
    starts = [b for b in blocks if b.starts_the_server]
    assert len(starts) <= 1, [b.where for b in starts]
    server = starts[0].text if starts else "make run\n"
    # the reader's second shell: the first one's settings, without `make run`
    second = "".join(line + "\n" for line in server.splitlines() if not line.strip().startswith("make run"))
    # Outside pytest's tmp folder: as root, pgserver opens the data dir's parents to its `pgserver`
    # user, and any pytest session starting meanwhile closes /tmp/pytest-of-<user> again. Left in
    # place when the test fails, for its logs.
    scratch = Path(tempfile.mkdtemp(prefix="osiris-walkthrough-"))
    work = walkthrough.checkout(scratch / "checkout")
    steps: list[Block | str] = [second, *walk.prelude()]
    if walk.settle:
        steps.append(f"(\n{walk.settle})\n")
    steps += [b for b in walk.collect() if not b.starts_the_server]
    result = walkthrough.run(work, steps, server=server, after=walk.after)
    assert result.returncode == 0, (f"stopped in {result.failed_block()}, in {work}", result.logs())
    for index, block in enumerate(result.blocks):
        for expected in block.expectations():
            assert walkthrough.shown_in(expected, result.outputs.get(index, "")), (
                f"{block.where} shows {expected!r}",
                result.outputs.get(index),
            )
    walk.check(result)
    shutil.rmtree(scratch, ignore_errors=True)
