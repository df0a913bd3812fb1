"""The language grouping reads off an entry's text when the entry (and its feed)
declares none (`aggregator.langid`), kept beside the declared one: pages and feeds mark
the entry with it, and a warm start of grouping does not read it again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable and without a default: SQLite adds it in place (no copy of the table)
    op.add_column("entries", sa.Column("detected_language", sa.String(35)))


def downgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("detected_language")
