"""Initial schema: feeds with fetch state, entries, tags, worker heartbeats.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aggregator.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("config_url", sa.String(2048), nullable=False, unique=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("title", sa.Text),
        sa.Column("feed_title", sa.Text),
        sa.Column("site_link", sa.Text),
        sa.Column("language", sa.String(35)),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("in_config", sa.Boolean, nullable=False),
        sa.Column("interval", sa.Integer),
        sa.Column("allow_private", sa.Boolean),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("body_hash", sa.String(64)),
        sa.Column("next_check_at", UTCDateTime),
        sa.Column("last_fetch_at", UTCDateTime),
        sa.Column("last_success_at", UTCDateTime),
        sa.Column("last_status", sa.String(16)),
        sa.Column("http_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("error_count", sa.Integer, nullable=False),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_feeds_due", "feeds", ["next_check_at"])
    op.create_table(
        "feed_tags",
        sa.Column(
            "feed_id",
            sa.Integer,
            sa.ForeignKey("feeds.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(32), primary_key=True),
    )
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "feed_id", sa.Integer, sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("link", sa.Text),
        sa.Column("published_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
        sa.Column("author", sa.Text),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("content_html", sa.Text, nullable=False),
        sa.Column("image_url", sa.Text),
        sa.Column("enclosures", sa.Text, nullable=False),
        sa.Column("language", sa.String(35)),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("story_id", sa.Integer),
        sa.UniqueConstraint("feed_id", "key_hash", name="uq_entries_feed_key"),
    )
    op.create_index("ix_entries_published", "entries", ["published_at", "id"])
    op.create_index("ix_entries_feed_published", "entries", ["feed_id", "published_at"])
    op.create_index("ix_entries_story", "entries", ["story_id"])
    op.create_table(
        "entry_tags",
        sa.Column(
            "entry_id",
            sa.Integer,
            sa.ForeignKey("entries.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(200), primary_key=True),
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("last_tick_at", UTCDateTime, nullable=False),
        sa.Column("tick_seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("workers", "entry_tags", "entries", "feed_tags", "feeds"):
        op.drop_table(table)
