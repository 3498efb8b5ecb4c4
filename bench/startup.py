"""Start-up: second start of the embedded default to /readyz 200 (goal ≤ 1.5 s, issue 17) and idle RSS,
and where a second start's time goes, each part measured on its own in a fresh process:

- Python: the interpreter itself, then importing what `osiris serve` imports (the CLI, the composition
  root, every edge) and building the app, with `-X importtime`'s self time summed per top-level
  package (less sensitive to a loaded machine than wall time, and it names what to make lazy);
- PostgreSQL: the embedded server ready on the data dir (pgserver's import and the postmaster);
- the app: the rest of the start to /readyz (settings, the lifespan: the schema check, the hub, the
  worker and the listening socket).

.venv/bin/python bench/startup.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _server import arguments, memory_mib, running_server, write_summary

GOAL_SECONDS = 1.5
APP_IMPORTS = "import osiris.cli, osiris.server as s; s._extensions(); s.create_app()"
TIMED = "import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
POSTGRES = (
    "import sys, time; from pathlib import Path; from osiris.app.db import EmbeddedPostgres; "
    "pg = EmbeddedPostgres(Path(sys.argv[1])); t = time.perf_counter(); pg.start(); "
    "print(time.perf_counter() - t); pg.stop()"
)
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")


def _python(code: str, *args: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=120
    )
    return float(out.stdout.strip().splitlines()[-1])


def _interpreter_seconds() -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    return time.monotonic() - start


def _import_breakdown() -> tuple[float, list[tuple[str, float]]]:
    """`-X importtime` of the app's imports: the self time in total, and per top-level package."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", APP_IMPORTS],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    per: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        found = _IMPORT_LINE.match(line)
        if found:
            per[found.group(2).split(".")[0]] += int(found.group(1)) / 1e6
    return sum(per.values()), per.most_common()


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    args = arguments(__doc__).parse_args()
    data = Path(tempfile.mkdtemp(prefix="osiris-bench-"))
    with running_server(data) as (_, _, first):
        pass
    with running_server(data) as (_, proc, second):
        time.sleep(2)
        rss = memory_mib(proc.pid)
    # Each part three times, the median: the machine may be busy with other work.
    interpreter = _median([_interpreter_seconds() for _ in range(3)])
    imports = _median([_python(TIMED.format(code=APP_IMPORTS)) for _ in range(3)])
    postgres = _median([_python(POSTGRES, str(data)) for _ in range(3)])
    app = max(second - interpreter - imports - postgres, 0.0)
    total, per_package = _import_breakdown()
    top = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in per_package[:8])

    verdict = "ok" if second <= GOAL_SECONDS else "ABOVE GOAL"
    print(f"first start to /readyz : {first:.2f}s (creates the cluster and migrates)")
    print(f"second start to /readyz: {second:.2f}s (goal ≤ {GOAL_SECONDS} s: {verdict})")
    print(f"  python interpreter   : {interpreter:.2f}s")
    print(f"  python imports + app : {imports:.2f}s (what `osiris serve` imports, and create_app())")
    print(f"  PostgreSQL ready     : {postgres:.2f}s (embedded: pgserver and the postmaster)")
    print(f"  app start (the rest) : {app:.2f}s (settings, lifespan, socket, /readyz)")
    print(f"  -X importtime, self time by package (ms, of {total * 1000:.0f}): {top}")
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
        goal=f"second start <= {GOAL_SECONDS} s",
        notes=(
            f"interpreter {interpreter:.2f} s, imports {imports:.2f} s, PostgreSQL {postgres:.2f} s, "
            f"app {app:.2f} s; importtime top (ms): {top}; idle RSS {rss:.0f} MiB"
        ),
    )


if __name__ == "__main__":
    main()
