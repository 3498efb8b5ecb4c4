"""Start-up: second start of the embedded default to /readyz 200 (goal < 5 s) and idle RSS.

.venv/bin/python bench/startup.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import rss_mib, running_server  # noqa: E402


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="osiris-bench-"))
    with running_server(data) as (_, _, first):
        pass
    with running_server(data) as (_, proc, second):
        time.sleep(2)
        rss = rss_mib(proc.pid)
    print(f"first start to /readyz : {first:.2f}s (creates the cluster and migrates)")
    print(f"second start to /readyz: {second:.2f}s (goal < 5 s) ratio second/first = {second / first:.2f}")
    print(f"idle server RSS        : {rss:.0f} MiB (the osiris process; PostgreSQL not included)")


if __name__ == "__main__":
    main()
