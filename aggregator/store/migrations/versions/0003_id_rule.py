"""Per-feed entry identity rule: a feed whose guids are missing, repeated or unstable
falls back to identifying its entries by link.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.add_column(sa.Column("id_rule", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("id_rule")
