"""A page that two feeds carry at the same link (one site's two feeds) is one report of
its story: stories count their sources anew (`store.stories.own_report`). Only stories
holding a copy can change.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

RECOUNT = """
UPDATE stories SET source_count = (
    SELECT count(DISTINCT e.feed_id) FROM entries e
    WHERE e.story_id = stories.id AND (
        e.duplicate_of IS NULL OR NOT EXISTS (
            SELECT 1 FROM entries o
            WHERE o.id = e.duplicate_of AND o.story_id = e.story_id
                AND o.link_hash = e.link_hash
        )
    )
)
WHERE id IN (SELECT story_id FROM entries WHERE duplicate_of IS NOT NULL)
"""


def upgrade() -> None:
    op.execute(RECOUNT)


def downgrade() -> None:
    pass  # the counts of before would count such a page once per feed again
