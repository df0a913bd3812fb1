"""The count of consecutive errors that the backoff doubles on: errors answered with
Retry-After (the server said when to come back) count in `error_count` but not here, so
that a bare error after a throttled spell is the first of its backoff, not the
fifteenth.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.add_column(sa.Column("backoff_count", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("backoff_count")
