"""A source removed from the config no longer counts among its stories' sources (as it
no longer shows in the merged outputs): stories count the feeds of their own reports
anew, listed feeds only (`store.stories.own_report`). Only stories holding an entry of
a removed feed can change.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

RECOUNT = """
UPDATE stories SET source_count = (
    SELECT count(DISTINCT e.feed_id) FROM entries e
    JOIN feeds f ON f.id = e.feed_id
    WHERE e.story_id = stories.id AND f.in_config AND (
        e.duplicate_of IS NULL OR NOT EXISTS (
            SELECT 1 FROM entries o JOIN feeds of ON of.id = o.feed_id
            WHERE o.id = e.duplicate_of AND o.story_id = e.story_id
                AND o.link_hash = e.link_hash AND of.in_config
        )
    )
)
WHERE id IN (
    SELECT e.story_id FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE NOT f.in_config
)
"""


def upgrade() -> None:
    op.execute(RECOUNT)


def downgrade() -> None:
    pass  # the counts of before would count removed sources again
