"""Code-host sync speed: submit → change request visible, small repository vs large, in one run.

Local part (the embedded git host): a real `osiris serve` (embedded PostgreSQL, in-process worker)
on loopback, two projects — 10 files and 50,000 files — and the same patch submitted to fresh tasks
on both, interleaved. Measured from the POST of the artifact until `GET …/change-request` shows the
published commit. The goal is that the large repository costs no more than 1.5x the small one:

    .venv/bin/python bench/github_sync.py [--samples 40] [--files 50000]

The GitHub part (the same measurement against the GitHub fake) belongs in `github_part` below.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from _server import arguments, cli, percentile_ms, running_server, write_summary

APP = "def main():\n    return 1\n"
DEEP = "pkg_07/mod_3/file_042.py"


def deep_file(path: str, n: int) -> str:
    return f"# file {path}\nVALUE = {n}\n"


def make_repo(path: Path, n_files: int) -> int:
    """A bare repository with `n_files` files in one commit on main, written by git fast-import."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    files = {"README.md": "# bench\n", "src/app.py": APP, DEEP: deep_file(DEEP, 42)}
    i = 0
    while len(files) < n_files:  # 50 packages x 10 modules x 100 files: directories of sane width
        p = f"pkg_{i // 1000 % 50:02d}/mod_{i // 100 % 10}/file_{i % 100:03d}.py"
        files.setdefault(p, deep_file(p, i))
        i += 1
    chunks = [b"commit refs/heads/main\ncommitter Bench <bench@localhost> 0 +0000\ndata 5\ninit\n"]
    for p, body in files.items():
        data = body.encode()
        chunks.append(f"M 100644 inline {p}\ndata {len(data)}\n".encode() + data + b"\n")
    subprocess.run(
        ["git", "--git-dir", str(path), "fast-import", "--quiet"], input=b"".join(chunks), check=True
    )
    return len(files)


def patch(n: int) -> str:
    return (
        "diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n"
        "@@ -1,2 +1,2 @@\n def main():\n-    return 1\n+    return 2\n"
        f"diff --git a/{DEEP} b/{DEEP}\n--- a/{DEEP}\n+++ b/{DEEP}\n"
        f"@@ -1,2 +1,2 @@\n # file {DEEP}\n-VALUE = 42\n+VALUE = 43\n"
        f"diff --git a/docs/note_{n}.md b/docs/note_{n}.md\nnew file mode 100644\n"
        f"--- /dev/null\n+++ b/docs/note_{n}.md\n@@ -0,0 +1 @@\n+note {n}\n"
    )


def one_sample(http: httpx.Client, repo: str, n: int, deadline: float) -> float:
    r = http.post("/api/v1/tasks", json={"title": f"bench {n}", "repo": repo})
    r.raise_for_status()
    task_id = r.json()["id"]
    http.post(f"/api/v1/tasks/{task_id}/claim").raise_for_status()
    start = time.perf_counter()
    r = http.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": patch(n)})
    r.raise_for_status()
    while True:
        arts = http.get(f"/api/v1/tasks/{task_id}/artifacts").json()
        sha = arts[0]["commit_sha"]
        if sha:
            view = http.get(f"/api/v1/tasks/{task_id}/change-request")
            if view.status_code == 200 and view.json()["head_sha"] == sha:
                return time.perf_counter() - start
        if time.perf_counter() > deadline:
            raise TimeoutError("the change request did not appear in time")
        time.sleep(0.002)


def local_part(samples: int, n_files: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="osiris-bench-") as tmp:
        data = Path(tmp)
        t = time.perf_counter()
        sizes = {
            "bench-small": make_repo(data / "repos" / "bench-small.git", 10),
            "bench-large": make_repo(data / "repos" / "bench-large.git", n_files),
        }
        print(f"repositories: {sizes} (generated in {time.perf_counter() - t:.1f}s)")
        with running_server(data) as (url, _, _):
            token = cli(data, "token", "create", "bench-agent")
            times: dict[str, list[float]] = {name: [] for name in sizes}
            headers = {"Authorization": f"Bearer {token}"}
            deadline = time.perf_counter() + 600  # bounded, whatever happens
            with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
                for n in range(samples + 3):
                    for name in sizes:  # interleaved, so drift hits both alike
                        took = one_sample(http, name, n, deadline)
                        if n >= 3:  # the first rounds warm caches and connections
                            times[name].append(took)
        small, large = percentile_ms(times["bench-small"], 0.95), percentile_ms(times["bench-large"], 0.95)
        med = {k: percentile_ms(v, 0.5) for k, v in times.items()}
        print(f"local  submit → change request visible, {samples} samples each")
        print(
            f"  small ({sizes['bench-small']} files): p95 {small:7.1f} ms   median {med['bench-small']:6.1f} ms"
        )
        print(
            f"  large ({sizes['bench-large']} files): p95 {large:7.1f} ms   median {med['bench-large']:6.1f} ms"
        )
        verdict = "ok" if large / small <= 1.5 else "ABOVE GOAL"
        print(f"  ratio large/small p95: {large / small:.2f}  (goal ≤ 1.5: {verdict})")
        return {
            "name": "local git host: submit → change request visible, p95",
            "baseline_label": f"{sizes['bench-small']} files",
            "baseline": round(small, 1),
            "osiris_label": f"{sizes['bench-large']} files",
            "osiris": round(large, 1),
            "ratio": round(large / small, 2),
            "unit": "ms",
            "goal": "ratio <= 1.5",
            "notes": f"{samples} samples each; medians {med['bench-small']:.0f} / {med['bench-large']:.0f} ms",
        }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--files", type=int, default=50_000)
    args = parser.parse_args()
    write_summary(args.json, **local_part(args.samples, args.files))


if __name__ == "__main__":
    main()
