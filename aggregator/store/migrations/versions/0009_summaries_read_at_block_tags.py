"""Summaries are now read with a space at block tags and none at inline ones ("...
socialist." instead of "... socialist .", "ends. Second" instead of "ends.Second"), so
a stored summary can differ from what the next fetch of its entry gives. Their content
hashes are cleared (`entries.STALE_HASH`): the next fetch refreshes them without
counting an edit (an edit would give every such entry a new updated time in the merged
feeds).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aggregator.store.entries import STALE_HASH

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    entries = sa.table("entries", sa.column("summary", sa.Text), sa.column("content_hash"))
    op.execute(entries.update().where(entries.c.summary != "").values(content_hash=STALE_HASH))


def downgrade() -> None:
    pass  # the hashes come back with the next fetch of each entry
