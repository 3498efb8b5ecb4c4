"""The PostgreSQL role the checks worker may run as (`osiris db grant-checks-role ROLE`).

The checks worker runs agents' code; if a check ever escapes its sandbox (or runs with isolation
`none`), the database credential in that worker's memory is the agent's. So that credential may do
only what `run_checks` does (`check_runs.py`): read the task, the version and its check run (and,
on GitHub, which repository a task's repo name maps to); write a run's outcome columns; take its
own jobs from pgqueuer's table and enqueue `record_checks` (row-level security on `pgqueuer`
hides every other kind of job from it); and pgqueuer's bookkeeping. It cannot change a task, write
an event or a message, read a user, a token, a client secret, a webhook secret or a channel's
settings, or touch another job: PostgreSQL refuses (`permission denied`). `record_checks`, in a
worker with the ordinary role, turns a run's outcome into events and the task's move.

A compromised checks worker can still forge check outcomes (a check's result is that worker's to
give), which decides whether reviewers are asked, never an approval.

Granting is idempotent and converges: every privilege the role had on this schema's tables and
sequences is revoked first, so a grant run after each migration (the chart's migration Job does)
leaves exactly this set. The role must exist already (creating roles needs CREATEROLE, which the
application's role should not have) and must not be a superuser, bypass row-level security, or be
or belong to the role that owns the tables. The checks worker itself never migrates
(`wait_for_schema`).
"""

from __future__ import annotations

import asyncio
import logging
import re

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from osiris.app import db
from osiris.app.check_runs import RECORD_CHECKS, RUN_CHECKS

log = logging.getLogger(__name__)

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# pgqueuer's rows the role may see, take, finish and insert.
JOB_KINDS = (RUN_CHECKS, RECORD_CHECKS)
POLICY = "osiris_checks_jobs_only"
OTHERS_POLICY = "osiris_everyone"

# table -> what the role may do there. Column lists are PostgreSQL column privileges.
GRANTS: dict[str, tuple[str, ...]] = {
    "alembic_version": ("SELECT",),  # the start-up check that the schema is at the latest migration
    "tasks": ("SELECT",),
    "artifacts": ("SELECT",),
    "check_runs": ("SELECT", "UPDATE (status, results, finished_at, duration_ms)"),
    "repositories": ("SELECT (id, org_id, name, github_repo)",),
    "pgqueuer": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "pgqueuer_log": ("SELECT", "INSERT", "UPDATE"),
    "pgqueuer_statistics": ("SELECT", "INSERT", "UPDATE"),
}
SEQUENCES = ("pgqueuer_id_seq", "pgqueuer_log_id_seq", "pgqueuer_statistics_id_seq")


class RoleRefused(ValueError):
    """The named role cannot be the checks worker's restricted role."""


def grant_statements(role: str) -> list[str]:
    """The SQL, for a role name already checked against ROLE_NAME."""
    if not ROLE_NAME.match(role):
        raise RoleRefused(f"{role!r} is not a plain PostgreSQL role name (lower-case letters, digits, _)")
    r = f'"{role}"'
    kinds = ", ".join(f"'{k}'" for k in JOB_KINDS)
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {r}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {r}",
        f"GRANT USAGE ON SCHEMA public TO {r}",
    ]
    for table, privileges in GRANTS.items():
        statements += [f"GRANT {p} ON {table} TO {r}" for p in privileges]
    statements += [f"GRANT USAGE ON SEQUENCE {s} TO {r}" for s in SEQUENCES]
    statements += [
        # Row-level security on the queue: the table's owner (the application) is not subject to
        # it; every other role keeps every row (the permissive policy); this role also meets the
        # restrictive one, which hides and refuses every kind of job but its own.
        "ALTER TABLE pgqueuer ENABLE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS {OTHERS_POLICY} ON pgqueuer",
        f"CREATE POLICY {OTHERS_POLICY} ON pgqueuer AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)",
        f"DROP POLICY IF EXISTS {POLICY}_{role} ON pgqueuer",
        f"CREATE POLICY {POLICY}_{role} ON pgqueuer AS RESTRICTIVE FOR ALL TO {r} "
        f"USING (entrypoint IN ({kinds})) WITH CHECK (entrypoint IN ({kinds}))",
    ]
    return statements


async def grant(session: AsyncSession, role: str) -> None:
    """Give `role` exactly the checks worker's privileges (in the caller's transaction)."""
    if not ROLE_NAME.match(role):
        raise RoleRefused(f"{role!r} is not a plain PostgreSQL role name (lower-case letters, digits, _)")
    found = (
        await session.execute(
            text(
                "SELECT rolsuper, rolbypassrls, rolname = current_user AS is_me,"
                " pg_has_role(rolname, current_user, 'MEMBER') AS inherits_mine,"
                " pg_has_role(rolname, (SELECT tableowner FROM pg_tables"
                "   WHERE schemaname = 'public' AND tablename = 'tasks'), 'MEMBER') AS inherits_owner"
                " FROM pg_roles WHERE rolname = :role"
            ),
            {"role": role},
        )
    ).one_or_none()
    if found is None:
        raise RoleRefused(
            f"role {role!r} does not exist: create it first, e.g. CREATE ROLE {role} LOGIN PASSWORD '…'"
        )
    if found.rolsuper or found.rolbypassrls:
        raise RoleRefused(f"role {role!r} is a superuser or bypasses row-level security")
    if found.is_me or found.inherits_mine or found.inherits_owner:
        raise RoleRefused(f"role {role!r} is, or is a member of, the role that owns OSIRIS's tables")
    for statement in grant_statements(role):
        await session.execute(text(statement))


async def wait_for_schema(sessions: async_sessionmaker[AsyncSession], *, pause: float = 2.0) -> None:
    """Until the database is at the newest migration, which the checks worker never applies itself:
    its role may not (and on PostgreSQL before 15, where any role may create tables in `public`, a
    checks worker that migrated an empty database would own OSIRIS's tables)."""
    head, told = db.head_revision(), False
    while True:
        try:
            async with sessions() as session:
                found = list(await session.scalars(text("SELECT version_num FROM alembic_version")))
        except DBAPIError:  # no schema yet, or not readable (no grant yet)
            found = []
        if found and (head is None or found == [head]):
            return
        if not told:
            log.warning("checks worker: waiting for the migrations (the migration Job, `osiris migrate`)")
            told = True
        await asyncio.sleep(pause)
