"""review reminders: per-organization and per-repository intervals, quiet hours, reviewers' chat
addresses (user_channels), and the reminder ledger (one row per task, activity and interval)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("review_remind_after_seconds", sa.Integer(), nullable=True))
    op.add_column("organizations", sa.Column("quiet_hours_start", sa.Time(), nullable=True))
    op.add_column("organizations", sa.Column("quiet_hours_end", sa.Time(), nullable=True))
    op.add_column(
        "organizations", sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False)
    )
    op.add_column("repositories", sa.Column("review_remind_after_seconds", sa.Integer(), nullable=True))
    op.create_table(
        "user_channels",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("verify_code_hash", sa.String(length=64), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_user_channels_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_channels_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_channels")),
        sa.UniqueConstraint("user_id", "channel", "address", name="uq_user_channels_user_channel_address"),
    )
    op.create_index(op.f("ix_user_channels_org_id"), "user_channels", ["org_id"], unique=False)
    op.create_index(op.f("ix_user_channels_user_id"), "user_channels", ["user_id"], unique=False)
    op.create_index(
        "uq_user_channels_verified_address",
        "user_channels",
        ["channel", "address"],
        unique=True,
        postgresql_where=sa.text("verified_at IS NOT NULL"),
    )
    op.create_table(
        "review_reminders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("anchor_event_id", sa.BigInteger(), nullable=False),
        sa.Column("interval_no", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("head_sha", sa.String(length=64), nullable=False),
        sa.Column("escalated", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "reply_code",
            sa.String(length=32),
            server_default=sa.text("replace(gen_random_uuid()::text, '-', '')"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_review_reminders_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_review_reminders_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_reminders")),
        sa.UniqueConstraint("task_id", "anchor_event_id", "interval_no", name="uq_review_reminders_interval"),
    )
    op.create_index(op.f("ix_review_reminders_org_id"), "review_reminders", ["org_id"], unique=False)
    op.create_index("ix_review_reminders_task_id_id", "review_reminders", ["task_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_review_reminders_task_id_id", table_name="review_reminders")
    op.drop_index(op.f("ix_review_reminders_org_id"), table_name="review_reminders")
    op.drop_table("review_reminders")
    op.drop_index("uq_user_channels_verified_address", table_name="user_channels")
    op.drop_index(op.f("ix_user_channels_user_id"), table_name="user_channels")
    op.drop_index(op.f("ix_user_channels_org_id"), table_name="user_channels")
    op.drop_table("user_channels")
    op.drop_column("repositories", "review_remind_after_seconds")
    op.drop_column("organizations", "timezone")
    op.drop_column("organizations", "quiet_hours_end")
    op.drop_column("organizations", "quiet_hours_start")
    op.drop_column("organizations", "review_remind_after_seconds")
