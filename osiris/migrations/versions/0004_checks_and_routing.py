"""checks and routing: check_runs per artifact version; skills on tasks and users; reservations

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 18:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('users', sa.Column('skills', postgresql.ARRAY(sa.String(length=64)), server_default='{}', nullable=False))
    op.add_column('tasks', sa.Column('skills', postgresql.ARRAY(sa.String(length=64)), server_default='{}', nullable=False))
    op.add_column('tasks', sa.Column('reserved_for_id', sa.BigInteger(), nullable=True))
    op.create_foreign_key(op.f('fk_tasks_reserved_for_id_users'), 'tasks', 'users', ['reserved_for_id'], ['id'], ondelete='SET NULL')
    op.create_table('check_runs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('org_id', sa.BigInteger(), nullable=False),
    sa.Column('task_id', sa.BigInteger(), nullable=False),
    sa.Column('artifact_id', sa.BigInteger(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('commit_sha', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='running', nullable=False),
    sa.Column('results', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("mode IN ('block', 'inform')", name=op.f('ck_check_runs_mode')),
    sa.CheckConstraint("status IN ('running', 'passed', 'failed', 'error')", name=op.f('ck_check_runs_status')),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_check_runs_artifact_id_artifacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_check_runs_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_check_runs_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_check_runs')),
    sa.UniqueConstraint('artifact_id', name='uq_check_runs_artifact_id')
    )
    op.create_index(op.f('ix_check_runs_org_id'), 'check_runs', ['org_id'], unique=False)
    op.create_index('ix_check_runs_task_id_version', 'check_runs', ['task_id', 'version'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_check_runs_task_id_version', table_name='check_runs')
    op.drop_index(op.f('ix_check_runs_org_id'), table_name='check_runs')
    op.drop_table('check_runs')
    op.drop_constraint(op.f('fk_tasks_reserved_for_id_users'), 'tasks', type_='foreignkey')
    op.drop_column('tasks', 'reserved_for_id')
    op.drop_column('tasks', 'skills')
    op.drop_column('users', 'skills')
