"""Code-host sync on GitHub (the fake from tests/github_bridge), in one run:

1. submit → draft PR visible: p95 on a 10-file and on a 50,000-file repository, and their ratio
   (goal ≤ 1.5). The app runs in-process with a real job worker; the fake serves real bare
   repositories and validates every call against GitHub's OpenAPI description.
2. GitHub API calls for a whole lifecycle (submit, changes requested, resubmit, approve, merge),
   counted by the fake (goal ≤ 12, and no call repeated to wait for something: zero polling).

    OSIRIS_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/github_sync_github.py [--samples 30] [--files 50000]

Without OSIRIS_TEST_DATABASE_URL an embedded PostgreSQL runs under a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is first on sys.path, where bench/mcp.py would hide the `mcp` SDK the app imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "tests" / "github_bridge"))
from fake_github import BOT, FakeGitHub  # noqa: E402

from osiris.app import accounts, db, jobs  # noqa: E402
from osiris.app.config import Settings  # noqa: E402
from osiris.app.models import Role  # noqa: E402
from osiris.github_bridge import webhooks  # noqa: E402
from osiris.github_bridge.github_client import GitHub  # noqa: E402
from osiris.github_bridge.github_host import GitHubHost  # noqa: E402
from osiris.server import create_app  # noqa: E402

SECRET = "bench-secret"
SUMMARY: dict = {}  # the key numbers, for --json
SMALL, LARGE = "acme/small", "acme/large"
APP = "def main():\n    return 1\n"


def patch(n: int) -> str:
    return (
        "diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n"
        f"@@ -1,2 +1,2 @@\n def main():\n-    return 1\n+    return {n + 2}\n"
    )


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[18] * 1000 if len(xs) >= 2 else xs[0] * 1000


async def database(tmp: Path) -> tuple[str, object]:
    server = os.environ.get("OSIRIS_TEST_DATABASE_URL")
    if not server:
        embedded = db.EmbeddedPostgres(tmp)
        url = embedded.start()
        return url, embedded
    base = make_url(server)
    name = f"osiris_bench_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(base.set(drivername="postgresql").render_as_string(hide_password=False))
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return base.set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False
    ), name


async def run(samples: int, n_files: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="osiris-bench-gh-"))
    url, handle = await database(tmp)
    fake = FakeGitHub(tmp / "github", secret=SECRET)
    (tmp / "github").mkdir()
    t = time.perf_counter()
    fake.create_repo(
        SMALL, {"README.md": "# small\n", "src/app.py": APP, **{f"f{i}.txt": f"{i}\n" for i in range(8)}}
    )
    fake.create_big_repo(LARGE, n_files)
    fake.commit_files(LARGE, "main", {"src/app.py": APP}, "app")
    print(f"repositories: 10 and {n_files + 2} files (generated in {time.perf_counter() - t:.1f}s)")
    fake.tokens["alice-token"] = "alice"
    settings = Settings(
        database_url=url,
        data_dir=tmp / "data",
        secret_key="bench-" + secrets.token_hex(16),
        admin_password="bench-admin-password",
        run_worker=False,
        log_level="WARNING",
        github_token=SecretStr("osiris-token"),
        github_api_url="https://api.github.test",
        github_webhook_secret=SecretStr(SECRET),
        github_repo={"small": SMALL, "large": LARGE},
    )
    app = create_app(settings, run_background=False)
    if not any(getattr(r, "path", None) == "/api/v1/webhooks/github" for r in app.routes):
        app.include_router(webhooks.router)
    async with LifespanManager(app, startup_timeout=120):
        runtime = app.state.runtime
        http = httpx.AsyncClient(transport=fake.transport(), timeout=30)
        runtime.services.code_host = GitHubHost(settings, runtime.sessions, gh=GitHub(settings, client=http))
        worker = jobs.Worker(runtime.dsn, jobs.JobContext(runtime.sessions, settings, runtime.services))
        running = asyncio.create_task(worker.run())
        async with db.transaction(runtime.sessions) as session:
            org = await accounts.default_org(session)
            agent = await accounts.create_user(
                session, org_id=org.id, username="bench-agent", role=Role.AGENT
            )
            admin = await accounts.create_user(
                session, org_id=org.id, username="bench-admin", role=Role.ADMIN
            )
            await accounts.create_user(
                session, org_id=org.id, username="alice", role=Role.REVIEWER, github_login="alice"
            )
            agent_h = {
                "Authorization": f"Bearer {(await accounts.create_token(session, user=agent, name='b')).secret}"
            }
            admin_h = {
                "Authorization": f"Bearer {(await accounts.create_token(session, user=admin, name='b')).secret}"
            }
        api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://osiris.test", timeout=60
        )
        try:
            await speed(api, fake, agent_h, admin_h, samples)
            await calls(api, fake, agent_h, admin_h)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
            await api.aclose()
            await http.aclose()
    if isinstance(handle, str):
        conn = await asyncpg.connect(
            make_url(os.environ["OSIRIS_TEST_DATABASE_URL"])
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{handle}" WITH (FORCE)')
        await conn.close()
    else:
        handle.stop()  # type: ignore[attr-defined]


async def new_task(api: httpx.AsyncClient, agent_h: dict, admin_h: dict, repo: str, title: str) -> int:
    r = await api.post(
        "/api/v1/tasks", json={"title": title, "description": "bench", "repo": repo}, headers=admin_h
    )
    r.raise_for_status()
    task_id = r.json()["id"]
    (await api.post(f"/api/v1/tasks/{task_id}/claim", headers=agent_h)).raise_for_status()
    return task_id


async def until(check, deadline: float = 60.0) -> None:
    end = time.perf_counter() + deadline
    while not check():
        if time.perf_counter() > end:
            raise TimeoutError("the draft PR did not appear")
        await asyncio.sleep(0.002)  # in-process state of the fake: not a GitHub call


def pr_for(fake: FakeGitHub, repo: str, task_id: int):
    return next(
        (p for p in fake.pulls.values() if p.repo == repo and p.head == f"osiris/task-{task_id}"), None
    )


async def speed(api, fake: FakeGitHub, agent_h, admin_h, samples: int) -> None:
    times: dict[str, list[float]] = {"small": [], "large": []}
    for n in range(samples + 3):
        for name, repo in (("small", SMALL), ("large", LARGE)):  # interleaved: drift hits both alike
            task_id = await new_task(api, agent_h, admin_h, name, f"bench {name} {n}")
            start = time.perf_counter()
            r = await api.post(
                f"/api/v1/tasks/{task_id}/artifacts", json={"content": patch(n)}, headers=agent_h
            )
            r.raise_for_status()
            await until(lambda repo=repo, task_id=task_id: pr_for(fake, repo, task_id) is not None)
            if n >= 3:  # warm-up rounds
                times[name].append(time.perf_counter() - start)
    small, large = p95(times["small"]), p95(times["large"])
    print(f"github submit → draft PR visible, {samples} samples each (check + publish job, fake GitHub)")
    print(
        f"  small (10 files):      p95 {small:7.1f} ms   median {statistics.median(times['small']) * 1000:6.1f} ms"
    )
    print(
        f"  large (50,000+ files): p95 {large:7.1f} ms   median {statistics.median(times['large']) * 1000:6.1f} ms"
    )
    print(
        f"  ratio large/small p95: {large / small:.2f}  (goal ≤ 1.5: {'ok' if large / small <= 1.5 else 'ABOVE GOAL'})"
    )
    SUMMARY.update(small=round(small, 1), large=round(large, 1), ratio=round(large / small, 2))


async def settle(api, fake: FakeGitHub) -> None:
    await asyncio.sleep(0.3)
    for headers, body in fake.outbox:
        await api.post("/api/v1/webhooks/github", content=body, headers=headers)
    fake.outbox.clear()
    await asyncio.sleep(0.5)


async def calls(api, fake: FakeGitHub, agent_h, admin_h) -> None:
    for kind, first, second in (
        ("patch", patch(100), None),
        (
            "files",
            {"src/app.py": "def main():\n    return 7\n"},
            {"src/app.py": "def main():\n    return 8\n"},
        ),
    ):
        await settle(api, fake)
        before = Counter(fake.calls_by.get(BOT, Counter()))
        task_id = await new_task(api, agent_h, admin_h, "small", f"lifecycle {kind}")
        (
            await api.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": first}, headers=agent_h)
        ).raise_for_status()
        await until(lambda task_id=task_id: pr_for(fake, SMALL, task_id) is not None)
        number = pr_for(fake, SMALL, task_id).number
        await settle(api, fake)
        async with fake.client("alice-token") as alice:
            await alice.post(
                f"/repos/{SMALL}/pulls/{number}/reviews",
                json={
                    "event": "REQUEST_CHANGES",
                    "body": "again",
                    "comments": [{"path": "src/app.py", "line": 2, "body": "this line"}],
                },
            )
        await settle(api, fake)
        content = (
            second
            or "diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n@@ -1,2 +1,2 @@\n def main():\n-    return 102\n+    return 103\n"
        )
        (
            await api.post(f"/api/v1/tasks/{task_id}/artifacts", json={"content": content}, headers=agent_h)
        ).raise_for_status()
        await settle(api, fake)
        (await api.post(f"/api/v1/tasks/{task_id}/approve", headers=admin_h)).raise_for_status()
        await until(lambda n=number: fake.pulls[(SMALL, n)].merged)
        await settle(api, fake)
        used = Counter(fake.calls_by[BOT]) - before
        status = (await api.get(f"/api/v1/tasks/{task_id}", headers=admin_h)).json()["status"]
        repeated = sum(n - 1 for key, n in used.items() if key.startswith("GET") and n > 1)
        SUMMARY.setdefault("calls", []).append(f"{kind} {sum(used.values())} calls, {repeated} repeated GETs")
        print(
            f"github API calls for a whole lifecycle ({kind} artifacts, task {status}): {sum(used.values())}"
            f"  (goal ≤ 12); repeated GETs: {repeated}"
        )
        for key, n in sorted(used.items()):
            print(f"    {n} × {key}")
    print(f"  fake's OpenAPI violations: {len(fake.violations)}")
    SUMMARY["violations"] = len(fake.violations)


def main() -> None:
    import logging

    logging.disable(logging.INFO)  # httpx logs every request at INFO
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--json", type=Path, help="also write the key numbers here (bench/report.py)")
    args = parser.parse_args()
    asyncio.run(run(args.samples, args.files))
    if args.json:
        summary = {
            "name": "GitHub (fake): submit → draft PR visible, p95",
            "baseline_label": "10 files",
            "baseline": SUMMARY.get("small"),
            "osiris_label": f"{args.files + 2} files",
            "osiris": SUMMARY.get("large"),
            "ratio": SUMMARY.get("ratio"),
            "unit": "ms",
            "goal": "ratio <= 1.5; <= 12 API calls per lifecycle, no polling",
            "notes": "; ".join(SUMMARY.get("calls", []))
            + f"; OpenAPI violations {SUMMARY.get('violations')}",
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
