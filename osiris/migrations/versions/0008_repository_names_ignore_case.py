"""repository names unique ignoring case: `App` and `app` would share one directory on a
case-insensitive file system (macOS, Windows), across organizations

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 17:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    clashes = op.get_bind().execute(sa.text(
        "SELECT lower(name) AS folded, string_agg(format('%s (organization %s)', name, org_id), ', ' ORDER BY id)"
        " FROM repositories GROUP BY lower(name) HAVING count(*) > 1 ORDER BY 1"
    )).all()
    if clashes:
        # Not merged or renamed here: each name may have its own tasks, branches and owner. Someone
        # who knows which is which unregisters or renames one (DELETE FROM repositories WHERE id = …).
        listed = "; ".join(names for _, names in clashes)
        raise RuntimeError(
            "repository names that differ only in case must be resolved before upgrading "
            f"(they share one directory on a case-insensitive file system): {listed}"
        )
    op.drop_constraint('uq_repositories_name', 'repositories', type_='unique')
    op.create_index('uq_repositories_lower_name', 'repositories', [sa.text('lower(name)')], unique=True)


def downgrade() -> None:
    op.drop_index('uq_repositories_lower_name', table_name='repositories')
    op.create_unique_constraint('uq_repositories_name', 'repositories', ['name'])
