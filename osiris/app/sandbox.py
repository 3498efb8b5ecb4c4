"""Where a pre-review check runs: the isolation levels, and how a check's whole process tree ends.

A check runs the agent's code, so it is treated as hostile. Every level runs it in a throw-away copy
of one commit (never a work tree linked to a live repository) under a fresh temp dir, with an
environment built from scratch (`check_runner.check_env`). The levels add, from strongest:

- `namespace` (the server is root): `unshare` a pid, mount, ipc and uts namespace, hide the server's
  paths under empty tmpfs mounts, give the check a private /tmp holding only its copy, then drop to
  `checks_uid`/`checks_gid` with no capabilities, no supplementary groups and no_new_privs
  (`setpriv`). The copy is chowned to that uid; the data dir is 0711 and `secret.key` 0600.
- `userns` (any user that may create user namespaces): the same namespaces inside a new user
  namespace mapping only our own uid to root, the same hidden paths and private /tmp, then every
  capability dropped (bounding set too, so exec gives none back). The check keeps our uid outside.
- `none`: the old behaviour, loudly: our uid, our /proc, our file system (but still a copy).

With a pid namespace the check sees only its own processes, and killing `unshare` kills the
namespace's init (`--kill-child`, a parent-death signal) which takes every process in it along, a
`setsid` double fork included. For `none`, a cgroup v2 group with `cgroup.kill` is used when one can
be made (`/sys/fs/cgroup/unified`, `/sys/fs/cgroup`), else the session plus every process still
carrying the check's unique HOME is killed: a process that both leaves the session and rewrites its
environment escapes that last fallback.

`auto` probes once per process (root: namespace, then userns; otherwise userns), logs its choice and
falls back to `none` with a warning. A level asked for explicitly that cannot be set up is not
replaced: the checks are `error` results until it can.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, SecretStr
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

LEVELS = ("auto", "namespace", "userns", "none")
REDACTED = "[redacted]"
SETUP_FAILED = 125  # the prelude's exit status when the sandbox could not be made

# Runs as the namespace's init (pid 1) and stays it: the check is its child, never exec'd in its
# place, because the parent-death signal that `--kill-child` sets is cleared by a change of uid
# (setpriv) and pid 1 must die with `unshare` for the namespace to die with it. First the temp root
# (/tmp) becomes a private tmpfs holding only this check's directory: made inside the directory,
# the directory bound into it, then moved over the temp root (mount(8) resolves paths, so binding
# "." after covering /tmp would bind the new, empty directory). Then each path before `--` is hidden
# under an empty tmpfs (a file under /dev/null). The stash's name is new each time: an earlier command
# of the same copy cannot have planted a symlink there to make us mount (and mkdir) elsewhere.
PRELUDE = r"""
work=$1 nonce=$2; shift 2
fail() { echo "osiris-sandbox-$nonce: $*" >&2; exit 125; }
cd "$work" || fail "no work dir"
tmproot=${work%/*} name=${work##*/}
stash=".tmp-$nonce"
mkdir "$stash" && mount -t tmpfs -o mode=1777,nosuid,nodev osiris-tmp "$stash" && mkdir "$stash/$name" &&
  mount --bind "$work" "$stash/$name" && mount --move "$stash" "${tmproot:-/}" || fail "no private $tmproot"
while [ "$1" != -- ]; do
  if [ -d "$1" ]; then
    mount -t tmpfs -o size=16k,mode=0755,nosuid,nodev osiris-hidden "$1" || fail "cannot hide $1"
  elif [ -e "$1" ]; then
    mount --bind /dev/null "$1" || fail "cannot hide $1"
  fi
  shift
done
shift
cd "$work/src" || fail "no copy"
unset OLDPWD  # ours; the check's environment is only what check_runner.check_env built
"$@"
"""


class SandboxUnavailable(RuntimeError):
    """The isolation level asked for cannot be set up here: the checks are `error` results."""


@dataclass(frozen=True)
class Sandbox:
    """How to run one check command; `argv(...)` is the process to start."""

    level: str  # namespace | userns | none
    uid: int = 65534
    gid: int = 65534
    hidden: tuple[str, ...] = ()
    unshare: str = "unshare"
    setpriv: str = "setpriv"
    network: bool = True  # False: a network namespace of its own (loopback only)

    def argv(self, command: str, work: Path, nonce: str) -> list[str]:
        if self.level == "none":
            return ["/bin/sh", "-c", command]
        namespaces = ["--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "--ipc", "--uts"]
        if not self.network:
            namespaces.append("--net")
        drop = ["--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
        if self.level == "namespace":
            prefix = [self.unshare, *namespaces]
            drop = [f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *drop]
        else:
            prefix = [self.unshare, "--user", "--map-root-user", *namespaces]
        return [
            *prefix,
            "/bin/sh", "-c", PRELUDE, "osiris-sandbox", str(work), nonce,
            *self.hidden, "--",
            self.setpriv, *drop, "/bin/sh", "-c", command,
        ]  # fmt: skip

    def prepare(self, work: Path) -> None:
        """Hand the copy to the check's uid (namespace): it may write its own copy and nothing else."""
        if self.level == "namespace":
            # chown(1) is one C walk; a Python os.walk over a 50,000-file copy is several times slower
            subprocess.run(  # noqa: S603 - fixed program, our own path
                ["chown", "-R", "--no-dereference", f"{self.uid}:{self.gid}", str(work)],  # noqa: S607
                check=True,
                capture_output=True,
            )

    def cleanup(self, work: Path, nonce: str) -> None:
        """The prelude's empty mount point, left in the work dir when its namespace ended."""
        with contextlib.suppress(OSError):
            (work / f".tmp-{nonce}").rmdir()

    def setup_error(self, output: str, exit_code: int | None, nonce: str) -> str | None:
        """The sandbox's own failure, if that is what ended the command."""
        if exit_code == SETUP_FAILED and f"osiris-sandbox-{nonce}:" in output:
            return output.strip()
        return None


# --- choosing a level, once per process --------------------------------------------------------

_chosen: dict[tuple[Any, ...], Sandbox | SandboxUnavailable] = {}
_lock = threading.Lock()


def hidden_paths(settings: Any) -> tuple[str, ...]:
    """What of the server's a check must not see: the data dir (embedded PostgreSQL and its socket,
    the live repositories, cache clones, secret.key), a repository outside it, a `.env`, a PEM file
    named by path, and whatever the operator lists."""
    paths: list[Path] = [settings.data_dir, *settings.sandbox.hidden_paths]
    if settings.db.embedded:  # pgserver's socket leaves the data dir when that path is too long for one
        paths.append(platformdirs.user_runtime_path("python_PostgresServer"))
    if settings.local.repo is not None:
        paths.append(settings.local.repo)
    paths.append(Path(".env"))
    pem = settings.github.private_key
    if pem is not None and "BEGIN" not in pem.get_secret_value():
        paths.append(Path(pem.get_secret_value()).expanduser())
    return tuple(dict.fromkeys(str(p.resolve()) for p in paths))


def choose(settings: Any) -> Sandbox:
    """The sandbox for this process's checks; raises SandboxUnavailable for a level asked for
    explicitly that does not work here. Probed once per process and settings."""
    key = (
        settings.sandbox.isolation,
        settings.sandbox.uid,
        settings.sandbox.gid,
        settings.sandbox.network,
        hidden_paths(settings),
    )
    with _lock:
        if key not in _chosen:
            _chosen[key] = _choose(settings)
        found = _chosen[key]
    if isinstance(found, SandboxUnavailable):
        raise found
    return found


def _choose(settings: Any) -> Sandbox | SandboxUnavailable:
    wanted = settings.sandbox.isolation
    base = {
        "uid": settings.sandbox.uid,
        "gid": settings.sandbox.gid,
        "hidden": hidden_paths(settings),
        "unshare": shutil.which("unshare") or "",
        "setpriv": shutil.which("setpriv") or "",
        "network": settings.sandbox.network,
    }
    if wanted == "none":
        log.warning(
            "checks run WITHOUT isolation (OSIRIS_CHECKS_ISOLATION=none): an agent's code runs as the "
            "server's user and can read its data dir, processes and secrets"
        )
        return Sandbox("none")
    candidates = ["namespace", "userns"] if os.geteuid() == 0 else ["userns"]
    if wanted != "auto":
        candidates = [wanted]
    reasons = []
    for level in candidates:
        reason = _probe(Sandbox(level, **base))
        if reason is None:
            log.info("checks isolation: %s", level, extra={"checks_isolation": level})
            return Sandbox(level, **base)
        reasons.append(f"{level}: {reason}")
    if wanted != "auto":
        log.error("checks isolation %s cannot be set up: %s", wanted, "; ".join(reasons))
        return SandboxUnavailable(f"checks isolation {wanted!r} cannot be set up here: {'; '.join(reasons)}")
    log.warning(
        "checks run WITHOUT isolation: no sandbox could be set up (%s); an agent's code runs as the "
        "server's user and can read its data dir, processes and secrets",
        "; ".join(reasons),
    )
    return Sandbox("none")


def _probe(sandbox: Sandbox) -> str | None:
    """None when `sandbox` can run a command here, else why not."""
    if not sandbox.unshare or not sandbox.setpriv:
        return "unshare and setpriv (util-linux) are needed"
    if sandbox.level == "namespace" and os.geteuid() != 0:
        return "only root can switch to another uid"
    work = Path(tempfile.mkdtemp(prefix="osiris-check-probe-"))
    try:
        (work / "src").mkdir()
        sandbox.prepare(work)
        nonce = secrets.token_hex(8)
        try:
            proc = subprocess.run(  # noqa: S603 - our own fixed argv
                sandbox.argv('test -w . && test -w "$HOME"', work, nonce),
                capture_output=True,
                timeout=20,
                check=False,
                env={"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": str(work / "src")},
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)
        if proc.returncode != 0:
            return (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()[-500:] or "exit 1"
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def protect_data_dir(settings: Any) -> None:
    """The check's uid may not list the data dir nor read secret.key. 0711, not 0700: the embedded
    PostgreSQL runs as its own user `pgserver` under root and must traverse to its own folder."""
    data = settings.data_dir
    with contextlib.suppress(OSError):
        if data.is_dir():
            data.chmod(0o711 if settings.db.embedded and os.geteuid() == 0 else 0o700)
    with contextlib.suppress(OSError):
        (data / "secret.key").chmod(0o600)


# --- ending the whole tree ---------------------------------------------------------------------


class Reaper:
    """Kills everything a check started, at its timeout and after it ends. With a pid namespace that
    is killing `unshare` (its init dies, and the kernel kills the rest); for `none` see the module."""

    def __init__(self, sandbox: Sandbox, home: Path) -> None:
        self.sandbox = sandbox
        self.home = str(home)
        self.cgroup: Path | None = None
        if sandbox.level == "none":
            self.cgroup = _new_cgroup()

    def wrap(self, argv: list[str]) -> list[str]:
        """The check moves itself into its cgroup before exec'ing: nothing forks outside of it."""
        if self.cgroup is None:
            return argv
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.cgroup), *argv]

    def kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        if self.sandbox.level != "none":
            return
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.kill").write_text("1")
            return
        import psutil  # only this fallback needs it

        for proc in psutil.process_iter(["environ"]):  # no cgroup: what still carries our HOME
            with contextlib.suppress(psutil.Error):
                if (proc.info.get("environ") or {}).get("HOME") == self.home:
                    proc.kill()

    def close(self) -> None:
        if self.cgroup is None:
            return
        for _ in range(100):  # a killed group empties within milliseconds
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()
                return
            time.sleep(0.01)
        log.warning("a check's cgroup could not be removed", extra={"cgroup": str(self.cgroup)})


def _new_cgroup() -> Path | None:
    for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if not (root / "cgroup.procs").is_file() or not os.access(root, os.W_OK):
            continue
        path = root / f"osiris-check-{secrets.token_hex(6)}"
        try:
            path.mkdir()
        except OSError:
            continue
        if (path / "cgroup.kill").exists():
            return path
        with contextlib.suppress(OSError):
            path.rmdir()
    return None


# --- secrets in what a check printed -------------------------------------------------------------


def secret_values(settings: Any) -> list[str]:
    """Every secret the server holds: each SecretStr setting (dicts of them too), the signing key,
    the database password. Longest first, so a secret containing another is replaced whole."""
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, dict):
            for item in value.values():
                add(item)
        elif isinstance(value, BaseModel):  # a group of settings
            for name in type(value).model_fields:
                add(getattr(value, name))

    for name in type(settings).model_fields:
        add(getattr(settings, name))
    with contextlib.suppress(OSError):
        found.append(settings.signing_key())
    if settings.db.url:
        with contextlib.suppress(Exception):
            found.append(make_url(settings.db.url).password or "")
    # a secret of three characters or fewer would redact ordinary words; it protects nothing either
    return sorted({v for v in found if len(v) >= 4}, key=len, reverse=True)


def redact(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text
