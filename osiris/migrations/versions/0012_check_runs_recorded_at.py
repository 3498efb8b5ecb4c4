"""check_runs.recorded_at: when record_checks recorded a run's outcome, so the checks worker (which
may run as a restricted role, `osiris db grant-checks-role`) writes only the run's outcome columns

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("check_runs", sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True))
    # Runs finished before this revision were recorded in the same transaction that finished them.
    op.execute("UPDATE check_runs SET recorded_at = finished_at WHERE finished_at IS NOT NULL")


def downgrade() -> None:
    op.drop_column("check_runs", "recorded_at")
