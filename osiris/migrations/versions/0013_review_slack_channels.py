"""review reminders in a Slack channel: organizations.review_slack_channel and
repositories.review_slack_channel ("<team id>:<channel id>"), posted to once per interval

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 23:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("review_slack_channel", sa.String(length=100), nullable=True))
    op.add_column("repositories", sa.Column("review_slack_channel", sa.String(length=100), nullable=True))


def downgrade() -> None:
    op.drop_column("repositories", "review_slack_channel")
    op.drop_column("organizations", "review_slack_channel")
