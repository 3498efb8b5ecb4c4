"""Code-host sync on GitHub (the fake from tests/github_bridge), in one run:

1. submit → draft PR visible: p95 on a 10-file and on a 50,000-file repository, and their ratio
   (goal ≤ 1.5). The app runs in-process with a real job worker; the fake serves real bare
   repositories and validates every call against GitHub's OpenAPI description.
2. GitHub API calls for a whole lifecycle (submit, changes requested, resubmit, approve, merge),
   counted by the fake (goal ≤ 12, and no call repeated to wait for something: zero polling).

    OSIRIS_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/github_sync_github.py [--samples 30] [--files 50000]

The scratch database is created on OSIRIS_BENCH_DATABASE_URL's server (else OSIRIS_TEST_DATABASE_URL's)
and dropped at the end; without either, an embedded PostgreSQL runs under a temporary folder.
"""

# ruff: noqa: E402 - the SDK (which the app imports) may be imported only once bench/ is off sys.path
from __future__ import annotations

import _server

_server.use_repository_root()  # run as a script, bench/ is first on sys.path: bench/mcp.py would hide the SDK

import asyncio
import contextlib
import logging
import secrets
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from _server import ADMIN_PASSWORD, arguments, percentile_ms, scratch_database, write_summary
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from osiris.app import accounts, db, jobs
from osiris.app.config import Settings
from osiris.app.models import Role
from osiris.github_bridge.github_client import GitHub
from osiris.github_bridge.github_host import GitHubHost
from osiris.server import create_app
from tests.support.fake_github import BOT, FakeGitHub
from tests.support.github_harness import ensure_webhook_route

SECRET = "bench-secret"
SUMMARY: dict = {}  # the key numbers, for --json
SMALL, LARGE = "acme/small", "acme/large"
APP = "def main():\n    return 1\n"


def patch(n: int) -> str:
    return (
        "diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n"
        f"@@ -1,2 +1,2 @@\n def main():\n-    return 1\n+    return {n + 2}\n"
    )


async def run(url: str, tmp: Path, samples: int, n_files: int) -> None:
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
        db={"url": url},
        data_dir=tmp / "data",
        auth={"secret_key": "bench-" + secrets.token_hex(16), "admin_password": ADMIN_PASSWORD},
        server={"run_worker": False, "log_level": "WARNING"},
        github={
            "token": SecretStr("osiris-token"),
            "api_url": "https://api.github.test",
            "webhook_secret": SecretStr(SECRET),
            "repo": {"small": SMALL, "large": LARGE},
        },
    )
    app = create_app(settings, run_background=False)
    ensure_webhook_route(app)
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
    small, large = percentile_ms(times["small"], 0.95), percentile_ms(times["large"], 0.95)
    print(f"github submit → draft PR visible, {samples} samples each (check + publish job, fake GitHub)")
    print(
        f"  small (10 files):      p95 {small:7.1f} ms   median {percentile_ms(times['small'], 0.5):6.1f} ms"
    )
    print(
        f"  large (50,000+ files): p95 {large:7.1f} ms   median {percentile_ms(times['large'], 0.5):6.1f} ms"
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
        reads = ("GET", "POST /graphql query")  # a GraphQL query is a read too
        repeated = sum(n - 1 for key, n in used.items() if key.startswith(reads) and n > 1)
        SUMMARY.setdefault("calls", []).append(
            f"{kind} {sum(used.values())} calls, {repeated} repeated reads"
        )
        print(
            f"github API calls for a whole lifecycle ({kind} artifacts, task {status}): {sum(used.values())}"
            f"  (goal ≤ 12); repeated reads: {repeated}"
        )
        for key, n in sorted(used.items()):
            print(f"    {n} × {key}")
    print(f"  fake's OpenAPI violations: {len(fake.violations)}")
    SUMMARY["violations"] = len(fake.violations)


def main() -> None:
    logging.disable(logging.INFO)  # httpx logs every request at INFO
    parser = arguments(__doc__)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--files", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="osiris-bench-gh-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        url = stack.enter_context(scratch_database(tmp))
        asyncio.run(run(url, tmp, args.samples, args.files))
    write_summary(
        args.json,
        name="GitHub (fake): submit → draft PR visible, p95",
        baseline_label="10 files",
        baseline=SUMMARY.get("small"),
        osiris_label=f"{args.files + 2} files",
        osiris=SUMMARY.get("large"),
        ratio=SUMMARY.get("ratio"),
        unit="ms",
        goal="ratio <= 1.5; <= 12 API calls per lifecycle, no polling",
        notes="; ".join(SUMMARY.get("calls", [])) + f"; OpenAPI violations {SUMMARY.get('violations')}",
    )


if __name__ == "__main__":
    main()
