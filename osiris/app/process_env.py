"""The server's own environment, emptied of its secrets once the settings have been read.

Deleting a variable from `os.environ` is not enough: `/proc/<pid>/environ` shows the block the kernel
copied onto the stack at exec, whatever the process did since, to anyone allowed to read the file
(its own uid, root). So the secret entries of that block are overwritten as well. A process that
starts children needing the settings (`osiris serve --workers N`) puts the variables back into its
heap environment, which children inherit and /proc does not show; each child scrubs itself after
reading its settings. No library does this (setproctitle moves the block but keeps its contents), hence
ctypes. Linux only; elsewhere only `os.environ` is cleaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import typing
from pathlib import Path

from pydantic import SecretStr

from osiris.app.config import setting_fields

# The database URL holds a password; it is not a SecretStr because the embedded default has none.
ALSO_SECRET = ("DATABASE_URL", "OSIRIS_DATABASE_URL")


def _holds_secret(annotation: object) -> bool:
    if annotation is SecretStr:
        return True
    return any(_holds_secret(arg) for arg in typing.get_args(annotation))


def secret_names() -> set[str]:
    """The environment variables that carry a secret setting (upper case)."""
    names = {name for f in setting_fields() if _holds_secret(f.info.annotation) for name in f.env_names}
    return names | set(ALSO_SECRET)


def scrub() -> dict[str, str]:
    """Remove the secret variables from the environment and overwrite them in the initial block.
    Returns what was removed: a parent whose children need it puts it back (`os.environ.update`),
    into the heap environment children inherit and /proc does not show."""
    wanted = secret_names()
    removed = {k: v for k, v in os.environ.items() if k.upper() in wanted}
    for name in removed:
        del os.environ[name]
    with contextlib.suppress(OSError, ValueError, IndexError):
        _overwrite_initial_block({n.encode() for n in removed})
    return removed


def _overwrite_initial_block(names: set[bytes]) -> None:
    if not names:
        return
    # /proc/self/stat fields 50 and 51 (env_start, env_end); the name in field 2 may hold spaces
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    start, end = int(fields[47]), int(fields[48])
    block = ctypes.string_at(start, end - start)
    offset = 0
    for entry in block.split(b"\0"):
        if entry.split(b"=", 1)[0].upper() in {n.upper() for n in names}:
            # "NAME=value" becomes "NAME=" and zeros: the value is gone, nothing else moves
            eq = entry.index(b"=") + 1 if b"=" in entry else len(entry)
            ctypes.memset(start + offset + eq, 0, len(entry) - eq)
        offset += len(entry) + 1
