"""Table definitions (SQLAlchemy Core). The migrations in `migrations/versions/` create
and change these tables; this module is what the queries use.

All timestamps are stored as naive UTC and come back timezone-aware (`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("store: naive datetime; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite results of raw text expressions
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


metadata = MetaData()

feeds = Table(
    "feeds",
    metadata,
    Column("id", Integer, primary_key=True),
    # The URL as the config lists it (the identity used to sync the config) ...
    Column("config_url", String(2048), nullable=False, unique=True),
    # ... and the URL fetched now, changed by permanent redirects.
    Column("url", String(2048), nullable=False),
    Column("title", Text),
    Column("feed_title", Text),
    Column("site_link", Text),
    Column("language", String(35)),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("in_config", Boolean, nullable=False, default=True),
    Column("interval", Integer),
    Column("allow_private", Boolean),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("body_hash", String(64)),
    Column("next_check_at", UTCDateTime),
    Column("last_fetch_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_status", String(16)),
    Column("http_status", Integer),
    Column("last_error", Text),
    Column("error_count", Integer, nullable=False, default=0),
    # Consecutive errors the backoff counts: those not answered with Retry-After (see
    # update._failed); error_count counts them all.
    Column("backoff_count", Integer, nullable=False, default=0, server_default="0"),
    Column("disabled_reason", Text),
    # How entries are identified: NULL = guid/id first; "link" when guids proved unstable.
    Column("id_rule", String(16)),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_feeds_due", "next_check_at"),
)

feed_tags = Table(
    "feed_tags",
    metadata,
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(32), primary_key=True),
)

entries = Table(
    "entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
    Column("key", Text, nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("link", Text),
    Column("published_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("author", Text),
    Column("summary", Text, nullable=False),
    Column("content_html", Text, nullable=False),
    Column("image_url", Text),
    Column("enclosures", Text, nullable=False),  # JSON list of {url, type, length}
    Column("language", String(35)),
    Column("detected_language", String(35)),  # read off the text by grouping, if none declared
    Column("content_hash", String(64), nullable=False),
    Column("story_id", Integer),
    # sha256 of the canonical link: finds the same article in other feeds.
    Column("link_hash", String(64)),
    # The entry (of another feed) this one repeats; merged outputs show only the first.
    Column("duplicate_of", Integer),
    # Why the entry joined its story: similarity score and shared key terms (JSON list).
    Column("group_score", Float),
    Column("group_terms", Text),
    # An undated entry of its feed's first poll beyond the newest few: back catalogue
    # that would read as news of that minute; merged outputs and grouping leave it out.
    Column("catalogue", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("feed_id", "key_hash", name="uq_entries_feed_key"),
    Index("ix_entries_published", "published_at", "id"),
    Index("ix_entries_feed_published", "feed_id", "published_at"),
    Index("ix_entries_story", "story_id"),
    Index("ix_entries_link_hash", "link_hash"),
    # Partial indexes (migration 0005): only duplicates for the `duplicate_of IN (...)`
    # look-ups, and the originals newest first for the digest and merged feeds.
    Index(
        "ix_entries_duplicate_of",
        "duplicate_of",
        sqlite_where=text("duplicate_of IS NOT NULL"),
        postgresql_where=text("duplicate_of IS NOT NULL"),
    ),
    Index(
        "ix_entries_originals",
        "published_at",
        "id",
        sqlite_where=text("duplicate_of IS NULL"),
        postgresql_where=text("duplicate_of IS NULL"),
    ),
)

stories = Table(
    "stories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # founding entry's id
    Column("headline", Text, nullable=False),
    Column("headline_entry_id", Integer),
    Column("terms", Text, nullable=False),  # JSON list of 2-4 key terms
    Column("language", String(35)),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_updated_at", UTCDateTime, nullable=False),
    Column("entry_count", Integer, nullable=False),
    Column("source_count", Integer, nullable=False),
    Index("ix_stories_updated", "last_updated_at"),
    Index("ix_stories_top", "source_count", "last_updated_at", "id"),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(128)),
    Column("until", UTCDateTime),
)

entry_tags = Table(
    "entry_tags",
    metadata,
    Column("entry_id", Integer, ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(200), primary_key=True),
)

workers = Table(
    "workers",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("last_tick_at", UTCDateTime, nullable=False),
    Column("tick_seconds", Float, nullable=False),
    Column("poll_seconds", Float),  # how long the worker's last poll took
    Column("poll_feeds", Integer),  # how many feeds it updated
)
