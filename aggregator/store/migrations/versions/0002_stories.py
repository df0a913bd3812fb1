"""Stories: grouped coverage of one event; same-article duplicates across feeds; named
leases (for the single grouper among several workers).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aggregator.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.add_column(sa.Column("link_hash", sa.String(64)))
        batch.add_column(sa.Column("duplicate_of", sa.Integer))
        batch.add_column(sa.Column("group_score", sa.Float))
        batch.add_column(sa.Column("group_terms", sa.Text))
    op.create_index("ix_entries_link_hash", "entries", ["link_hash"])
    op.create_index("ix_entries_duplicate_of", "entries", ["duplicate_of"])
    op.create_table(
        "stories",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("headline", sa.Text, nullable=False),
        sa.Column("headline_entry_id", sa.Integer),
        sa.Column("terms", sa.Text, nullable=False),
        sa.Column("language", sa.String(35)),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
        sa.Column("last_updated_at", UTCDateTime, nullable=False),
        sa.Column("entry_count", sa.Integer, nullable=False),
        sa.Column("source_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_stories_updated", "stories", ["last_updated_at"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128)),
        sa.Column("until", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_index("ix_stories_updated", "stories")
    op.drop_table("stories")
    op.drop_index("ix_entries_duplicate_of", "entries")
    op.drop_index("ix_entries_link_hash", "entries")
    with op.batch_alter_table("entries") as batch:
        for column in ("group_terms", "group_score", "duplicate_of", "link_hash"):
            batch.drop_column(column)
