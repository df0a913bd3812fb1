"""`Store.save_updates` on a real SQLite file and on real PostgreSQL: a batch's
state-only saves (304s, unchanged bodies) are written together, and each feed's outcome
stays what saving it alone would give: a stale worker writes nothing, a failed feed
loses no other, outcomes come back in the order of the saves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from aggregator.exceptions import StoreError
from aggregator.models import EntryData, FeedState, SourceConfig
from aggregator.store import FeedUpdate, PendingSave, SaveOutcome, Store

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=6)
LEASE = timedelta(minutes=5)


def _feeds(store: Store, count: int) -> list[FeedState]:
    store.sync_sources([SourceConfig(url=f"https://a.example/{n}") for n in range(count)], NOW)
    return store.claim_due_feeds("w1", NOW, LEASE, count)


def _not_modified(feed: FeedState, etag: str = '"new"') -> PendingSave:
    state = FeedUpdate(
        etag=etag,
        next_check_at=NOW + timedelta(hours=1),
        last_fetch_at=NOW,
        last_success_at=NOW,
        last_status="not_modified",
        http_status=304,
        keep_document_fields=True,
    )
    return PendingSave(feed.id, state, now=NOW)


def _with_entry(feed: FeedState, key: str) -> PendingSave:
    item = EntryData(
        key=key,
        title="A title",
        link=f"https://example.org/{key}",
        published_at=NOW - timedelta(hours=1),
        updated_at=None,
        summary="Summary",
        content_html="<p>Body</p>",
        tags=(),
        enclosures=(),
        content_hash=f"hash-{key}",
    )
    return PendingSave(feed.id, FeedUpdate(last_fetch_at=NOW, etag='"parsed"'), (item,), NOW)


def _etags(store: Store) -> list[str | None]:
    return [feed.etag for feed in store.get_feeds()]


@contextmanager
def _statements(store: Store) -> Iterator[list[tuple[str, bool]]]:
    seen: list[tuple[str, bool]] = []

    def record(
        _c: object, _cur: object, statement: str, _p: object, _x: object, many: bool
    ) -> None:
        seen.append((statement.lower(), many))

    event.listen(store._engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store._engine, "before_cursor_execute", record)


def test_state_only_saves_are_written_together_without_a_savepoint_each(store: Store) -> None:
    feeds = _feeds(store, 5)
    with _statements(store) as seen:
        outcomes = store.save_updates("w1", [_not_modified(feed) for feed in feeds])
    assert outcomes == [SaveOutcome(saved=True)] * 5
    assert _etags(store) == ['"new"'] * 5
    assert [many for statement, many in seen if statement.startswith("update feeds")] == [True]
    assert len([s for s, _ in seen if s.startswith("savepoint")]) == 1
    # the leases were released: another worker can claim the feeds at once
    assert store.claim_due_feeds("w2", NOW, LEASE, 10, force=True) != []


def test_a_stale_worker_writes_nothing_and_the_others_are_saved(store: Store) -> None:
    feeds = _feeds(store, 4)
    taken = store.claim_due_feeds("w2", LATER, LEASE, 2)  # the lapsed leases of two feeds
    assert [feed.id for feed in taken] == [feed.id for feed in feeds[:2]]

    outcomes = store.save_updates("w1", [_not_modified(feed) for feed in reversed(feeds)])

    assert [o.saved for o in outcomes if isinstance(o, SaveOutcome)] == [True, True, False, False]
    assert _etags(store) == [None, None, '"new"', '"new"']
    # w2 still holds the two it took and saves them
    again = store.save_updates("w2", [_not_modified(feed, '"w2"') for feed in taken])
    assert again == [SaveOutcome(saved=True)] * 2
    assert _etags(store) == ['"w2"', '"w2"', '"new"', '"new"']


def test_every_lease_lost_writes_nothing(store: Store) -> None:
    feeds = _feeds(store, 3)
    store.claim_due_feeds("w2", LATER, LEASE, 3)
    outcomes = store.save_updates("w1", [_not_modified(feed) for feed in feeds])
    assert outcomes == [SaveOutcome(saved=False)] * 3
    assert _etags(store) == [None] * 3


def test_a_failing_feed_loses_no_other_save(store: Store) -> None:
    feeds = _feeds(store, 4)
    store.claim_due_feeds("w2", LATER, LEASE, 1)  # feeds[0] is stale for w1
    broken = _not_modified(feeds[2])
    broken = PendingSave(broken.feed_id, replace(broken.state, error_count=None), now=NOW)

    outcomes = store.save_updates(
        "w1", [_not_modified(feeds[0]), _not_modified(feeds[1]), broken, _not_modified(feeds[3])]
    )

    assert outcomes[0] == SaveOutcome(saved=False)  # fenced: the row holds no lease of w1
    assert outcomes[1] == outcomes[3] == SaveOutcome(saved=True)
    assert isinstance(outcomes[2], StoreError) and f"feed {feeds[2].id}" in str(outcomes[2])
    assert _etags(store) == [None, '"new"', None, '"new"']


def test_outcomes_follow_the_saves_when_state_only_and_entry_saves_mix(store: Store) -> None:
    feeds = _feeds(store, 5)
    saves = [
        _not_modified(feeds[0]),
        _with_entry(feeds[1], "a"),
        _not_modified(feeds[2]),
        _with_entry(feeds[3], "b"),
        _not_modified(feeds[4]),
    ]
    outcomes = store.save_updates("w1", saves)
    assert [o.saved for o in outcomes if isinstance(o, SaveOutcome)] == [True] * 5
    assert [bool(o.new_ids) for o in outcomes if isinstance(o, SaveOutcome)] == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert _etags(store) == ['"new"', '"parsed"', '"new"', '"parsed"', '"new"']
    assert store.count_entries() == 2


def test_a_feed_saved_twice_in_a_batch_is_saved_once(store: Store) -> None:
    feeds = _feeds(store, 3)
    saves = [
        _not_modified(feeds[0], '"first"'),
        _not_modified(feeds[1]),
        _not_modified(feeds[0], '"second"'),
        _not_modified(feeds[2]),
    ]
    outcomes = store.save_updates("w1", saves)
    assert [o.saved for o in outcomes if isinstance(o, SaveOutcome)] == [True, True, False, True]
    assert _etags(store) == ['"first"', '"new"', '"new"']


def test_the_first_of_two_saves_of_a_feed_wins_whichever_kind_it_is(store: Store) -> None:
    feeds = _feeds(store, 4)
    saves = [
        _with_entry(feeds[0], "a"),
        _not_modified(feeds[0]),
        _not_modified(feeds[1]),
        _not_modified(feeds[2]),
        _with_entry(feeds[2], "b"),
        _not_modified(feeds[3]),
    ]
    outcomes = store.save_updates("w1", saves)
    assert [o.saved for o in outcomes if isinstance(o, SaveOutcome)] == [
        True,
        False,
        True,
        True,
        False,
        True,
    ]
    assert _etags(store) == ['"parsed"', '"new"', '"new"', '"new"']
    assert store.count_entries() == 1


def test_a_save_with_no_time_still_fails_the_whole_batch(store: Store) -> None:
    feeds = _feeds(store, 3)
    saves = [_not_modified(feed) for feed in feeds]
    no_time = replace(saves[1].state, last_fetch_at=None)  # and the save has no `now`
    saves[1] = PendingSave(feeds[1].id, no_time)
    with pytest.raises(ValueError, match="last_fetch_at is required"):
        store.save_updates("w1", saves)
    assert _etags(store) == [None] * 3  # the whole transaction was rolled back
