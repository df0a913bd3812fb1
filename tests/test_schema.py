"""The table definitions the queries use (`store/schema.py`) match what the migrations
build, so a query never relies on an index or column that a migrated database lacks; and
upgrading a database made by an earlier release keeps what it holds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from aggregator.models import EntryData, SourceConfig, StoryAssignment, StoryLabel
from aggregator.normalise import content_hash
from aggregator.parse import parse_feed
from aggregator.store import FeedUpdate, SaveOutcome, Store, migrate
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


def _fetch(store: Store, items: list[EntryData], at: datetime) -> SaveOutcome:
    """Store `items` as the one feed's fetch at `at`, as a worker would."""
    (feed,) = store.claim_due_feeds("w", at, timedelta(minutes=5), 10)
    return store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=at), items, at)


RSS_WITHOUT_GUIDS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>heise</title><link>https://www.heise.de/</link>
<item><title>HTC 10</title><link>https://www.heise.de/meldung/HTC-10-3170110.html?wt_mc=rss.ho.beitrag.rdf</link>
<pubDate>Tue, 12 Apr 2016 10:00:00 +0200</pubDate></item>
<item><title>Badlock</title><link>https://www.heise.de/meldung/Badlock-3171016.html?wt_mc=rss.ho.beitrag.rdf&amp;x=1</link>
<guid isPermaLink="false">heise-3171016</guid>
<pubDate>Tue, 12 Apr 2016 11:00:00 +0200</pubDate></item>
</channel></rss>"""


def test_upgrading_cleans_stored_links_without_storing_or_editing_entries_again(
    database_url: str,
) -> None:
    """Entries stored by the previous release (migration 0006) with links that still held
    an analytics tag it did not know (heise's `wt_mc`): after the upgrade their links are
    clean, and the next fetch of the same document neither stores them again (the one
    identified by its link was re-keyed) nor reports them edited; a real edit later is."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    fetched = parse_feed(RSS_WITHOUT_GUIDS, url="https://www.heise.de/rss", fetched_at=now)
    clean = [e.link for e in fetched.entries]
    assert clean == [
        "https://www.heise.de/meldung/HTC-10-3170110.html",
        "https://www.heise.de/meldung/Badlock-3171016.html?x=1",
    ]
    tag = "wt_mc=rss.ho.beitrag.rdf"
    old = [  # as the previous release stored them: the tag kept, the key the link or guid
        replace(fetched.entries[0], link=f"{clean[0]}?{tag}", key=f"{clean[0]}?{tag}"),
        replace(fetched.entries[1], link=clean[1].replace("?x=1", f"?{tag}&x=1")),
        # a second copy of the first article, under another tag value: it keeps its key
        replace(
            fetched.entries[0],
            title="Copy",
            link=f"{clean[0]}?wt_mc=rss",
            key=f"{clean[0]}?wt_mc=rss",
        ),
    ]
    old = [replace(e, content_hash=content_hash(e)) for e in old]

    store = Store(database_url)
    store.upgrade()
    store.sync_sources([SourceConfig(url="https://www.heise.de/rss")], now)
    assert len(_fetch(store, old, now).new_ids) == 3
    with store._engine.begin() as conn:  # back to what the previous release left
        conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))
        conn.execute(text("ALTER TABLE entries DROP COLUMN detected_language"))  # 0008's
    store.close()

    store = Store(database_url)
    store.upgrade()
    links = {e.title: e.link for e in store.get_latest(10)}
    assert links == {"HTC 10": clean[0], "Badlock": clean[1], "Copy": clean[0]}
    again = _fetch(store, fetched.entries, now + timedelta(hours=1))
    assert (again.new_ids, again.changed_ids) == ((), ())
    updated = {e.title: e.updated_at for e in store.get_latest(10)}
    assert updated["HTC 10"] == fetched.entries[0].updated_at  # not bumped by the refresh
    edited = replace(fetched.entries[0], title="HTC 10, updated")
    last = _fetch(
        store, [replace(edited, content_hash=content_hash(edited))], now + timedelta(hours=2)
    )
    assert (last.new_ids, len(last.changed_ids)) == ((), 1)
    store.close()


RSS_WITH_LINKS_IN_TEXT = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Scripting News</title><link>http://scripting.com/</link>
<item><author>dave@scripting.com (Dave Winer)</author>
<description>This is the &lt;a href="https://t.example/1"&gt;human side&lt;/a&gt; of
&lt;a href="http://scripting.com/x.html"&gt;Health care is socialist&lt;/a&gt;.</description>
<pubDate>Mon, 26 Jun 2017 19:40:58 GMT</pubDate>
<guid>http://scripting.com/2017/06/26.html#a030658</guid></item>
</channel></rss>"""


def test_upgrading_refreshes_text_read_the_old_way_without_an_edit(
    database_url: str,
) -> None:
    """An entry stored before summaries were read with no space at inline tags ("...
    socialist .") and authors by name: after the upgrade (0009), the next fetch of the
    same document stores the new text without reporting an edit or moving its updated
    time."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    (entry,) = parse_feed(
        RSS_WITH_LINKS_IN_TEXT, url="http://scripting.com/rss.xml", fetched_at=now
    ).entries
    assert entry.summary == "This is the human side of Health care is socialist."
    assert entry.author == "Dave Winer"
    old = replace(
        entry,
        summary="This is the human side of Health care is socialist .",
        author="dave@scripting.com (Dave Winer)",
    )
    old = replace(old, content_hash=content_hash(old))

    store = Store(database_url)
    store.upgrade()
    store.sync_sources([SourceConfig(url="http://scripting.com/rss.xml")], now)
    assert len(_fetch(store, [old], now).new_ids) == 1
    with store._engine.begin() as conn:  # back to what the previous release left
        conn.execute(text("UPDATE alembic_version SET version_num = '0008'"))
    store.close()

    store = Store(database_url)
    store.upgrade()
    again = _fetch(store, [entry], now + timedelta(hours=1))
    assert (again.new_ids, again.changed_ids) == ((), ())
    (stored,) = store.get_latest(10)
    assert stored.summary == "This is the human side of Health care is socialist."
    assert stored.author == "Dave Winer"
    assert stored.updated_at == entry.updated_at  # not bumped by the refresh
    store.close()


def _upgraded_from(store: Store, version: str, *statements: str, **params: object) -> Store:
    """The store as the release at `version` left it (`statements` undo this release's
    work), closed and opened again: the upgrade runs the migrations after `version`."""
    with store._engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)
        conn.execute(text(f"UPDATE alembic_version SET version_num = '{version}'"))
    store.close()
    store = Store(store.database_url)
    store.upgrade()
    return store


def _one_story(store: Store, links: list[str], now: datetime) -> list[int]:
    """One entry per feed (in id order) at `links`, all grouped into one story."""
    claimed = sorted(store.claim_due_feeds("w", now, timedelta(minutes=5), 10), key=lambda f: f.id)
    ids: list[int] = []
    for feed, link in zip(claimed, links, strict=True):
        item = EntryData(
            key=link,
            title="Bridge reopens",
            link=link,
            published_at=now,
            updated_at=None,
            summary="",
            content_hash=link,
        )
        ids += store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=now), [item], now).new_ids
    store.save_assignments(
        [StoryAssignment(entry_id, ids[0], 1.0, ()) for entry_id in ids],
        [StoryLabel(ids[0], "Bridge reopens", ids[0], ())],
    )
    return ids


def test_upgrading_counts_a_page_two_feeds_carry_as_one_source(database_url: str) -> None:
    """A story stored by the previous release (0009), which counted a page that a site's
    two feeds carry (one link) as two sources beside another outlet's report: after the
    upgrade (0010) it has two sources, not three."""
    now = datetime(2026, 12, 8, tzinfo=UTC)
    store = Store(database_url)
    store.upgrade()
    urls = ["https://site.example/all", "https://site.example/front", "https://other.example/f"]
    store.sync_sources([SourceConfig(url=url) for url in urls], now)
    links = ["https://site.example/a", "https://site.example/a", "https://other.example/b"]
    ids = _one_story(store, links, now)
    assert store.get_story(ids[0]).source_count == 2  # type: ignore[union-attr]
    store = _upgraded_from(store, "0009", "UPDATE stories SET source_count = 3")
    assert store.get_story(ids[0]).source_count == 2  # type: ignore[union-attr]
    store.close()


def test_upgrading_leaves_removed_sources_out_of_story_counts(database_url: str) -> None:
    """A story of three outlets, one of them removed from the config under the previous
    release (0010), which went on counting it: after the upgrade (0011), two sources."""
    now = datetime(2026, 12, 8, tzinfo=UTC)
    store = Store(database_url)
    store.upgrade()
    sources = [SourceConfig(url=f"https://{name}.example/feed") for name in ("a", "b", "c")]
    store.sync_sources(sources, now)
    ids = _one_story(store, [f"{source.url}/bridge" for source in sources], now)
    store.sync_sources(sources[:2], now)
    assert store.get_story(ids[0]).source_count == 2  # type: ignore[union-attr]
    store = _upgraded_from(store, "0010", "UPDATE stories SET source_count = 3")
    assert store.get_story(ids[0]).source_count == 2  # type: ignore[union-attr]
    store.close()


def test_upgrading_deletes_stories_left_empty_and_relabels_pruned_headlines(
    database_url: str,
) -> None:
    """What the previous release (0011) left: a story whose only entry moved away, and
    one whose headline entry was pruned."""
    now = datetime(2026, 12, 8, tzinfo=UTC)
    store = Store(database_url)
    store.upgrade()
    store.sync_sources([SourceConfig(url=f"https://{n}.example/feed") for n in "ab"], now)
    first, second = _one_story(store, ["https://a.example/1", "https://b.example/2"], now)
    store = _upgraded_from(
        store,
        "0011",
        "INSERT INTO stories (id, headline, headline_entry_id, terms, entry_count, "
        "source_count, first_seen_at, last_updated_at) "
        "VALUES (99999, 'Ghost', 99999, '[]', 1, 1, :now, :now)",
        f"UPDATE stories SET headline_entry_id = 12345 WHERE id = {first}",
        now=now,
    )
    assert store.get_story(99999) is None
    story = store.get_story(first)
    assert story is not None and story.headline_entry_id in (first, second)
    assert story.headline == "Bridge reopens"
    store.close()
