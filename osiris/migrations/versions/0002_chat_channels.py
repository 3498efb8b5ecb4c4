"""chat channels: receipts, attachments, outbound notification ledger, thread indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 18:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_tasks_channel_thread', 'tasks', ['org_id', 'channel', 'channel_thread'], unique=False)
    op.create_index('ix_tasks_channel_requester', 'tasks', ['org_id', 'channel', 'requester'], unique=False)
    op.create_table('channel_receipts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('org_id', sa.BigInteger(), nullable=False),
    sa.Column('delivery_id', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('sender', sa.String(length=300), nullable=False),
    sa.Column('task_id', sa.BigInteger(), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('reply', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], name=op.f('fk_channel_receipts_delivery_id_deliveries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_channel_receipts_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_channel_receipts_task_id_tasks'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_receipts')),
    sa.UniqueConstraint('delivery_id', name=op.f('uq_channel_receipts_delivery_id'))
    )
    op.create_index('ix_channel_receipts_sender', 'channel_receipts', ['org_id', 'channel', 'sender'], unique=False)
    op.create_index(op.f('ix_channel_receipts_task_id'), 'channel_receipts', ['task_id'], unique=False)
    op.create_table('channel_attachments',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('org_id', sa.BigInteger(), nullable=False),
    sa.Column('task_id', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=True),
    sa.Column('filename', sa.String(length=300), nullable=False),
    sa.Column('content_type', sa.String(length=200), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('url', sa.String(length=2000), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_channel_attachments_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_channel_attachments_org_id_organizations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_channel_attachments_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_attachments'))
    )
    op.create_index(op.f('ix_channel_attachments_task_id'), 'channel_attachments', ['task_id'], unique=False)
    op.create_table('channel_notifications',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('task_id', sa.BigInteger(), nullable=True),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='sending', nullable=False),
    sa.Column('provider_id', sa.String(length=300), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('sending', 'sent', 'failed')", name=op.f('ck_channel_notifications_state')),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_channel_notifications_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_notifications')),
    sa.UniqueConstraint('key', name='uq_channel_notifications_key')
    )
    op.create_index(op.f('ix_channel_notifications_task_id'), 'channel_notifications', ['task_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_channel_notifications_task_id'), table_name='channel_notifications')
    op.drop_table('channel_notifications')
    op.drop_index(op.f('ix_channel_attachments_task_id'), table_name='channel_attachments')
    op.drop_table('channel_attachments')
    op.drop_index(op.f('ix_channel_receipts_task_id'), table_name='channel_receipts')
    op.drop_index('ix_channel_receipts_sender', table_name='channel_receipts')
    op.drop_table('channel_receipts')
    op.drop_index('ix_tasks_channel_requester', table_name='tasks')
    op.drop_index('ix_tasks_channel_thread', table_name='tasks')
