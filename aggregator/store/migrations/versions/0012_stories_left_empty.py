"""Stories left with no entry (their last one moved to another story by grouping's
second look, or pruned) are deleted; a story whose headline entry was pruned takes the
title of its earliest published entry (`store.stories.refresh_after_prune` does both
from now on).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DELETE_EMPTY = """
DELETE FROM stories WHERE NOT EXISTS (SELECT 1 FROM entries WHERE story_id = stories.id)
"""

EARLIEST = """
SELECT {column} FROM entries m WHERE m.story_id = stories.id
ORDER BY m.published_at, m.id LIMIT 1
"""

RELABEL = f"""
UPDATE stories SET
    headline_entry_id = ({EARLIEST.format(column="m.id")}),
    headline = ({EARLIEST.format(column="m.title")})
WHERE NOT EXISTS (
    SELECT 1 FROM entries e WHERE e.id = stories.headline_entry_id AND e.story_id = stories.id
)
"""


def upgrade() -> None:
    op.execute(DELETE_EMPTY)
    op.execute(RELABEL)


def downgrade() -> None:
    pass  # deleted rows held nothing; the old headlines named entries that are gone
