"""Screenshots of the portal for the README: `make screenshots` (or `.venv/bin/python scripts/screenshots.py`).

Starts a fresh `osiris serve` (the embedded default, local git host) on a free port with a temporary
data dir, seeds it through the REST API only, as people and agents would, then signs in to the portal
as `admin` in Debian's chromium (Playwright's Python package, no Playwright browser download) and
writes full-page PNGs to docs/screenshots/. Stops the server and removes the data dir at the end.
Any failed step stops the run with a non-zero exit and a message naming the step.

    board.png          the board, a task in every column
    task-review.png    a task in review: Files changed (a modification with deleted lines, a comment
                       on a line) and the review form
    task-compare.png   the same task's Work section: its versions and "Compare versions" v1 → v2
    task-done.png      a closed task: who approved it, when, the version, commit and merge commit
    admin-users.png    /admin/users
    admin-audit.png    /admin/audit
    integrations.png   /admin/integrations
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
OSIRIS = ROOT / ".venv" / "bin" / "osiris"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTH = 1280
MAX_HEIGHT = 3000  # a taller page is clipped to its first MAX_HEIGHT pixels


class Failed(Exception):
    """A step of the run went wrong; the message says which and why."""


def step(name: str) -> None:
    print(f"screenshots: {name}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise Failed(f"{what}: HTTP {response.status_code} (wanted {status}): {response.text[:500]}")
    return response.json() if response.content else None


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    raise Failed(f"timed out after {timeout:.0f}s waiting for {what}")


# --- the server --------------------------------------------------------------------------------


class Server:
    """`osiris serve` on a free loopback port with its own data dir (the embedded default)."""

    def __init__(self, data_dir: Path, password: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log = data_dir.parent / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OSIRIS_") and k != "DATABASE_URL"}
        env.update(
            OSIRIS_DATA_DIR=str(data_dir),
            OSIRIS_ADMIN_PASSWORD=password,
            OSIRIS_HOST="127.0.0.1",
            OSIRIS_PORT=str(self.port),
            OSIRIS_PUBLIC_URL=self.url,
        )
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        step(f"starting osiris serve on {self.url} (data dir {self.data_dir})")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own .venv/bin/osiris, fixed arguments
                [str(OSIRIS), "serve"], cwd=self.data_dir.parent, env=self.env, stdout=log, stderr=log
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise Failed(f"osiris serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for("/readyz", ready, timeout=180)
        except Failed as exc:
            raise Failed(f"{exc}\n{self.tail()}") from None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        step("stopping the server")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        # pgserver stops the embedded PostgreSQL when its last user exits; wait for it to go.
        pid_file = next(self.data_dir.rglob("postmaster.pid"), None) if self.data_dir.exists() else None
        if pid_file is not None:
            deadline = time.monotonic() + 30
            while pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)


# --- seeding, through the REST API only ----------------------------------------------------------


class Seed:
    def __init__(self, url: str, password: str) -> None:
        self.url = url
        r = httpx.post(f"{url}/api/v1/auth/token", data={"username": "admin", "password": password})
        token = expect(r, 200, "signing in as admin (POST /api/v1/auth/token)")["access_token"]
        self.admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.agents: dict[str, httpx.Client] = {}

    def close(self) -> None:
        self.admin.close()
        for client in self.agents.values():
            client.close()

    def user(self, username: str, role: str, skills: list[str] | None = None) -> None:
        body: dict[str, Any] = {"username": username, "role": role, "skills": skills or []}
        if role != "agent":
            body["password"] = secrets.token_urlsafe(16)
        expect(self.admin.post("/api/v1/users", json=body), 201, f"creating user {username}")

    def agent(self, username: str, skills: list[str]) -> httpx.Client:
        self.user(username, "agent", skills)
        created = expect(
            self.admin.post("/api/v1/tokens", json={"name": f"{username} laptop", "username": username}),
            201,
            f"creating a token for {username}",
        )
        client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {created['token']}"}, timeout=30
        )
        self.agents[username] = client
        return client

    def task(
        self, title: str, description: str, *, priority: str = "normal", requester: str | None = None
    ) -> int:
        body = {"title": title, "description": description, "priority": priority, "requester": requester}
        return expect(self.admin.post("/api/v1/tasks", json=body), 201, f"creating task {title!r}")["id"]

    def claim(self, agent: httpx.Client, task: int) -> None:
        expect(agent.post(f"/api/v1/tasks/{task}/claim"), 200, f"claiming task {task}")

    def submit(self, agent: httpx.Client, task: int, files: dict[str, str], summary: str) -> int:
        body = {"content": files, "kind": "files", "summary": summary}
        r = agent.post(f"/api/v1/tasks/{task}/artifacts", json=body)
        return expect(r, 201, f"submitting a version of task {task}")["artifact"]["version"]

    def published(self, task: int, version: int) -> str:
        """The version's commit, once the worker has published it."""

        def probe() -> str | None:
            r = self.admin.get(f"/api/v1/tasks/{task}/artifacts/{version}")
            return expect(r, 200, f"reading version {version} of task {task}")["commit_sha"]

        return wait_for(f"task {task} version {version} to be published", probe)

    def approve_and_merge(self, task: int, version: int, comment: str) -> None:
        head = self.published(task, version)
        body = {"version": version, "head_sha": head, "comment": comment}
        expect(self.admin.post(f"/api/v1/tasks/{task}/approve", json=body), 200, f"approving task {task}")

        def merged() -> bool:
            r = self.admin.get(f"/api/v1/tasks/{task}/change-request")
            return expect(r, 200, f"reading task {task}'s change request")["state"] == "merged"

        wait_for(f"task {task} to be merged into main", merged)
        status = expect(self.admin.get(f"/api/v1/tasks/{task}"), 200, f"reading task {task}")["status"]
        if status != "DONE":
            raise Failed(f"task {task} is {status} after its approval, not DONE")


GREET_V1 = '''"""Greetings for the welcome screen."""

import datetime

DEFAULT_NAME = "friend"


def greet(name=None):
    """Say hello."""
    if name is None:
        name = DEFAULT_NAME
    return "Hello, " + name + "!"


def greet_legacy(name):
    # Kept for the old mobile client (retired in 2024).
    return "Hi " + name


def part_of_day(now=None):
    now = now or datetime.datetime.now()
    if now.hour < 12:
        return "morning"
    if now.hour < 18:
        return "afternoon"
    return "evening"
'''

GREETING_DOC = """# Greetings

`greet(name)` returns the line shown on the welcome screen. Without a name it greets a friend.
"""

GREET_TEST = """from app.greet import greet


def test_greets_a_friend_by_default():
    assert greet() == "Hello, friend!"
"""


def greet_v2(fixed: bool) -> str:
    """The review task's version: greet by part of day, the legacy helper gone."""
    guard = '    if not name.strip():\n        raise ValueError("name must not be blank")\n' if fixed else ""
    return f'''"""Greetings for the welcome screen."""

import datetime

DEFAULT_NAME = "friend"


def greet(name: str = DEFAULT_NAME, now: datetime.datetime | None = None) -> str:
    """Say good morning, afternoon or evening to `name`."""
{guard}    return f"Good {{part_of_day(now)}}, {{name}}!"


def part_of_day(now=None):
    now = now or datetime.datetime.now()
    if now.hour < 12:
        return "morning"
    if now.hour < 18:
        return "afternoon"
    return "evening"
'''


def line_of(text: str, needle: str) -> int:
    for n, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return n
    raise Failed(f"no line with {needle!r} in the seeded file")


def seed(server: Server, password: str) -> dict[str, int]:
    step("seeding users, agents and tasks through the REST API")
    s = Seed(server.url, password)
    try:
        s.user("dana.reviewer", "reviewer")
        s.user("sam.lead", "admin")
        claude = s.agent("claude-code", ["python", "docs"])
        cursor = s.agent("cursor-agent", ["python", "frontend"])
        s.agent("nightly-bot", ["ops"])

        # DONE: a first version adds a couple of files; approved, merged into main.
        done = s.task(
            "Add a greeting module",
            "The welcome screen needs a greet() helper and a short doc.",
            priority="high",
            requester="+44 7700 900123 (WhatsApp)",
        )
        s.claim(claude, done)
        v = s.submit(
            claude,
            done,
            {"app/greet.py": GREET_V1, "docs/greeting.md": GREETING_DOC, "tests/test_greet.py": GREET_TEST},
            "Adds app/greet.py with greet() and part_of_day(), a doc page and a test.",
        )
        step(f"task {done}: approving version {v} and waiting for the merge")
        s.approve_and_merge(done, v, "Looks good: small, tested, documented.")

        # REVIEW: a version that modifies greet.py (now on main) and deletes lines of it; a comment
        # on a line, changes requested, a second version, and one more open comment on a line.
        review = s.task(
            "Greet by time of day and drop greet_legacy()",
            "Say good morning/afternoon/evening with the user's name. The old mobile client is gone, "
            "so greet_legacy() can go.",
            priority="urgent",
            requester="maria@example.com (email)",
        )
        s.claim(cursor, review)
        first = greet_v2(fixed=False)
        v1 = s.submit(
            cursor, review, {"app/greet.py": first}, "greet() by part of day; greet_legacy() removed."
        )
        head1 = s.published(review, v1)
        comment = {
            "path": "app/greet.py",
            "line": line_of(first, 'return f"Good'),
            "side": "new",
            "body": "A blank name gives “Good morning, !”. Refuse it (ValueError) before formatting.",
            "version": v1,
            "head_sha": head1,
        }
        expect(
            s.admin.post(f"/api/v1/tasks/{review}/review-comments", json=comment), 201, "commenting on a line"
        )
        r = s.admin.post(
            f"/api/v1/tasks/{review}/request-changes",
            json={"feedback": "Nearly there: handle a blank name (see my comment on the return line)."},
        )
        expect(r, 200, f"requesting changes on task {review}")
        second = greet_v2(fixed=True)
        v2 = s.submit(cursor, review, {"app/greet.py": second}, "Refuses a blank name with ValueError.")
        head2 = s.published(review, v2)
        comment = {
            "path": "app/greet.py",
            "line": line_of(second, "DEFAULT_NAME = "),
            "side": "new",
            "body": "Could the default come from settings rather than a constant?",
            "version": v2,
            "head_sha": head2,
        }
        expect(
            s.admin.post(f"/api/v1/tasks/{review}/review-comments", json=comment), 201, "commenting on a line"
        )

        # Cancelled: claimed, then cancelled with a reason.
        cancelled = s.task(
            "Rewrite the frontend in a new framework",
            "Move the portal's pages to a single-page app.",
            priority="low",
            requester="#eng-web (Slack)",
        )
        s.claim(claude, cancelled)
        r = s.admin.post(
            f"/api/v1/tasks/{cancelled}/cancel",
            json={"reason": "Out of scope for this quarter; the server-rendered portal stays."},
        )
        expect(r, 200, f"cancelling task {cancelled}")

        # In progress and pending, so every column of the board has a card.
        working = s.task(
            "Add a /healthz check for the mail relay",
            "Report the SMTP relay in /readyz.",
            requester="ops@example.com (email)",
        )
        s.claim(claude, working)
        s.task(
            "Document the release process", "Steps from tag to deploy.", requester="octocat (GitHub issue)"
        )
        s.task(
            "Fix the typo on the sign-in page",
            "“Sing in” → “Sign in”.",
            priority="high",
            requester="+1 202 555 0143 (WhatsApp)",
        )
        return {"done": done, "review": review, "cancelled": cancelled}
    finally:
        s.close()


# --- the browser -------------------------------------------------------------------------------


def shoot(server: Server, password: str, tasks: dict[str, int], out: Path) -> list[Path]:
    from playwright.sync_api import expect as pw_expect
    from playwright.sync_api import sync_playwright

    written: list[Path] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": WIDTH, "height": 900})
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            step("signing in to the portal as admin")
            page.goto(f"{server.url}/login")
            page.get_by_label("User name").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            pw_expect(page.get_by_role("heading", name="Board", exact=True)).to_be_visible()

            def save(name: str, path: str, ready: Callable[[], None]) -> None:
                step(f"{name}: {path}")
                response = page.goto(f"{server.url}{path}")
                if response is None or response.status != 200:
                    status = response.status if response else "no response"
                    raise Failed(f"{path} answered {status}, not 200")
                if "/login" in page.url:
                    raise Failed(f"{path} sent the browser to the sign-in page")
                ready()
                page.wait_for_load_state("networkidle")
                height = page.evaluate("document.documentElement.scrollHeight")
                target = out / name
                if height > MAX_HEIGHT:
                    page.screenshot(
                        path=str(target),
                        full_page=True,
                        clip={"x": 0, "y": 0, "width": WIDTH, "height": MAX_HEIGHT},
                    )
                else:
                    page.screenshot(path=str(target), full_page=True)
                written.append(target)

            def visible(selector: str, text: str | None = None) -> Callable[[], None]:
                def check() -> None:
                    where = page.locator(selector).first
                    pw_expect(where).to_be_visible()
                    if text is not None:
                        pw_expect(where).to_contain_text(text)

                return check

            def board_ready() -> None:
                pw_expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
                for status in ("PENDING", "IN_PROGRESS", "REVIEW", "DONE", "REJECTED"):
                    pw_expect(page.locator(f"#col-{status} .card").first).to_be_visible()

            review, done = tasks["review"], tasks["done"]
            save("board.png", "/", board_ready)

            def review_ready() -> None:
                removed = page.locator('#changes details.diff-file[data-path="app/greet.py"] tr.ln-removed')
                pw_expect(removed.first).to_be_visible()
                pw_expect(page.locator("#changes")).to_contain_text("greet_legacy")
                pw_expect(page.locator("#decision form.review-form")).to_be_visible()

            save("task-review.png", f"/tasks/{review}", review_ready)

            def compare_ready() -> None:
                pw_expect(page.locator("#compare")).to_be_visible()
                pw_expect(page.locator("#work figure.code.diff")).to_contain_text("ValueError")
                page.locator("#work").scroll_into_view_if_needed()

            step("task-compare.png: the Work section of the task in review, v1 → v2")
            page.goto(f"{server.url}/tasks/{review}?from=1&to=2#compare")
            compare_ready()
            page.wait_for_load_state("networkidle")
            target = out / "task-compare.png"
            page.locator("#work").screenshot(path=str(target))
            written.append(target)

            save("task-done.png", f"/tasks/{done}", visible("#closure", "Approved by"))
            save("admin-users.png", "/admin/users", visible("main", "claude-code"))
            save("admin-audit.png", "/admin/audit", visible("main", "merged"))
            save("integrations.png", "/admin/integrations", visible("main", "WhatsApp"))
            context.close()
        finally:
            browser.close()
    if errors:
        raise Failed(f"script errors on the portal's pages: {errors}")
    return written


def shrink(path: Path) -> None:
    """Fail if a screenshot is not a PNG or is unreasonably large."""
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise Failed(f"{path} is not a PNG")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    if height > MAX_HEIGHT + 10 or width > WIDTH + 10:
        raise Failed(f"{path} is {width}x{height}, larger than {WIDTH}x{MAX_HEIGHT}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    args = parser.parse_args()
    if not OSIRIS.exists():
        print(f"screenshots: {OSIRIS} is missing: run `make install-test` first", file=sys.stderr)
        return 1
    if not Path(CHROMIUM).exists():
        print(f"screenshots: {CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    temp = Path(tempfile.mkdtemp(prefix="osiris-shots-"))
    server = Server(temp / "data", password)
    server.data_dir.mkdir()
    try:
        server.start()
        tasks = seed(server, password)
        written = shoot(server, password, tasks, args.out)
        for path in written:
            shrink(path)
    except Failed as exc:
        print(f"screenshots: FAILED: {exc}", file=sys.stderr)
        print(f"--- server log (last lines) ---\n{server.tail()}", file=sys.stderr)
        return 1
    except Exception as exc:  # a browser timeout, a refused connection: still one clear line
        detail = str(exc).strip().splitlines()[:12]  # Playwright appends a whole page snapshot
        print(f"screenshots: FAILED: {type(exc).__name__}: " + "\n".join(detail), file=sys.stderr)
        print(f"--- server log (last lines) ---\n{server.tail()}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        shutil.rmtree(temp, ignore_errors=True)
    for path in written:
        print(
            f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({path.stat().st_size // 1024} KiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
