"""Workers record how long their last poll took and how many feeds it updated.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("poll_seconds", sa.Float))
        batch.add_column(sa.Column("poll_feeds", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("poll_feeds")
        batch.drop_column("poll_seconds")
