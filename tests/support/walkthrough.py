"""The shell blocks of README.md and docs/*.md, for tests/docs/test_walkthroughs.py to run word for word.

Every fenced block carries a language (diagrams say `text`), so no shell block hides unlabelled. A
shell block (`sh`, `bash`, `shell`, `console`) is either run, or marked just above it, where a reader
sees the reason in the source:

    <!-- walkthrough: skip — needs a real GitHub App -->

Expected output is checked where the doc shows it: in `sh`/`bash` a comment `# → …` after a command,
in `console` every line that is not a `$ ` command; `…` stands for anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELLS = frozenset({"sh", "bash", "shell", "console"})
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>```+)(?P<info>[^`\n]*)$")
MARKER = re.compile(r"^\s*<!--\s*walkthrough:\s*skip\s*[—–-]+\s*(?P<reason>\S.*?)\s*-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*walkthrough\b")
HEADING = re.compile(r"^#{1,6} ")
EXPECT = re.compile(r"(?:^|\s)#\s*→\s*(?P<expected>.+?)\s*$", flags=re.MULTILINE)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str  # dedented to the fence's indentation
    heading: str  # the closest heading above
    skip: str | None  # the marker's reason
    stray_marker: bool = False  # a `walkthrough` comment above that does not parse

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELLS

    @property
    def starts_the_server(self) -> bool:
        """A block with a `make run` line is the first shell: the server runs it, in the background."""
        return any(line.strip().startswith("make run") for line in self.text.splitlines())

    def script(self) -> str:
        """What to run: the block itself, or a console block's `$ ` commands."""
        return self.text if self.lang != "console" else "\n".join(_console(self.text)[0]) + "\n"

    def expectations(self) -> list[str]:
        if self.lang == "console":
            return _console(self.text)[1]
        return [m["expected"] for m in EXPECT.finditer(self.text)]


def _console(text: str) -> tuple[list[str], list[str]]:
    """A console block's commands (`$ ` lines and their `\\` continuations) and the output it shows."""
    commands: list[str] = []
    shown: list[str] = []
    continued = False
    for line in text.splitlines():
        if continued or line.startswith("$ "):
            commands.append(line if continued else line[2:])
            continued = line.endswith("\\")
        elif line.strip():
            shown.append(line.strip())
    return commands, shown


def blocks(path: Path) -> list[Block]:
    """Every fenced block of one markdown file, in document order."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if HEADING.match(line):
            heading = line.lstrip("#").strip()
        fence = FENCE.match(line)
        if not fence:
            i += 1
            continue
        ticks = fence["ticks"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != ticks:
            end += 1
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(before)
        found.append(
            Block(
                path=path,
                line=i + 1,
                lang=fence["info"].strip().split(" ")[0].lower(),
                text=textwrap.dedent("\n".join(lines[i + 1 : end]) + "\n"),
                heading=heading,
                skip=marker["reason"] if marker else None,
                stray_marker=bool(ANY_MARKER.search(before)) and not marker,
            )
        )
        i = end + 1
    return found


def shell_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.is_shell]


def runnable(path: Path) -> list[Block]:
    return [b for b in shell_blocks(path) if b.skip is None]


def section(path: Path, heading: str) -> list[Block]:
    return [b for b in runnable(path) if b.heading == heading]


# -- expected output ------------------------------------------------------------------------------

_PAIR = re.compile(r'"(?P<key>[\w-]+)":\s*(?P<value>"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null)')


def _glob(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("…")), flags=re.DOTALL)


def _objects(output: str) -> list[dict]:
    """Every JSON object printed on a line of its own (curl's answers, jq's)."""
    found = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
    return found


def shown_in(expected: str, output: str) -> bool:
    """Whether `output` shows what the doc says it shows. A JSON object (`{"k": "v…", …}`, `...`
    for the fields left out; a leading status code, which `curl -s` does not print, is not
    checked) matches an object with those fields; any other text matches a line, `…` a wildcard."""
    if "{" in expected:
        pairs = list(_PAIR.finditer(expected))
        for obj in _objects(output):
            if all(_value_matches(obj.get(p["key"], _MISSING), p["value"]) for p in pairs):
                return True
        return False
    pattern = _glob(expected)
    return any(pattern.fullmatch(line.strip()) for line in output.splitlines())


_MISSING = object()


def _value_matches(actual: object, expected: str) -> bool:
    if actual is _MISSING:
        return False
    want = json.loads(expected)
    if isinstance(want, str) and isinstance(actual, str):
        return bool(_glob(want).fullmatch(actual))
    return actual == want


# -- running a walkthrough against a fresh `make run` ---------------------------------------------

PORT = 8000  # the docs say localhost:8000: each run gets a network namespace of its own
CHECKOUT = (".venv", "Makefile")
INSTALL_INPUTS = ("pyproject.toml", "constraints.txt")

# The server's shell runs in the background in its own process group; the walkthrough's shell waits
# for /readyz, runs the blocks, then `after.sh` reads the outcome while the server still serves.
DRIVER = """
set -uo pipefail
ip link set lo up 2>/dev/null || true
setsid bash -euo pipefail server.sh >serve.log 2>serve.err &
server=$!
stop() {
    kill -TERM -- -$server 2>/dev/null
    for _ in $(seq 150); do kill -0 -- -$server 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL -- -$server 2>/dev/null
}
trap stop EXIT
for _ in $(seq 480); do curl -sf localhost:8000/readyz >/dev/null && break; sleep 0.25; done
curl -sf localhost:8000/readyz >/dev/null || { echo "make run never became ready" >&2; exit 90; }
bash walkthrough.sh >walkthrough.log 2>&1
echo $? >walkthrough.rc
bash -uo pipefail after.sh >after.log 2>&1
"""

# A walkthrough runs strictly: an unset variable, a failing command, or an HTTP error answer to any
# curl in a block stops it there (a reader would see the error; here the test names the block).
PREAMBLE = """set -euo pipefail
curl() { command curl --fail-with-body "$@"; }
"""

START = "::walkthrough block {index} {where}::"


def _namespace() -> list[str] | None:
    """`unshare` argv for a private network (its own port 8000) and pid namespace (nothing outlives
    the run), or None where this machine cannot make one."""
    for argv in (["unshare", "--net", "--pid", "--fork", "--mount-proc"], ["unshare", "--net"]):
        probe = subprocess.run([*argv, "ip", "link", "set", "lo", "up"], capture_output=True)
        if probe.returncode == 0:
            return argv
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def checkout(work: Path) -> Path:
    """A folder laid out like a checkout whose `make install` already ran (the shared .venv), so
    `make run` only serves and `.osiris` there is the fresh data dir. The install inputs are copies
    as old as the install stamp, so `make` never reinstalls into the shared .venv from here."""
    work.mkdir(parents=True)
    for name in CHECKOUT:
        (work / name).symlink_to(ROOT / name)
    # a copy: a script that writes beside itself writes into the run's folder, not the repository
    shutil.copytree(ROOT / "scripts", work / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    stamp = (ROOT / ".venv" / ".installed-run").stat().st_mtime
    for name in INSTALL_INPUTS:
        shutil.copy(ROOT / name, work / name)
        os.utime(work / name, (stamp - 1, stamp - 1))
    (work / "home").mkdir()
    return work


@dataclass
class Run:
    work: Path
    blocks: list[Block]
    returncode: int
    log: str
    outputs: dict[int, str]  # each block's output (stdout and stderr), by index

    def logs(self) -> dict[str, str]:
        names = ("serve.err", "walkthrough.log", "after.log")
        return {n: (self.work / n).read_text()[-4000:] for n in names if (self.work / n).exists()}

    def failed_block(self) -> str:
        started = [i for i in self.outputs]
        return self.blocks[started[-1]].where if started else "before the first block"


def run(work: Path, steps: list[Block | str], *, server: str, after: str = "") -> Run:
    """Run `steps` in order in one bash (so variables and `cd` carry over, as in a reader's shell)
    against `server` (a script whose `make run` serves) started fresh in `work`. A step is a doc's
    block, or a string of the test's own (the second shell's settings, a wait)."""
    blocks = [s for s in steps if isinstance(s, Block)]
    script = [PREAMBLE]
    index = -1
    for step in steps:
        if isinstance(step, str):
            script.append(step)
            continue
        index += 1
        # on a line of its own: a curl answer ends without a newline
        script.append(f"printf '\\n%s\\n' '{START.format(index=index, where=step.where)}'\n")
        script.append(step.script())
    (work / "server.sh").write_text(server)
    (work / "walkthrough.sh").write_text("".join(script))
    (work / "after.sh").write_text(after)
    namespace = _namespace()
    if namespace is None and not _port_free(PORT):
        why = "no network namespace, and port 8000 is taken: the docs name it"
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(why)
    argv = [*(namespace or []), "bash", "-c", DRIVER]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_") and k != "DATABASE_URL"}
    for name in ("XDG_RUNTIME_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV"):
        env.pop(name, None)
    env["HOME"] = str(work / "home")
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout, done.stderr, (work / "serve.err").read_text()[-4000:])
    log = (work / "walkthrough.log").read_text()
    rc = int((work / "walkthrough.rc").read_text())
    parts = re.split(r"^::walkthrough block (\d+) \S+::$", log, flags=re.MULTILINE)
    outputs = {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}
    return Run(work=work, blocks=blocks, returncode=rc, log=log, outputs=outputs)
