"""Review reminders at scale: 10,000 reviews waiting, the due ones computed in one statement.

Seeds N tasks in REVIEW (a published version each, the submit five hours ago) straight into a
scratch database, then times, in the same run and on the same rows:

    bare   SELECT * FROM tasks WHERE status = 'REVIEW'                (the rows, nothing else)
    due    reminders.DUE_SELECT_SQL: each task's latest activity (a LATERAL probe of its events),
           the repository's / organization's interval, quiet hours, the interval number
    claim  reminders.scan_due: the same plus the INSERT … ON CONFLICT claim and the batched jobs

and prints the medians and the ratio due/bare. The claim runs once per interval (a second scan in
the same interval claims nothing), so reminders cost one statement per interval, whatever N is.

    .venv/bin/python bench/reminders.py [--tasks 10000] [--runs 7]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _server import arguments, scratch_database, use_repository_root, write_summary

use_repository_root()

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: E402

from osiris.app import db, reminders  # noqa: E402
from osiris.app.config import Settings  # noqa: E402

SEED = """
WITH org AS (INSERT INTO organizations (slug, name) VALUES ('bench', 'bench') RETURNING id),
t AS (
  INSERT INTO tasks (org_id, title, repo, base_branch, status, artifact_count, created_at, updated_at)
  SELECT org.id, 'review ' || g, 'default', 'main', 'REVIEW', 1, now() - interval '6 hours', now()
  FROM org, generate_series(1, :n) g RETURNING id, org_id
),
a AS (
  INSERT INTO artifacts (org_id, task_id, version, kind, content, size_bytes, commit_sha)
  SELECT org_id, id, 1, 'text', 'bench', 5, md5(id::text) || '00000000' FROM t RETURNING task_id
)
INSERT INTO task_events (org_id, task_id, kind, actor_name, from_status, to_status, created_at)
SELECT t.org_id, t.id, k.kind, 'bench', k.f, k.s, now() - k.ago
FROM t CROSS JOIN (VALUES
  ('created', NULL, 'PENDING', interval '6 hours'),
  ('claim', 'PENDING', 'IN_PROGRESS', interval '5 hours 30 minutes'),
  ('submit', 'IN_PROGRESS', 'REVIEW', interval '5 hours'),
  ('published', NULL, NULL, interval '4 hours 59 minutes'),
  ('requester_notified', NULL, NULL, interval '4 hours 58 minutes')
) AS k(kind, f, s, ago)
"""


async def _timed(session, statement, params, runs: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = len((await session.execute(statement, params)).all())
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


async def main(url: str, n: int, runs: int, json_path: Path | None) -> None:
    await db.upgrade(url)
    settings = Settings(
        db={"url": url}, auth={"secret_key": "bench"}, review={"remind_after": timedelta(hours=4)}
    )
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        await session.execute(text(SEED), {"n": n})
    async with sessions() as session:
        await session.execute(text("ANALYZE"))
    now = datetime.now(UTC)
    params = {"now": now, "default_seconds": 4 * 3600, "activity": list(reminders.ACTIVITY_KINDS)}
    async with sessions() as session:
        await _timed(session, text("SELECT * FROM tasks WHERE status = 'REVIEW'"), {}, 2)  # warm up
        bare, bare_rows = await _timed(session, text("SELECT * FROM tasks WHERE status = 'REVIEW'"), {}, runs)
        due, due_rows = await _timed(session, text(reminders.DUE_SELECT_SQL), params, runs)
    async with sessions() as session, session.begin():
        start = time.perf_counter()
        claimed = await reminders.scan_due(session, settings, now=now)
        claim = time.perf_counter() - start
    async with sessions() as session, session.begin():
        again = await reminders.scan_due(session, settings, now=now)
    await engine.dispose()
    assert bare_rows == due_rows == len(claimed) == n, (bare_rows, due_rows, len(claimed))
    assert again == []
    print(f"{n} reviews waiting, {runs} runs each (medians)")
    print(f"  bare SELECT of the rows      {bare * 1000:8.1f} ms")
    print(f"  due reminders, one statement {due * 1000:8.1f} ms   ratio {due / bare:5.2f}x the bare SELECT")
    print(
        f"  claim + {n} jobs, once       {claim * 1000:8.1f} ms   (a second scan in the interval: 0 claimed)"
    )
    write_summary(
        json_path,
        name="review reminders",
        baseline_label=f"bare SELECT of {n} REVIEW rows",
        baseline=bare * 1000,
        osiris_label="due reminders (one statement)",
        osiris=due * 1000,
        ratio=due / bare,
        unit="ms",
        goal="one statement per interval",
        notes=f"claim of {n} reminders and their jobs once: {claim * 1000:.0f} ms",
    )


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as plain:
        if plain is None:
            sys.exit("no database")
        url = make_url(plain).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        asyncio.run(main(url, args.tasks, args.runs, args.json))
