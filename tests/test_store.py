"""The store on a real SQLite file and on real PostgreSQL: schema, config sync, leases,
fenced writes and entry upserts.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from aggregator import store as store_module
from aggregator.exceptions import StoreError
from aggregator.models import (
    Enclosure,
    EntryData,
    EntryText,
    Retention,
    SourceConfig,
    StoryAssignment,
    StoryLabel,
    WorkerBeat,
)
from aggregator.store import FeedUpdate, Store
from aggregator.store.engine import SQLITE_WAL_LIMIT_BYTES

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _entry(key: str, title: str = "A title", **changes: object) -> EntryData:
    entry = EntryData(
        key=key,
        title=title,
        link=f"https://example.org/{key}",
        published_at=NOW - timedelta(hours=1),
        updated_at=None,
        summary="Summary",
        content_html="<p>Body</p>",
        tags=("politics",),
        enclosures=(Enclosure("https://example.org/a.mp3", "audio/mpeg", 123),),
        content_hash=f"hash-{key}-{title}",
    )
    return replace(entry, **changes)  # type: ignore[arg-type]


def _sources(*urls: str) -> list[SourceConfig]:
    return [SourceConfig(url=url, tags=("world",)) for url in urls]


def test_upgrade_is_idempotent_and_current(store: Store) -> None:
    store.upgrade()
    assert store.schema_is_current()


def test_sqlite_file_is_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "agg.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    assert path.exists()
    with create_engine(f"sqlite:///{path}").connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_sync_sources_adds_updates_and_retires(store: Store) -> None:
    store.sync_sources(_sources("https://a.example/feed", "https://b.example/feed"), NOW)
    store.sync_sources(
        [SourceConfig(url="https://a.example/feed", title="A", tags=("x", "y"))], NOW
    )
    feeds = {f.url: f for f in store.get_feeds()}
    assert feeds["https://a.example/feed"].title == "A"
    assert feeds["https://a.example/feed"].tags == ("x", "y")
    assert feeds["https://b.example/feed"].in_config is False
    claimed = store.claim_due_feeds("w", NOW, LEASE, 10)
    assert [f.url for f in claimed] == ["https://a.example/feed"]


def test_claims_are_exclusive_until_the_lease_expires(store: Store) -> None:
    store.sync_sources(_sources("https://a.example/1", "https://a.example/2"), NOW)
    first = store.claim_due_feeds("w1", NOW, LEASE, 10)
    assert len(first) == 2
    assert store.claim_due_feeds("w2", NOW, LEASE, 10) == []
    after_expiry = store.claim_due_feeds("w2", NOW + LEASE + timedelta(seconds=1), LEASE, 10)
    assert len(after_expiry) == 2


def test_a_claim_reads_no_entries_so_its_cost_does_not_grow_with_the_archive(
    store: Store,
) -> None:
    from sqlalchemy import event

    store.sync_sources(_sources("https://a.example/1", "https://a.example/2"), NOW)
    (feed, _) = store.claim_due_feeds("w", NOW, LEASE, 10)
    items = [_entry(f"k{n}") for n in range(20)]
    store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), items)
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.lower())

    engine = store._engine  # the claim runs inside the write transaction: watch it
    event.listen(engine, "before_cursor_execute", seen)
    try:
        claimed = store.claim_due_feeds("w", NOW + LEASE * 2, LEASE, 10, force=True)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(claimed) == 2 and statements
    assert not [s for s in statements if "entries" in s]
    assert {f.url: f.entry_count for f in store.get_feeds()}["https://a.example/1"] == 20


def test_entries_per_day_count_what_was_published_in_the_last_week(store: Store) -> None:
    """A feed's first poll brings its back catalogue: 7 entries of the last week and
    30 of the month before, all first seen now. Its rate is one a day, not 37 a week."""
    store.sync_sources(_sources("https://a.example/1"), NOW)
    (feed,) = store.claim_due_feeds("w", NOW, LEASE, 10)
    week = [_entry(f"w{n}", published_at=NOW - timedelta(days=n, hours=1)) for n in range(7)]
    older = [_entry(f"o{n}", published_at=NOW - timedelta(days=8 + n)) for n in range(30)]
    store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), week + older)
    (state,) = store.get_feeds(NOW)
    assert state.entry_count == 37
    assert state.entries_per_day == pytest.approx(1.0)


def test_stale_worker_write_is_fenced(store: Store) -> None:
    store.sync_sources(_sources("https://a.example/1"), NOW)
    (feed,) = store.claim_due_feeds("w1", NOW, LEASE, 10)
    later = NOW + LEASE + timedelta(seconds=1)
    (again,) = store.claim_due_feeds("w2", later, LEASE, 10)

    stale = store.save_update(
        feed.id, "w1", FeedUpdate(last_fetch_at=NOW, etag='"old"'), [_entry("k")]
    )

    assert stale.saved is False
    assert store.count_entries() == 0 and store.get_feeds()[0].etag is None
    fresh = store.save_update(
        again.id, "w2", FeedUpdate(last_fetch_at=later, etag='"new"'), [_entry("k")]
    )
    assert fresh.saved and fresh.new_ids
    assert store.get_feeds()[0].etag == '"new"'


def test_entries_insert_update_and_dedupe(store: Store) -> None:
    store.sync_sources(_sources("https://a.example/1"), NOW)
    (feed,) = store.claim_due_feeds("w", NOW, LEASE, 10)
    items = [_entry("a"), _entry("b"), _entry("a"), _entry("c", published_at=None)]
    first = store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), items)
    assert len(first.new_ids) == 3

    store.claim_due_feeds("w", NOW, LEASE, 10, force=True)
    edited = [_entry("a", title="A title, edited"), _entry("b")]
    second = store.save_update(
        feed.id,
        "w",
        FeedUpdate(last_fetch_at=NOW + timedelta(hours=1)),
        edited,
        now=NOW + timedelta(hours=1),
    )
    assert second.new_ids == () and len(second.changed_ids) == 1

    latest = {e.key: e for e in store.get_latest()}
    assert len(latest) == 3
    assert latest["a"].title == "A title, edited"
    assert latest["a"].first_seen_at == NOW and latest["a"].updated_at == NOW + timedelta(hours=1)
    assert latest["c"].published_at == NOW  # no date: first seen
    assert latest["b"].tags == ("politics",)
    assert latest["b"].enclosures == (Enclosure("https://example.org/a.mp3", "audio/mpeg", 123),)


def test_new_entry_ids_follow_the_order_of_the_items(store: Store) -> None:
    """Each new id is its own entry's (tags, stories and duplicates are keyed by it),
    and dates come back as they went in, whichever way the dialect inserts."""
    store.sync_sources(_sources("https://a.example/1", "https://b.example/2"), NOW)
    first, second = store.claim_due_feeds("w", NOW, LEASE, 10)
    store.save_update(first.id, "w", FeedUpdate(last_fetch_at=NOW), [_entry("z")])
    keys = [f"k{n:02d}" for n in range(30, 0, -1)]  # not in id or hash order
    items = [
        _entry(
            key,
            title=f"Title {key}",
            tags=(f"tag-{key}",),
            published_at=NOW - timedelta(minutes=int(key[1:]), microseconds=7),
        )
        for key in keys
    ]
    saved = store.save_update(second.id, "w", FeedUpdate(last_fetch_at=NOW), items)

    assert len(saved.new_ids) == len(keys) and len(set(saved.new_ids)) == len(keys)
    stored = {e.id: e for e in store.get_latest(limit=100, feed_id=second.id)}
    for entry_id, item in zip(saved.new_ids, items, strict=True):
        got = stored[entry_id]
        assert (got.key, got.title, got.tags) == (item.key, item.title, item.tags)
        assert got.published_at == item.published_at and got.first_seen_at == NOW


def test_latest_orders_newest_first_and_filters_by_tag(store: Store) -> None:
    store.sync_sources(
        [
            SourceConfig(url="https://a.example/1", tags=("world",)),
            SourceConfig(url="https://b.example/1", tags=("tech",)),
        ],
        NOW,
    )
    feeds = store.claim_due_feeds("w", NOW, LEASE, 10)
    for offset, feed in enumerate(feeds):
        items = [
            _entry(f"{feed.id}-{i}", published_at=NOW - timedelta(hours=i * 2 + offset))
            for i in range(3)
        ]
        store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), items)
    latest = store.get_latest()
    assert [e.published_at for e in latest] == sorted(
        (e.published_at for e in latest), reverse=True
    )
    assert {e.feed_url for e in store.get_latest(tag="tech")} == {"https://b.example/1"}
    assert len(store.get_latest(limit=2, offset=4)) == 2


def test_heartbeat(store: Store) -> None:
    assert store.last_tick() is None
    store.record_tick("w1", NOW, 30)
    store.record_tick("w1", NOW + timedelta(seconds=30), 30)
    assert store.last_tick() == (NOW + timedelta(seconds=30), 30)


def test_forgetting_workers_keeps_recent_ones_and_always_the_newest(store: Store) -> None:
    store.record_tick("gone", NOW - timedelta(days=3), 30)
    store.record_tick("stopped", NOW - timedelta(hours=2), 30)
    store.record_tick("alive", NOW, 30, poll=(1.5, 4))
    assert store.forget_workers(NOW - timedelta(days=1)) == 1
    assert [b.name for b in store.get_workers()] == ["alive", "stopped"]
    assert store.get_workers()[0] == WorkerBeat("alive", NOW, 30, 1.5, 4)
    # every worker silent: the newest heartbeat stays, for /healthz to report its age
    assert store.forget_workers(NOW + timedelta(days=5)) == 1
    assert [b.name for b in store.get_workers()] == ["alive"]


@pytest.mark.parametrize("given", ["postgres://u@h/db", "postgresql://u@h/db"])
def test_database_url_forms(given: str) -> None:
    from aggregator.store.engine import normalise_database_url

    assert normalise_database_url(given) == "postgresql+psycopg://u@h/db"


def test_same_article_in_two_feeds_is_shown_once_with_other_sources(store: Store) -> None:
    store.sync_sources(
        [
            SourceConfig(url="https://a.example/1", title="Wire"),
            SourceConfig(url="https://b.example/1", title="Paper"),
        ],
        NOW,
    )
    wire, paper = store.claim_due_feeds("w", NOW, LEASE, 10)
    store.save_update(
        wire.id,
        "w",
        FeedUpdate(last_fetch_at=NOW),
        [_entry("x", link="https://news.example/story")],
    )
    store.save_update(
        paper.id,
        "w",
        FeedUpdate(last_fetch_at=NOW),
        [_entry("y", link="https://news.example/story"), _entry("z")],
    )
    merged = store.get_latest()
    assert [e.link for e in merged].count("https://news.example/story") == 1
    shared = next(e for e in merged if e.link == "https://news.example/story")
    assert shared.feed_title == "Wire" and shared.also_in == ("Paper",)
    assert len(store.get_latest(feed_id=paper.id)) == 2  # each feed keeps its own copy


def test_a_link_that_several_items_of_a_feed_carry_makes_no_duplicates(store: Store) -> None:
    # Two podcasts of one network: every episode links to the network's home page.
    home = "https://network.example/"
    store.sync_sources(
        [
            SourceConfig(url="https://a.example/1", title="Show A"),
            SourceConfig(url="https://b.example/1", title="Show B"),
        ],
        NOW,
    )
    show_a, show_b = store.claim_due_feeds("w", NOW, LEASE, 10)
    episodes_a = [_entry(key, link=home) for key in ("a1", "a2")]
    store.save_update(show_a.id, "w", FeedUpdate(last_fetch_at=NOW), episodes_a)
    store.save_update(show_b.id, "w", FeedUpdate(last_fetch_at=NOW), [_entry("b1", link=home)])
    # Show B's episode is not "the same article" as show A's first: all three are shown.
    assert len(store.get_latest()) == 3


def test_stories_keep_assignments_counts_and_labels(store: Store) -> None:

    store.sync_sources(
        [
            SourceConfig(url="https://a.example/1", title="A"),
            SourceConfig(url="https://b.example/1", title="B"),
        ],
        NOW,
    )
    a, b = store.claim_due_feeds("w", NOW, LEASE, 10)
    first = store.save_update(
        a.id, "w", FeedUpdate(last_fetch_at=NOW), [_entry("a1"), _entry("a2")]
    )
    second = store.save_update(b.id, "w", FeedUpdate(last_fetch_at=NOW), [_entry("b1")])
    ungrouped = store.get_ungrouped(10)
    # by id: each document's entries from its end (the oldest, in a feed's usual order)
    assert [e.id for e in ungrouped] == [*reversed(first.new_ids), *second.new_ids]
    # grouping reads the text and the source of each entry, not its content
    assert ungrouped[2] == EntryText(
        id=second.new_ids[0],
        feed_id=b.id,
        title="A title",
        summary="Summary",
        link="https://example.org/b1",
        first_seen_at=ungrouped[2].first_seen_at,
        published_at=ungrouped[2].published_at,
        language=None,
    )
    founder, other, joiner = (*reversed(first.new_ids), *second.new_ids)  # in id order
    store.save_assignments(
        [
            StoryAssignment(founder, founder, 1.0, ()),
            StoryAssignment(other, other, 1.0, ()),
            StoryAssignment(joiner, founder, 0.8, ("floods", "danube")),
        ],
        [StoryLabel(founder, "Danube floods", founder, ("danube", "floods"), "en")],
    )
    assert store.get_ungrouped(10) == []
    grouped = store.get_grouped_since(NOW - timedelta(days=3650), 10)  # the warm start's read
    assert [(e.id, e.story_id, e.group_score) for e in grouped] == [
        (founder, founder, 1.0),
        (other, other, 1.0),
        (joiner, founder, 0.8),
    ]
    # beyond its limit, the warm start replays the newest entries (the active stories)
    newest = store.get_grouped_since(NOW - timedelta(days=3650), 2)
    assert [e.id for e in newest] == [other, joiner]
    (story,) = store.get_stories()  # the single-source story is not shown as a group
    assert (story.id, story.headline, story.terms) == (
        founder,
        "Danube floods",
        ("danube", "floods"),
    )
    assert (story.entry_count, story.source_count, story.sources) == (2, 2, ("A", "B"))
    assert [e.id for e in store.get_story_entries(founder)] == [founder, joiner]
    assert len(store.get_stories(min_sources=1)) == 2
    assert store.counts()["stories"] == 2
    store.clear_stories()
    assert store.get_stories(min_sources=1) == [] and len(store.get_ungrouped(10)) == 3
    assert store.get_grouped_since(NOW - timedelta(days=3650), 10) == []  # all cleared


def test_named_lock_has_one_holder_until_it_expires(store: Store) -> None:
    ttl = timedelta(minutes=1)
    assert store.acquire_lock("grouper", "w1", NOW, ttl) == (True, None)
    assert store.acquire_lock("grouper", "w2", NOW, ttl) == (False, "w1")
    assert store.acquire_lock("grouper", "w1", NOW + ttl / 2, ttl) == (True, "w1")
    assert store.acquire_lock("grouper", "w2", NOW + 2 * ttl, ttl) == (True, "w1")


def test_a_released_lock_is_free_at_once_and_names_who_gave_it_up(store: Store) -> None:
    """The next holder learns who held the lease last (a grouper that did not must warm
    start), and the one that gave it up can no longer write under it."""
    ttl = timedelta(minutes=5)
    assert store.acquire_lock("grouper", "regroup", NOW, ttl) == (True, None)
    store.release_lock("grouper", "regroup")
    assert not store.save_assignments([], fence=("grouper", "regroup", NOW + ttl))
    assert store.acquire_lock("grouper", "w1", NOW + ttl / 10, ttl) == (True, "regroup")
    store.release_lock("grouper", "someone else")  # not the holder: nothing changes
    assert store.acquire_lock("grouper", "w2", NOW + ttl / 5, ttl) == (False, "w1")


def test_a_fenced_write_extends_the_lock_and_never_shortens_it(store: Store) -> None:
    ttl = timedelta(minutes=1)
    store.acquire_lock("grouper", "w1", NOW, 10 * ttl)
    assert store.save_assignments([], fence=("grouper", "w1", NOW + ttl))  # not shortened
    assert store.acquire_lock("grouper", "w2", NOW + 5 * ttl, ttl) == (False, "w1")
    assert store.save_assignments([], fence=("grouper", "w1", NOW + 20 * ttl))  # extended
    assert store.acquire_lock("grouper", "w2", NOW + 15 * ttl, ttl) == (False, "w1")
    assert not store.save_assignments([], fence=("grouper", "w2", NOW + 20 * ttl))  # not its


def test_a_new_sources_undated_back_catalogue_stays_out_of_merged_outputs(
    store: Store,
) -> None:
    """A feed added with a hundred undated items: they all take the time of its first
    poll, and would fill the merged feeds as news of that minute. The merged lists show
    the document's first three; the source's own list shows them all; undated items it
    publishes later are news; grouping keeps the rest apart as old news."""
    from aggregator.models import is_backlog

    store.sync_sources(_sources("https://undated.example/1", "https://dated.example/1"), NOW)
    undated, dated = store.claim_due_feeds("w", NOW, LEASE, 10)
    archive = [_entry(f"u{i}", f"Archive {i}", published_at=None) for i in range(100)]
    store.save_update(undated.id, "w", FeedUpdate(last_fetch_at=NOW), archive)
    recent = [_entry(f"d{i}", f"Dated {i}") for i in range(5)]
    store.save_update(dated.id, "w", FeedUpdate(last_fetch_at=NOW), recent)

    merged = {e.title for e in store.get_latest(limit=200)}
    assert {t for t in merged if t.startswith("Archive")} == {"Archive 0", "Archive 1", "Archive 2"}
    assert len([t for t in merged if t.startswith("Dated")]) == 5
    assert len(store.get_latest(limit=200, feed_id=undated.id)) == 100
    assert len(store.get_latest(limit=200, tag="world")) == 8
    kept_apart = [e for e in store.get_ungrouped(200) if is_backlog(e, timedelta(days=3))]
    assert len(kept_apart) == 97

    later = NOW + timedelta(hours=1)
    store.claim_due_feeds("w", later, LEASE, 10, force=True)
    fresh = [_entry(f"n{i}", f"Fresh {i}", published_at=None) for i in range(5)]
    store.save_update(undated.id, "w", FeedUpdate(last_fetch_at=later), [*fresh, *archive], later)
    merged = {e.title for e in store.get_latest(limit=200)}
    assert {f"Fresh {i}" for i in range(5)} <= merged  # news now: not its first poll

    # another source publishes an article of that back catalogue: it is news, shown
    store.claim_due_feeds("w", later, LEASE, 10, force=True)
    reprint = _entry("r", "Fresh news on the u7 article", link="https://example.org/u7")
    store.save_update(dated.id, "w", FeedUpdate(last_fetch_at=later), [reprint], later)
    assert "Fresh news on the u7 article" in {e.title for e in store.get_latest(limit=200)}


def test_prune_keeps_recent_and_the_newest_per_feed(store: Store) -> None:
    store.sync_sources(
        [SourceConfig(url="https://busy.example/1"), SourceConfig(url="https://quiet.example/1")],
        NOW,
    )
    busy, quiet = store.claim_due_feeds("w", NOW, LEASE, 10)
    old = NOW - timedelta(days=200)
    busy_items = [_entry(f"b{i}", published_at=NOW - timedelta(days=i * 20)) for i in range(10)]
    quiet_items = [_entry(f"q{i}", published_at=old - timedelta(days=i)) for i in range(3)]
    store.save_update(busy.id, "w", FeedUpdate(last_fetch_at=NOW), busy_items)
    store.save_update(quiet.id, "w", FeedUpdate(last_fetch_at=NOW), quiet_items)

    deleted = store.prune(NOW, Retention(timedelta(days=90), keep_min=2))

    remaining = {e.key for e in store.get_latest(limit=100)}
    assert remaining == {"b0", "b1", "b2", "b3", "b4", "q0", "q1"}  # b4 is 80 days old
    assert deleted == 6


def test_a_story_whose_last_entry_moved_away_is_deleted(store: Store) -> None:
    """Grouping's second look moves an entry to another story: the story it left, with
    nothing in it any more, goes (it was left behind with its old counts, a page with a
    headline and no coverage)."""
    store.sync_sources(_sources("https://a.example/1"), NOW)
    (feed,) = store.claim_due_feeds("w", NOW, LEASE, 10)
    first, second = store.save_update(
        feed.id, "w", FeedUpdate(last_fetch_at=NOW), [_entry("x"), _entry("y")]
    ).new_ids
    store.save_assignments(
        [StoryAssignment(first, first, 1.0, ()), StoryAssignment(second, second, 1.0, ())],
        [StoryLabel(first, "X", first, ()), StoryLabel(second, "Y", second, ())],
    )
    store.save_assignments([StoryAssignment(second, first, 0.5, ("moved",))])

    assert store.get_story(second) is None
    story = store.get_story(first)
    assert story is not None and story.entry_count == 2
    assert store.counts()["stories"] == 1


def test_a_story_whose_headline_entry_is_pruned_takes_the_earliest_left(store: Store) -> None:
    store.sync_sources(_sources("https://a.example/1"), NOW)
    (feed,) = store.claim_due_feeds("w", NOW, LEASE, 10)
    items = [
        _entry("old", "Old headline", published_at=NOW - timedelta(days=100)),
        _entry("mid", "Middle report", published_at=NOW - timedelta(days=2)),
        _entry("new", "Newest report", published_at=NOW - timedelta(days=1)),
    ]
    saved = store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), items).new_ids
    ids = {entry.key: entry.id for entry in store.get_latest(10)}
    old, mid = ids["old"], ids["mid"]
    store.save_assignments(
        [StoryAssignment(entry_id, old, 1.0, ()) for entry_id in saved],
        [StoryLabel(old, "Old headline", old, ())],
    )
    assert store.prune(NOW, Retention(timedelta(days=90), keep_min=1)) == 1

    story = store.get_story(old)
    assert story is not None and story.entry_count == 2
    assert (story.headline, story.headline_entry_id) == ("Middle report", mid)


def test_prune_keeps_nothing_old_of_a_source_removed_from_the_config(store: Store) -> None:
    """A listed feed keeps its newest entries however old; a removed one does not, or
    its last entries would stay forever."""
    store.sync_sources(_sources("https://kept.example/1", "https://gone.example/1"), NOW)
    kept, gone = store.claim_due_feeds("w", NOW, LEASE, 10)
    old = [NOW - timedelta(days=200 + i) for i in range(3)]
    store.save_update(
        kept.id,
        "w",
        FeedUpdate(last_fetch_at=NOW),
        [_entry(f"k{i}", published_at=when) for i, when in enumerate(old)],
    )
    store.save_update(
        gone.id,
        "w",
        FeedUpdate(last_fetch_at=NOW),
        [_entry(f"g{i}", published_at=when) for i, when in enumerate(old)],
    )
    store.sync_sources(_sources("https://kept.example/1"), NOW)

    assert store.prune(NOW, Retention(timedelta(days=90), keep_min=2)) == 4
    assert {e.key for e in store.get_latest(limit=10, feed_id=kept.id)} == {"k0", "k1"}
    assert store.get_latest(limit=10, feed_id=gone.id) == []


def test_a_big_prune_leaves_a_small_sqlite_log_and_vacuum_shrinks_the_file(
    sqlite_url: str,
) -> None:
    """Deleting many entries in batches, then a checkpoint: the write-ahead log does not
    keep the size of what was deleted; `vacuum` gives the room back to the disk."""
    store = Store(sqlite_url)
    store.upgrade()
    store.sync_sources(_sources("https://big.example/1"), NOW)
    (feed,) = store.claim_due_feeds("w", NOW, LEASE, 10)
    body = "<p>" + "words of an article " * 500 + "</p>"  # 10 KB each
    items = [
        _entry(f"e{i}", content_html=body, published_at=NOW - timedelta(days=100, minutes=i))
        for i in range(2500)
    ]
    store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), items)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    wal = path.with_name(path.name + "-wal")
    reader = store._engine.connect()  # a page being served meanwhile (the web's pool)
    try:
        assert store.prune(NOW, Retention(timedelta(days=90), keep_min=1)) == 2499
    finally:
        reader.close()
    assert wal.stat().st_size <= SQLITE_WAL_LIMIT_BYTES  # 27 MB deleted
    sizes = store.vacuum()
    assert sizes is not None and sizes[1] < sizes[0] / 4
    assert [e.key for e in store.get_latest(10)] == ["e0"]
    store.close()


def test_the_checkpoint_after_a_prune_never_holds_writers_behind_a_reader(
    sqlite_url: str,
) -> None:
    """A page being read keeps its snapshot: the checkpoint gives up at once rather
    than wait for it, holding off the worker's writes meanwhile."""
    store = Store(sqlite_url)
    store.upgrade()
    store.record_tick("w", NOW, 30)
    reader = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM workers").fetchall()  # holds a snapshot
        started = time.monotonic()
        store.checkpoint()
        store.record_tick("w", NOW + timedelta(seconds=1), 30)
        assert time.monotonic() - started < 2  # waited 30 s (the busy timeout) before
    finally:
        reader.close()
        store.close()


def test_saving_leaves_out_new_entries_that_retention_would_delete(store: Store) -> None:
    """A feed's document keeps items that retention deletes (a weekly blog listing a
    year of posts): they are not stored, and a later change of the document does not
    bring them back as new entries, to be deleted again by the next prune."""
    store.sync_sources(_sources("https://blog.example/feed"), NOW)
    (feed,) = store.claim_due_feeds("w", NOW, LEASE, 10)
    retention = Retention(timedelta(days=90), keep_min=2)
    document = [_entry(f"b{i}", published_at=NOW - timedelta(days=i * 20)) for i in range(10)]
    first = store.save_update(
        feed.id, "w", FeedUpdate(last_fetch_at=NOW), document, retention=retention
    )
    stored = {e.key: e.id for e in store.get_latest(limit=100)}
    assert set(stored) == {"b0", "b1", "b2", "b3", "b4"}  # as prune keeps them
    assert len(first.new_ids) == 5
    assert store.prune(NOW, retention) == 0

    # a month later the blog publishes twice; its document still lists the old posts
    later = NOW + timedelta(days=30)
    store.claim_due_feeds("w", later, LEASE, 10, force=True)
    fresh = [_entry(f"n{i}", published_at=later - timedelta(hours=i)) for i in range(2)]
    second = store.save_update(
        feed.id,
        "w",
        FeedUpdate(last_fetch_at=later),
        [*fresh, *document],
        now=later,
        retention=retention,
    )
    assert len(second.new_ids) == 2  # the two new posts, nothing old again
    after = {e.key: e.id for e in store.get_latest(limit=100)}
    assert set(after) == {"n0", "n1", *stored}
    assert all(after[key] == entry_id for key, entry_id in stored.items())  # the same rows
    assert store.prune(later, retention) == 1  # b4 aged out


def test_retention_at_save_ranks_like_prune_with_few_entries(store: Store) -> None:
    """Old entries are kept while the feed has fewer than `keep_min` newer ones, and
    among equal dates the item listed first wins (a feed lists its newest first), as
    prune's ranking (date, then id) says."""
    store.sync_sources(_sources("https://quiet.example/feed"), NOW)
    (feed,) = store.claim_due_feeds("w", NOW, LEASE, 10)
    old = NOW - timedelta(days=400)
    items = [_entry(f"q{i}", published_at=old) for i in range(4)]
    retention = Retention(timedelta(days=90), keep_min=3)
    store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), items, retention=retention)
    assert {e.key for e in store.get_latest(limit=100)} == {"q0", "q1", "q2"}
    assert store.prune(NOW, retention) == 0


def _entry_statistics(database_url: str) -> tuple[int, float]:
    """(rows changed since the last ANALYZE, rows the planner believes) of entries."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        changed = conn.execute(
            text(
                "SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                "WHERE relid = 'entries'::regclass"
            )
        ).scalar_one()
        believed = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = 'entries'::regclass")
        ).scalar_one()
    engine.dispose()
    return changed, believed


def test_postgres_statistics_follow_a_table_filled_at_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first poll fills an empty entries table faster than autovacuum analyzes it:
    the store analyzes it itself once it changed by half (here at least 50 rows)."""
    monkeypatch.setattr(store_module, "ANALYZE_MIN_ROWS", 50)
    store = Store(postgres_url)
    store.upgrade()
    store.sync_sources(_sources("https://a.example/feed"), NOW)
    feed = store.claim_due_feeds("w", NOW, LEASE, 1)[0]
    items = [_entry(f"k{n}", title=f"Title {n}") for n in range(200)]
    store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), items)
    deadline = time.monotonic() + 10  # a backend reports its counters within a second
    while _entry_statistics(postgres_url)[0] < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _entry_statistics(postgres_url)[1] <= 0  # never analyzed: no estimate

    assert store.refresh_statistics() is True
    assert _entry_statistics(postgres_url) == (0, 200)
    assert store.refresh_statistics() is False  # nothing changed since
    store.close()


def test_sqlite_has_no_statistics_to_refresh(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/agg.db")
    store.upgrade()
    assert store.refresh_statistics() is False


def test_a_backup_is_a_consistent_copy_taken_while_a_writer_works(
    tmp_path: Path, sqlite_url: str
) -> None:
    """`aggregator db backup`: a SQLite store copied while another connection holds the
    write lock mid-transaction: the copy opens as a store at the newest schema, with the
    committed entries and not the uncommitted one; an existing file is never overwritten."""
    store = Store(sqlite_url)
    store.upgrade()
    store.sync_sources(_sources("https://a.example/feed"), NOW)
    (feed,) = store.claim_due_feeds("w", NOW, LEASE, 10)
    store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), [_entry("a1"), _entry("a2")])
    writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    writer.isolation_level = None
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE entries SET title = 'uncommitted'")
    target = tmp_path / "copy.db"
    assert store.backup(target) == target.stat().st_size
    writer.execute("ROLLBACK")
    writer.close()

    copy = Store(f"sqlite:///{target}")
    assert copy.schema_is_current()
    assert sorted(e.key for e in copy.get_latest(10)) == ["a1", "a2"]
    assert all(e.title != "uncommitted" for e in copy.get_latest(10))
    copy.close()
    with pytest.raises(StoreError, match="exists"):
        store.backup(target)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    store.close()


def test_a_postgresql_store_is_not_backed_up_here(postgres_url: str, tmp_path: Path) -> None:
    store = Store(postgres_url)
    with pytest.raises(StoreError, match="pg_dump"):
        store.backup(tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    store.close()
