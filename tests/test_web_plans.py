"""The digest's queries on SQLite read the indexes of migration 0005 in order instead of
sorting every original entry or story (which took ~0.5 s for `/` at 100,000 entries).

The statements are captured as the store runs them and explained with SQLite's
EXPLAIN QUERY PLAN; without ANALYZE statistics SQLite plans by the schema alone, so a
small store gets the plan a large one does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from aggregator.models import SourceConfig
from aggregator.store import Store
from aggregator.store.pages import DigestQuery, EntryQuery
from tests.test_web import NOW, fill_store


@contextmanager
def _captured(store: Store) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    engine = store._engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _plans(path: Path, statements: list[tuple[str, Any]], table: str) -> list[str]:
    """The query plan of each captured SELECT that reads `table` first."""
    plans = []
    with sqlite3.connect(path) as conn:
        for statement, params in statements:
            if statement.lstrip().upper().startswith("SELECT") and f"FROM {table} " in statement:
                rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
                plans.append(" / ".join(row[-1] for row in rows))
    return plans


@pytest.mark.parametrize("removed", [False, True], ids=["all-listed", "one-removed"])
def test_digest_reads_newest_originals_and_top_stories_from_their_indexes(
    tmp_path: Path, removed: bool
) -> None:
    """Also with a source removed from the config (its entries filtered out)."""
    path = tmp_path / "plans.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    fill_store(store)
    if removed:
        listed = [SourceConfig(f.url, f.title, f.tags) for f in store.get_feeds()][1:]
        store.sync_sources(listed, NOW)
    query = DigestQuery(
        latest=EntryQuery(31),
        tag=None,
        stories_since=NOW - timedelta(hours=48),
        top_stories=8,
        section_stories=3,
        section_entries=20,
        outlets=8,
    )
    with _captured(store) as statements:
        digest = store.get_digest(query)
        store.get_entries_page(EntryQuery(51))  # /feed.atom
    store.close()
    assert digest.top and digest.latest

    entry_plans = _plans(path, statements, "entries")
    newest = [p for p in entry_plans if "ix_entries_originals" in p]
    assert len(newest) == 2, entry_plans  # the digest's newest entries and the feed's
    assert all("TEMP B-TREE" not in plan for plan in newest), newest

    story_plans = _plans(path, statements, "stories")
    # the top stories by their index; the source counts of the listed entries' stories
    # by primary key
    top = [p for p in story_plans if "ix_stories_top" in p]
    by_key = [p for p in story_plans if "USING INTEGER PRIMARY KEY" in p]
    assert top and len(top) + len(by_key) == len(story_plans), story_plans
    assert all("TEMP B-TREE" not in plan for plan in story_plans), story_plans
