"""README's "Try it without any channel", run word for word (bash, `.venv/bin/osiris`, curl, jq) against
a fresh `osiris serve` on the embedded default: the task must end DONE, merged into main."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_PORT = 8000  # the walkthrough says localhost:8000


def walkthrough_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it without any channel", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def _private_network() -> bool:
    """A network namespace of our own has its own port 8000, whatever else runs on this machine."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True)
    return probe.returncode == 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# The server runs in the background in the same shell, from a folder laid out like a checkout
# (.venv and scripts), so `.osiris` there is its data dir and the CLI's default.
DRIVER = """
set -euo pipefail
ip link set lo up 2>/dev/null || true
.venv/bin/osiris serve >serve.log 2>serve.err &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 180); do curl -sf localhost:8000/readyz >/dev/null && break; sleep 0.5; done
bash -euo pipefail walkthrough.sh >walkthrough.out 2>walkthrough.err
curl -s -H "Authorization: Bearer $(bash -c 'source ./human.sh')" localhost:8000/api/v1/tasks/1 >task.json
curl -s -H "Authorization: Bearer $(bash -c 'source ./human.sh')" localhost:8000/api/v1/tasks/1/change-request >cr.json
"""

# After the walkthrough, a reviewer's token to read the outcome with (the README's own command).
HUMAN = """OSIRIS_ADMIN_PASSWORD=$(cat .osiris/admin-password)
curl -s -d username=admin -d password=$OSIRIS_ADMIN_PASSWORD localhost:8000/api/v1/auth/token | jq -r .access_token
"""


def test_the_readme_walkthrough_ends_done_and_merged(tmp_path):
    for tool in ("bash", "curl", "jq", "git"):
        assert shutil.which(tool), f"the walkthrough needs {tool} (.ci/run installs it)"
    blocks = walkthrough_blocks()
    assert len(blocks) == 2 and "jq" in blocks[1]
    script = "\n".join(blocks)
    work = tmp_path / "checkout"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "scripts").symlink_to(ROOT / "scripts")
    (work / "walkthrough.sh").write_text(script)
    (work / "human.sh").write_text(HUMAN)
    driver = DRIVER
    if _private_network():
        argv = ["unshare", "--net", "bash", "-c", driver]
    elif _port_free(README_PORT):
        argv = ["bash", "-c", driver]
    else:
        pytest.skip("no network namespace, and port 8000 is taken: the walkthrough names it")
    # A fresh machine's shell: nothing of ours configured, the embedded default in ./.osiris.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_") and k != "DATABASE_URL"}
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=420)
    logs = {
        name: (work / name).read_text()[-3000:]
        for name in ("serve.err", "walkthrough.out", "walkthrough.err")
    }
    assert done.returncode == 0, (done.stdout, done.stderr, logs)

    task = json.loads((work / "task.json").read_text())
    assert task["status"] == "DONE", (task, logs)
    assert [a["version"] for a in task["artifacts"]] == [1, 2]
    assert json.loads((work / "cr.json").read_text())["state"] == "merged"
    main = subprocess.run(
        ["git", "--git-dir", str(work / ".osiris" / "repos" / "default.git"), "show", "main:README.md"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert main.stdout == "# Hello\n\nRun `make test`.\n"

    # First run: the generated password was kept privately and announced as one pasteable line;
    # no command of the walkthrough printed a warning about the runtime dir.
    stored = work / ".osiris" / "admin-password"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert f"export OSIRIS_ADMIN_PASSWORD={stored.read_text().strip()}\n" in (work / "serve.err").read_text()
    assert "XDG_RUNTIME_DIR" not in logs["walkthrough.err"] + logs["serve.err"]


def channel_blocks() -> tuple[str, str]:
    """docs/channels.md "Try each channel locally": the first shell's block (secrets, `make run`) and
    the second shell's (one message per channel)."""
    text = (ROOT / "docs" / "channels.md").read_text()
    section = text.split("## Try each channel locally", 1)[1].split("\n## ", 1)[0]
    start, send = (textwrap.dedent(b) for b in re.findall(r"   ```sh\n(.*?)   ```", section, flags=re.DOTALL))
    return start, send


# The first shell runs the doc's first block (the server, through `make run`) in the background; the
# second runs its `export` line, as "another shell with the same variables", then the second block.
CHANNELS_DRIVER = """
set -uo pipefail
ip link set lo up 2>/dev/null || true
bash -euo pipefail start.sh >serve.log 2>serve.err &
server=$!
trap 'pkill -TERM -P $server 2>/dev/null; kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 180); do curl -sf localhost:8000/readyz >/dev/null && break; sleep 0.5; done
bash -c "$(grep -v '^make run' start.sh); bash -euo pipefail send.sh" >send.out 2>send.err
echo "send exit $?" >>send.out
P=$(cat .osiris/admin-password)
T=$(curl -s -d username=admin -d "password=$P" localhost:8000/api/v1/auth/token | jq -r .access_token)
curl -s -H "Authorization: Bearer $T" "localhost:8000/api/v1/tasks?limit=50" >tasks.json
"""


def test_each_channel_tried_locally_as_the_docs_say(tmp_path):
    for tool in ("bash", "curl", "jq", "make"):
        assert shutil.which(tool), f"the recipe needs {tool} (.ci/run installs it)"
    start, send = channel_blocks()
    assert "make run" in start and send.count("$S --channel") == 5
    work = tmp_path / "checkout"
    work.mkdir()
    # Laid out like a checkout whose `make install` already ran: `make run` only serves.
    for name in (".venv", "scripts", "Makefile", "pyproject.toml", "constraints.txt"):
        (work / name).symlink_to(ROOT / name)
    (work / "start.sh").write_text(start)
    (work / "send.sh").write_text(send)
    if _private_network():
        argv = ["unshare", "--net", "bash", "-c", CHANNELS_DRIVER]
    elif _port_free(README_PORT):
        argv = ["bash", "-c", CHANNELS_DRIVER]
    else:
        pytest.skip("no network namespace, and port 8000 is taken: the recipe names it")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_") and k != "DATABASE_URL"}
    env.pop("XDG_RUNTIME_DIR", None)
    env["MAKEFLAGS"] = ""
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=420)
    out = (work / "send.out").read_text()
    logs = {name: (work / name).read_text()[-3000:] for name in ("serve.err", "send.err")}
    assert done.returncode == 0, (done.stdout, done.stderr, logs)
    assert "send exit 0" in out, (out, logs)
    assert out.count("HTTP 200") == 5, out
    assert "<Response><Message>Task #1 created: The export button crashes</Message></Response>" in out
    assert '"reply": "Task #5 created: CSV export is slow"' in out.replace('":"', '": "').replace(
        '","', '", "'
    )

    tasks = json.loads((work / "tasks.json").read_text())
    items = tasks["items"] if isinstance(tasks, dict) else tasks
    by_channel = {t["channel"]: t for t in items}
    assert sorted(t["channel"] for t in items) == ["email", "slack", "slack", "telegram", "whatsapp"], items
    assert by_channel["whatsapp"]["title"] == "The export button crashes"
    assert (by_channel["telegram"]["priority"], by_channel["whatsapp"]["priority"]) == ("urgent", "normal")
    assert by_channel["email"]["title"] == "CSV export is slow"
    assert all(t["status"] == "PENDING" for t in items)
