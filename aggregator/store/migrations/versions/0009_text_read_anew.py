"""Entries' text is read anew: summaries with a space at block tags and none at inline
ones ("... socialist." instead of "... socialist .", "ends. Second" instead of
"ends.Second"), and authors given with an email address by their name ("Anthony"
instead of "Anthony (noreply@blogger.com)"). A stored entry can therefore differ from
what the next fetch of it gives: content hashes are cleared (`entries.STALE_HASH`), so
that the next fetch refreshes it without counting an edit (an edit would give every
such entry a new updated time in the merged feeds).

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
    entries = sa.table("entries", sa.column("content_hash", sa.String))
    op.execute(entries.update().values(content_hash=STALE_HASH))


def downgrade() -> None:
    pass  # the hashes come back with the next fetch of each entry
