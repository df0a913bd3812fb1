"""`entries.catalogue`: an undated entry of its feed's first poll, beyond the document's
first few, is back catalogue: merged outputs and grouping leave it out
(`store.entries._catalogue`). Entries stored before stay as they are (false).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("entries")}
    if "catalogue" in columns:  # a database whose version was set back (tests do)
        return
    # a constant default: SQLite adds it in place (no copy of the table)
    op.add_column(
        "entries",
        sa.Column("catalogue", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("catalogue")
