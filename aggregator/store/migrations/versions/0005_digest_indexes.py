"""Indexes for the digest and the merged feeds: originals (entries that repeat no other
feed's article) newest first, and stories by coverage.

The old index on `entries.duplicate_of` covered every row, almost all of them NULL, so
the planner used it for `duplicate_of IS NULL` (every original) and then sorted them all:
~75 ms per list at 100,000 entries. It now covers only rows that are duplicates (what
the `duplicate_of IN (...)` look-ups need), and a partial index on (published_at, id) of
the originals gives the newest originals in order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ORIGINAL = sa.text("duplicate_of IS NULL")
DUPLICATE = sa.text("duplicate_of IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_entries_duplicate_of", "entries")
    op.create_index(
        "ix_entries_duplicate_of",
        "entries",
        ["duplicate_of"],
        sqlite_where=DUPLICATE,
        postgresql_where=DUPLICATE,
    )
    op.create_index(
        "ix_entries_originals",
        "entries",
        ["published_at", "id"],
        sqlite_where=ORIGINAL,
        postgresql_where=ORIGINAL,
    )
    op.create_index("ix_stories_top", "stories", ["source_count", "last_updated_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_stories_top", "stories")
    op.drop_index("ix_entries_originals", "entries")
    op.drop_index("ix_entries_duplicate_of", "entries")
    op.create_index("ix_entries_duplicate_of", "entries", ["duplicate_of"])
