"""The table definitions the queries use (`store/schema.py`) match what the migrations
build, so a query never relies on an index or column that a migrated database lacks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from aggregator.store import Store, migrate
from aggregator.store.schema import metadata


def test_migrated_database_matches_the_table_definitions(store: Store) -> None:
    with store._engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = [
            diff
            for diff in compare_metadata(context, metadata)
            if not (
                isinstance(diff, tuple)
                and diff[0] == "remove_table"
                and diff[1].name == "alembic_version"
            )
        ]
    assert differences == []


def test_upgrading_a_database_with_feeds_keeps_them_and_starts_their_backoff_at_zero(
    tmp_path: Path,
) -> None:
    """A database made by the previous release (migration 0005) with a failing feed in
    it: after the upgrade the feed is there, with its error count, and a backoff count
    of 0 (the new column's default)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine, "0005")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feeds (config_url, url, enabled, in_config, error_count,"
                " created_at) VALUES ('https://a.example/f', 'https://a.example/f', 1, 1,"
                " 3, :now)"
            ),
            {"now": now},
        )
    engine.dispose()
    store = Store(url)
    store.upgrade()
    (feed,) = store.get_feeds()
    assert (feed.url, feed.error_count, feed.backoff_count) == ("https://a.example/f", 3, 0)
    store.close()
