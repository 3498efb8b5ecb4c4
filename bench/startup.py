"""Start-up: second start of the embedded default to /readyz 200 (goal < 5 s) and idle RSS.

.venv/bin/python bench/startup.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import rss_mib, running_server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, help="also write the key numbers here (bench/report.py)")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="osiris-bench-"))
    with running_server(data) as (_, _, first):
        pass
    with running_server(data) as (_, proc, second):
        time.sleep(2)
        rss = rss_mib(proc.pid)
    print(f"first start to /readyz : {first:.2f}s (creates the cluster and migrates)")
    print(f"second start to /readyz: {second:.2f}s (goal < 5 s) ratio second/first = {second / first:.2f}")
    print(f"idle server RSS        : {rss:.0f} MiB (the osiris process; PostgreSQL not included)")
    if args.json:
        summary = {
            "name": "start to /readyz, embedded default",
            "baseline_label": "first start (creates cluster, migrates)",
            "baseline": round(first, 2),
            "osiris_label": "second start",
            "osiris": round(second, 2),
            "ratio": round(second / first, 2),
            "unit": "s",
            "goal": "second start < 5 s",
            "notes": f"idle RSS {rss:.0f} MiB",
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
