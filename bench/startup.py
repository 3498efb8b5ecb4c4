"""Start-up: second start of the embedded default to /readyz 200 (goal < 5 s) and idle RSS.

.venv/bin/python bench/startup.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _server import arguments, memory_mib, running_server, write_summary


def main() -> None:
    args = arguments(__doc__).parse_args()
    data = Path(tempfile.mkdtemp(prefix="osiris-bench-"))
    with running_server(data) as (_, _, first):
        pass
    with running_server(data) as (_, proc, second):
        time.sleep(2)
        rss = memory_mib(proc.pid)
    print(f"first start to /readyz : {first:.2f}s (creates the cluster and migrates)")
    print(f"second start to /readyz: {second:.2f}s (goal < 5 s) ratio second/first = {second / first:.2f}")
    print(f"idle server RSS        : {rss:.0f} MiB (the osiris process; PostgreSQL not included)")
    write_summary(
        args.json,
        name="start to /readyz, embedded default",
        baseline_label="first start (creates cluster, migrates)",
        baseline=round(first, 2),
        osiris_label="second start",
        osiris=round(second, 2),
        ratio=round(second / first, 2),
        unit="s",
        goal="second start < 5 s",
        notes=f"idle RSS {rss:.0f} MiB",
    )


if __name__ == "__main__":
    main()
