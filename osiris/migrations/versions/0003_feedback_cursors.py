"""feedback cursors: how far each user has read a task's messages to them (MCP read_feedback)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('feedback_cursors',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('task_id', sa.BigInteger(), nullable=False),
    sa.Column('org_id', sa.BigInteger(), nullable=False),
    sa.Column('last_message_id', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_feedback_cursors_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_feedback_cursors_task_id_tasks'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_feedback_cursors_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'task_id', name=op.f('pk_feedback_cursors'))
    )
    op.create_index(op.f('ix_feedback_cursors_org_id'), 'feedback_cursors', ['org_id'], unique=False)
    op.create_index(op.f('ix_feedback_cursors_task_id'), 'feedback_cursors', ['task_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_feedback_cursors_task_id'), table_name='feedback_cursors')
    op.drop_index(op.f('ix_feedback_cursors_org_id'), table_name='feedback_cursors')
    op.drop_table('feedback_cursors')
