"""`Store.claim_due_feeds` on a real SQLite file and on real PostgreSQL: the claimed
feeds come back from the claiming UPDATE as a read of the same feeds would give them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aggregator.models import SourceConfig
from aggregator.store import FeedUpdate, PendingSave, Store

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def test_claimed_feeds_are_read_as_get_feeds_reads_them_in_id_order(store: Store) -> None:
    sources = [
        SourceConfig(url=f"https://a.example/{n}", title=f"T{n}", tags=("b", "a")[: n % 3])
        for n in range(6)
    ]
    store.sync_sources(sources, NOW)
    first = store.claim_due_feeds("w", NOW, LEASE, 6)
    state = FeedUpdate(
        etag='"e"',
        last_modified="Tue, 24 Nov 2026 12:00:00 GMT",
        next_check_at=NOW - timedelta(minutes=1),  # due again at once
        last_fetch_at=NOW,
        last_success_at=NOW,
        last_status="not_modified",
        http_status=304,
        error_count=0,
        keep_document_fields=True,
    )
    store.save_updates("w", [PendingSave(feed.id, state) for feed in first[::2]])

    claimed = store.claim_due_feeds("w2", NOW + LEASE * 2, LEASE, 4)

    assert [feed.id for feed in claimed] == sorted(feed.id for feed in claimed)
    assert len(claimed) == 4
    read = {feed.id: replace(feed, entry_count=0) for feed in store.get_feeds()}
    assert claimed == [read[feed.id] for feed in claimed]
    assert {feed.tags for feed in claimed} <= {(), ("b",), ("a", "b")}
    assert any(feed.etag == '"e"' for feed in claimed)


def test_a_claim_with_nothing_due_returns_nothing(store: Store) -> None:
    store.sync_sources([SourceConfig(url="https://a.example/1")], NOW)
    assert len(store.claim_due_feeds("w", NOW, LEASE, 10)) == 1
    assert store.claim_due_feeds("w2", NOW, LEASE, 10) == []
