"""Git plumbing (the git CLI, one process per command), with a private index or object store on demand.

Everything here blocks: callers run it in a worker thread (asyncio.to_thread). No function touches a
work tree, so the cost of an operation follows what it changes, not the size of the repository.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from osiris.app.ports import CheckoutFailed

ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
IDENTITY = {
    "GIT_AUTHOR_NAME": "OSIRIS",
    "GIT_AUTHOR_EMAIL": "osiris@localhost",
    "GIT_COMMITTER_NAME": "OSIRIS",
    "GIT_COMMITTER_EMAIL": "osiris@localhost",
}


def program_path() -> str:
    """PATH for a git process whose environment is otherwise built from scratch: this process's own,
    so git is found where the server found it (inherited from the process, not an OSIRIS setting)."""
    return os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")


def scratch_env(home: Path, **extra: str) -> dict[str, str]:
    """The whole environment of a git process started outside `Git` (checks' copies, cache clones):
    PATH, a home of its own, no system or global config, never a prompt."""
    return {
        "PATH": program_path(),
        "HOME": str(home),
        "LANG": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        **extra,
    }


def run_bounded(
    args: tuple[str, ...],
    *,
    env: dict[str, str],
    timeout: float,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    secret: str | None = None,
) -> str:
    """`git <args>` with a time limit; its stdout, or GitFailed with the tail of its stderr (`secret`,
    a token it was given, masked)."""
    argv = ["git", *([f"--git-dir={git_dir}"] if git_dir is not None else []), *args]
    try:
        proc = subprocess.run(  # noqa: S603 - fixed program, arguments are ours
            argv, env=env, cwd=cwd, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise GitFailed(args, -1, f"timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        if secret:
            err = err.replace(secret, "***")
        raise GitFailed(args, proc.returncode, err.strip()[-2000:])
    return proc.stdout.decode("utf-8", "replace")


class GitFailed(CheckoutFailed):
    """A git command failed. At the port it is a `CheckoutFailed`: the checks' copies are made with git."""

    def __init__(self, args: tuple[str, ...], status: int, stderr: str) -> None:
        super().__init__(f"git {args[0] if args else ''} exited {status}: {stderr}")
        self.status = status
        self.stderr = stderr


@dataclass
class Git:
    """One repository's git dir, and the environment its commands run with."""

    git_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Pathspecs are paths here, never globs; and nothing may come from a caller's GIT_* env.
        self.env = {"GIT_DIR": str(self.git_dir), "GIT_LITERAL_PATHSPECS": "1", **self.env}

    def with_env(self, **env: str) -> Git:
        return Git(self.git_dir, {**self.env, **env})

    def run_raw(self, *args: str, stdin: bytes | None = None) -> tuple[int, bytes, str]:
        """Run `git <args>`; returns (status, stdout bytes, stderr text). Never raises on status."""
        # As GitPython's command wrapper ran it (its import cost a start more than it gave: issue
        # 17): in the git dir, with this process's environment, C messages, then ours on top.
        proc = subprocess.run(  # noqa: S603 - fixed program, arguments are ours
            ["git", *args],  # noqa: S607 - git from PATH, as GitPython found it
            **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
            cwd=self.git_dir,
            env={**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **self.env},
            capture_output=True,
            check=False,
        )
        err = proc.stderr.decode("utf-8", "replace")
        return proc.returncode, proc.stdout, err[:-1] if err.endswith("\n") else err

    def run(self, *args: str, stdin: bytes | None = None) -> str:
        """Run `git <args>` and return its stdout as text; raise GitFailed on a non-zero status."""
        status, out, err = self.run_raw(*args, stdin=stdin)
        if status != 0:
            raise GitFailed(args, status, err)
        return out.decode("utf-8", "replace")

    def rev(self, ref: str) -> str | None:
        """The object a ref names, or None when it does not exist."""
        status, out, _ = self.run_raw("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return out.decode().strip() if status == 0 else None

    def refs(self, *names: str) -> dict[str, str]:
        """Several refs in one call: full name -> object, for those that exist."""
        out = self.run("for-each-ref", "--format=%(refname)%00%(objectname)", *names)
        found = dict(line.split("\0", 1) for line in out.splitlines() if line)
        return {name: found[name] for name in names if name in found}  # patterns also match below

    def update_refs(self, *commands: tuple[str, ...]) -> bool:
        """Apply ref updates as one all-or-nothing transaction, each compare-and-swap on its old value.

        Commands are ("update", ref, new, old), ("create", ref, new) or ("delete", ref, old).
        Returns False when any old value no longer holds (someone else moved the ref first).
        """
        script = b"".join(
            f"{cmd[0]} {cmd[1]}\0".encode() + b"".join(f"{v}\0".encode() for v in cmd[2:]) for cmd in commands
        )
        status, _, err = self.run_raw("update-ref", "--stdin", "-z", stdin=script)
        if status == 0:
            return True
        if "cannot lock ref" in err or "but expected" in err or "reference already exists" in err:
            return False
        raise GitFailed(("update-ref",), status, err)

    def trailers(self, commit: str, *keys: str) -> dict[str, str]:
        fmt = "%x1f".join(f"%(trailers:key={k},valueonly,separator=%x2C)" for k in keys)
        values = self.run("log", "-1", f"--format={fmt}", commit).strip("\n").split("\x1f")
        return {k: v.strip() for k, v in zip(keys, values, strict=False) if v.strip()}


class Scratch:
    """Files for one operation (a private index, blobs to hash), removed when it ends.

    They live as uniquely named files in one directory per process: creating and removing a
    directory per operation costs a journal commit each, which hurts while PostgreSQL is fsyncing.
    """

    _root: Path | None = None

    def __init__(self) -> None:
        if Scratch._root is None or not Scratch._root.is_dir():
            Scratch._root = Path(tempfile.mkdtemp(prefix="osiris-git-"))
        self._prefix = f"{uuid.uuid4().hex}-"
        self._made: list[Path] = []

    def path(self, name: str) -> Path:
        assert Scratch._root is not None  # noqa: S101 - set in __init__
        made = Scratch._root / f"{self._prefix}{name}"
        self._made.append(made)
        return made

    def clean(self) -> None:
        for made in self._made:
            for leftover in (made, made.with_name(made.name + ".lock")):
                leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def scratch(repo: Git) -> Iterator[tuple[Git, Scratch]]:
    """The repository with a private, initially empty index: building a tree here never disturbs
    anyone else's index or refs."""
    work = Scratch()
    try:
        yield repo.with_env(GIT_INDEX_FILE=str(work.path("index"))), work
    finally:
        work.clean()
