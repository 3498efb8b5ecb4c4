"""Attack: an agent's submitted code, run by the pre-review checks, goes after the server.

A real `osiris serve` (embedded PostgreSQL, local git host, in-process worker) runs `sh attack.sh`
on every version of its default repository in block mode, with secrets in its environment. As an
agent over REST we claim a task and submit the attack: move `main` of the live bare repository to
our own branch, read every /proc/*/environ and `<data dir>/secret.key` (hex-encoded, as an
exfiltrating attacker would, so that output redaction cannot hide a leak from this test), write into
the data dir and the repository, print a secret it smuggled in, and leave a `setsid` double-forked
child that writes a marker after the time limit. Then we check that none of it worked, and that a
token forged with whatever it found approves nothing. Both isolation levels are forced in turn.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import psutil
import pytest

from bench._server import free_port, serving
from osiris.app import check_runner, sandbox
from osiris.app.config import Settings

TIME_LIMIT = 5  # seconds a check may run
LATE = 8  # the escaped child writes its marker this long after it started

ATTACK = r"""
REPO='{repo}'; DATA='{data}'; OUT='{out}'; BRANCH='osiris/task-{task_id}'
loot() {{ od -An -v -tx1 | tr -d ' \n'; }}
echo inside > "$OUT/control"  # proves the marker's folder is writable from here
git --git-dir="$REPO" update-ref refs/heads/main "refs/heads/$BRANCH" && echo MOVED-MAIN
cp "$REPO/refs/heads/$BRANCH" "$REPO/refs/heads/main" && echo WROTE-MAIN
echo "LOOT-ENVIRON:$(cat /proc/[0-9]*/environ | tr '\0' '\n' | grep -aE 'OSIRIS|DATABASE' | loot)"
echo "LOOT-KEY:$(cat "$DATA/secret.key" | loot)"
test -e .git && echo "LOOT-GITLINK:$(cat .git | loot)"
echo pwned > "$DATA/pwned-by-check" && echo WROTE-DATA
echo pwned > "$REPO/pwned-by-check" && echo WROTE-REPO
cat smuggled.txt
( setsid sh -c "sleep {late}; echo late > '$OUT/marker'" & )
echo ATTACK-DONE
sleep 60
"""


def _secrets() -> dict[str, str]:
    return {
        name: f"{name.lower()}-{secrets.token_hex(12)}"
        for name in (
            "OSIRIS_ADMIN_PASSWORD",
            "OSIRIS_GITHUB_WEBHOOK_SECRET",
            "OSIRIS_SLACK_SIGNING_SECRET",
            "OSIRIS_EMAIL_WEBHOOK_SECRET",
            "OSIRIS_TELEGRAM_WEBHOOK_SECRET",
        )
    }


@contextmanager
def serve(tmp: Path, env: dict[str, str], *, workers: int = 1) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_") and k != "DATABASE_URL"}
    full |= {"OSIRIS_DATA_DIR": str(tmp / "data"), "OSIRIS_PORT": str(port)} | env
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "osiris.cli", "serve", "--workers", str(workers)]
    with serving(cmd, url, ready="/readyz", env=full, log=tmp / "serve.log", cwd=tmp) as (proc, _):
        yield url, proc


def _environ_of_tree(pid: int) -> bytes:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    found = b""
    for p in procs:
        if "postgres" in p.name():
            continue
        try:
            found += Path(f"/proc/{p.pid}/environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def _loot(output: str) -> bytes:
    return b"".join(bytes.fromhex(m) for m in re.findall(r"LOOT-[A-Z]+:([0-9a-f]*)", output))


def _main(repo: Path) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "refs/heads/main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def marker_dir() -> Iterator[Path]:
    """Outside the temp root a check gets privately (and outside pytest's, which is there too): a
    folder anyone may write, so only death keeps the escaped child from writing its marker."""
    path = Path(tempfile.mkdtemp(prefix="osiris-attack-", dir="/var/tmp"))
    path.chmod(0o777)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the namespace level needs root")


@pytest.mark.parametrize("level", [pytest.param("namespace", marks=needs_root), "userns"])
async def test_an_agents_check_cannot_reach_the_server(level: str, tmp_path: Path, marker_dir: Path) -> None:
    secret_env = _secrets()
    env = secret_env | {
        "OSIRIS_CHECKS": '{"default": ["sh attack.sh"]}',
        "OSIRIS_CHECKS_MODE": '{"default": "block"}',
        "OSIRIS_CHECKS_TIMEOUT_SECONDS": str(TIME_LIMIT),
        "OSIRIS_CHECKS_OUTPUT_BYTES": str(1024 * 1024),
        "OSIRIS_CHECKS_ISOLATION": level,
        "OSIRIS_LOG_LEVEL": "INFO",
    }
    data = tmp_path / "data"
    repo = data / "repos" / "default.git"
    with serve(tmp_path, env) as (url, proc):
        main_before = _main(repo)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            password = secret_env["OSIRIS_ADMIN_PASSWORD"]
            r = await client.post("/api/v1/auth/token", data={"username": "admin", "password": password})
            admin_jwt = r.json()["access_token"]
            admin = {"Authorization": f"Bearer {admin_jwt}"}
            key = (data / "secret.key").read_text().strip()  # made by the first sign-in
            hunted = {**secret_env, "secret.key": key}
            # Settings read: the server's own /proc environ no longer holds any secret.
            environ = _environ_of_tree(proc.pid)
            assert b"OSIRIS_CHECKS_ISOLATION" in environ  # the file was read, and is not empty
            assert not [n for n, v in hunted.items() if v.encode() in environ]
            await client.post("/api/v1/users", json={"username": "mallory", "role": "agent"}, headers=admin)
            r = await client.post("/api/v1/tokens", json={"name": "m", "username": "mallory"}, headers=admin)
            agent = {"Authorization": f"Bearer {r.json()['token']}"}
            task_id = (await client.post("/api/v1/tasks", json={"title": "t"}, headers=admin)).json()["id"]
            assert (await client.post(f"/api/v1/tasks/{task_id}/claim", headers=agent)).status_code == 200
            script = ATTACK.format(repo=repo, data=data, out=marker_dir, task_id=task_id, late=LATE)
            files = {"attack.sh": script, "smuggled.txt": secret_env["OSIRIS_TELEGRAM_WEBHOOK_SECRET"] + "\n"}
            r = await client.post(
                f"/api/v1/tasks/{task_id}/artifacts", json={"content": files, "kind": "files"}, headers=agent
            )
            assert r.status_code == 201, r.text
            submitted = time.monotonic()

            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                events = (await client.get(f"/api/v1/tasks/{task_id}/events", headers=admin)).json()
                if any(e["kind"] == "checks_completed" for e in events):
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("no check result in 90 s")
            finished = time.monotonic()
            run = (await client.get(f"/api/v1/tasks/{task_id}/checks", headers=admin)).json()[0]
            task = (await client.get(f"/api/v1/tasks/{task_id}", headers=agent)).json()
            feedback = "\n".join(m["body"] for m in task["messages"] if m["source"] == "checks")

            # It ran, in the sandbox asked for, and was killed at its time limit.
            result = run["results"][0]
            output = result["output"]
            assert "ATTACK-DONE" in output, output[-3000:]
            assert result["timed_out"] and run["status"] == "failed", run
            assert finished - submitted < TIME_LIMIT + 30  # the escaped child's pipe held nothing up
            assert task["status"] == "IN_PROGRESS"  # block mode: back to the agent, unreviewed
            assert (marker_dir / "control").read_text() == "inside\n"

            # 1. The live repository: main did not move, nothing was written into it.
            assert _main(repo) == main_before
            assert "MOVED-MAIN" not in output and "WROTE-MAIN" not in output
            assert not (repo / "pwned-by-check").exists() and "WROTE-REPO" not in output
            # 2, 3. No secret of the server's, nor the signing key, was found; no link into the repo.
            loot = _loot(output)
            assert not [n for n, v in hunted.items() if v.encode() in loot], loot[:2000]
            assert "LOOT-GITLINK" not in output
            # 4. Nothing was written into the data dir.
            assert not (data / "pwned-by-check").exists() and "WROTE-DATA" not in output
            # 5. A secret the check did print (smuggled in by the agent) is redacted everywhere.
            for shown in (output, feedback, str(run)):
                assert not [n for n, v in hunted.items() if v in shown]
            assert "[redacted]" in output and "[redacted]" in feedback

            # Forged tokens: the real key would be accepted (so reading it was worth stopping) …
            claims = jwt.decode(admin_jwt, options={"verify_signature": False})
            forged = {**claims, "exp": datetime.now(UTC) + timedelta(hours=1)}
            with_key = jwt.encode(forged, key, algorithm="HS256")
            r = await client.get(f"/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {with_key}"})
            assert r.status_code == 200
            # … but whatever the attack found signs nothing that approves.
            candidates = {w for w in re.split(rb"[\s=\x00]+", loot) if len(w) >= 16}
            for candidate in candidates:
                token = jwt.encode(forged, candidate.decode("utf-8", "replace"), algorithm="HS256")
                r = await client.post(
                    f"/api/v1/tasks/{task_id}/approve", headers={"Authorization": f"Bearer {token}"}
                )
                assert r.status_code == 401, r.text
            assert (await client.get(f"/api/v1/tasks/{task_id}", headers=admin)).json()["status"] != "DONE"

        # 6. The double-forked child died with the check: its marker never appears.
        await asyncio.sleep(max(0.0, submitted + LATE + TIME_LIMIT + 2 - time.monotonic()))
        assert not (marker_dir / "marker").exists(), "a child of the check outlived its time limit"


@pytest.mark.parametrize("level", [pytest.param("namespace", marks=needs_root), "userns", "none"])
async def test_timeout_kills_a_double_forked_setsid_child(
    level: str, marker_dir: Path, tmp_path: Path
) -> None:
    """At every level, `none` included (cgroup.kill here, or our HOME's processes), the timeout ends
    the whole tree, and an escaped child holding the output pipe does not hold up the job."""
    settings = Settings(
        data_dir=tmp_path / "data", sandbox={"isolation": level}, db={"url": None}, auth={"secret_key": None}
    )
    box = sandbox.choose(settings)
    assert box.level == level
    work = Path(tempfile.mkdtemp(prefix="osiris-check-"))
    try:
        (work / "src").mkdir()
        (work / "home").mkdir()
        box.prepare(work)
        started = time.monotonic()
        result = await check_runner.run_command(
            f"( setsid sh -c 'sleep 3; echo late > {marker_dir}/marker' & ); echo started; sleep 60",
            cwd=work / "src",
            env=check_runner.check_env(work / "home", "/usr/bin:/bin"),
            time_limit=1.0,
            max_output=1000,
            box=box,
        )
        assert time.monotonic() - started < 4  # not the 5 s wait for a pipe someone still holds
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    assert result.timed_out and "started" in result.output
    await asyncio.sleep(4)
    assert not (marker_dir / "marker").exists(), "the setsid child outlived the check's timeout"


@pytest.mark.parametrize("level", [pytest.param("namespace", marks=needs_root), "userns"])
@pytest.mark.parametrize("network", [True, False])
async def test_checks_network_false_leaves_a_check_only_its_own_loopback(
    level: str, network: bool, tmp_path: Path
) -> None:
    """`OSIRIS_CHECKS_NETWORK=false`: a check cannot reach a port the server's host listens on
    (here a listener of this test on 127.0.0.1, standing for the API or a database); with the
    default it can, which is what the setting is for."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    settings = Settings(
        data_dir=tmp_path / "data",
        sandbox={"isolation": level, "network": network},
        db={"url": None},
        auth={"secret_key": None},
    )
    box = sandbox.choose(settings)
    work = Path(tempfile.mkdtemp(prefix="osiris-check-"))
    try:
        (work / "src").mkdir()
        (work / "home").mkdir()
        box.prepare(work)
        probe = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo reached || echo refused"
        result = await check_runner.run_command(
            f"bash -c '{probe}' 2>&1",
            cwd=work / "src",
            env=check_runner.check_env(work / "home", "/usr/bin:/bin"),
            time_limit=10.0,
            max_output=1000,
            box=box,
        )
    finally:
        listener.close()
        await asyncio.to_thread(shutil.rmtree, work, True)
    assert ("reached" in result.output) is network, result.output


def test_the_server_keeps_no_secret_in_its_environment_with_workers(tmp_path: Path) -> None:
    """`serve --workers 2`: the workers still get their settings (the password logs in), and no
    process of the tree shows a secret in /proc/<pid>/environ."""
    secret_env = _secrets()
    with serve(tmp_path, secret_env | {"OSIRIS_LOG_LEVEL": "WARNING"}, workers=2) as (url, proc):
        tree = [p for p in psutil.Process(proc.pid).children(recursive=True) if "postgres" not in p.name()]
        assert len(tree) >= 2
        for _ in range(4):  # fresh connections, so both workers answer
            with httpx.Client(base_url=url, timeout=10) as client:
                r = client.post(
                    "/api/v1/auth/token",
                    data={"username": "admin", "password": secret_env["OSIRIS_ADMIN_PASSWORD"]},
                )
                assert r.status_code == 200, r.text
        environ = _environ_of_tree(proc.pid)
        assert b"OSIRIS_DATA_DIR" in environ
        assert not [n for n, v in secret_env.items() if v.encode() in environ]
