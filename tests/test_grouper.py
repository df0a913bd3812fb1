"""Grouping in the worker: entries polled from several real feeds become stories in the
store, one worker groups at a time, and `regroup` / `stories --explain` work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import aggregator.group
import aggregator.grouper
from aggregator.cli import cli
from aggregator.config import load_config
from aggregator.grouper import Grouper
from aggregator.models import EntryData, Story
from aggregator.scheduler import Worker
from aggregator.store import Store
from tests.conftest import write_config
from tests.feedserver import FeedServer
from tests.test_group import IOS

FLOODS = {
    "Flooding forces thousands from homes along the Danube",
    "Danube floods: evacuations widen as levees strain",
    "Thousands evacuated as Danube bursts banks",
}


def _worker(tmp_path: Path, store: Store, server: FeedServer) -> Worker:
    urls = [server.url(name) for name in ("world.rss", "world.atom", "world.rdf")]
    return Worker(load_config(write_config(tmp_path / "agg.toml", store.database_url, urls)), store)


def test_worker_groups_coverage_from_several_outlets(
    tmp_path: Path, store: Store, recent_feed_server: FeedServer
) -> None:
    _worker(tmp_path, store, recent_feed_server).tick()

    assert store.get_ungrouped(10) == []
    floods = [s for s in store.get_stories() if s.headline in FLOODS]
    assert len(floods) == 1, [s.headline for s in store.get_stories()]
    story = floods[0]
    assert story.source_count == 3 and len(story.sources) == 3
    assert {e.title for e in store.get_story_entries(story.id)} == FLOODS
    assert "danube" in [term.lower() for term in story.terms]


def test_story_ids_stay_stable_across_workers_and_regroup(
    tmp_path: Path, store: Store, recent_feed_server: FeedServer
) -> None:
    first = _worker(tmp_path, store, recent_feed_server)
    first.tick()
    ids = {s.headline: s.id for s in store.get_stories(min_sources=1)}

    # Another worker takes the grouping over after the lease: warm start, same stories.
    later = datetime.now(UTC) + timedelta(minutes=10)
    other = Grouper(store, "other-worker")
    assert other.run(later) == 0
    assert {s.headline: s.id for s in store.get_stories(min_sources=1)} == ids

    assert Grouper(store, "regroup").regroup() == store.count_entries()
    assert {s.headline: s.id for s in store.get_stories(min_sources=1)} == ids


def test_a_worker_that_lost_the_grouping_lets_its_index_go(
    tmp_path: Path, store: Store, recent_feed_server: FeedServer
) -> None:
    """Once another worker holds the grouping, this worker's index is stale (a warm start
    would rebuild it if the lease came back): it is not kept in memory meanwhile."""
    first = _worker(tmp_path, store, recent_feed_server)
    first.tick()
    assert first.grouper.index is not None
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert Grouper(store, "other-worker").run(later) == 0  # took the lease over
    assert first.grouper.run(later) is None
    assert first.grouper.index is None


def test_a_worker_groups_into_the_stories_a_regroup_made(store: Store) -> None:
    """`regroup` (here with a stricter threshold) while a worker keeps its index: the
    worker's next run starts from the regrouped stories, so a new entry repeating one
    headline joins that headline's story, not the story the worker's old index had."""
    from aggregator.models import SourceConfig
    from aggregator.store import FeedUpdate

    now = datetime.now(UTC)
    urls = [f"https://outlet{i}.example/feed" for i in range(3)]
    store.sync_sources([SourceConfig(url=url, title=url) for url in urls], now)
    feeds = sorted(store.claim_due_feeds("w", now, timedelta(minutes=5), 10), key=lambda f: f.url)
    titles = ("Oil prices surge as OPEC cuts output", "Oil prices surge after OPEC output cut")

    def publish(i: int, title: str, at: datetime) -> int:
        saved = store.save_update(
            feeds[i].id, "w", FeedUpdate(last_fetch_at=at), [_entry_data(i, title, at)]
        )
        (entry_id,) = saved.new_ids
        return entry_id

    first, second = publish(0, titles[0], now), publish(1, titles[1], now)
    worker = Grouper(store, "worker")
    assert worker.run(now) == 2
    assert store.get_story(first).entry_count == 2  # type: ignore[union-attr]

    assert Grouper(store, "regroup", threshold=0.99).regroup() == 2  # one story each
    later = now + timedelta(minutes=1)
    third = publish(2, titles[1], later)
    assert worker.run(later) == 1
    story_of_second = {e.id for e in store.get_story_entries(second)}
    assert story_of_second == {second, third}
    assert store.get_story(first).entry_count == 1  # type: ignore[union-attr]


def test_only_one_worker_groups_at_a_time(tmp_path: Path, store: Store) -> None:
    now = datetime.now(UTC)
    assert Grouper(store, "a").run(now) == 0
    assert Grouper(store, "b").run(now) is None


def test_cli_lists_and_explains_stories(
    tmp_path: Path, store: Store, recent_feed_server: FeedServer
) -> None:
    _worker(tmp_path, store, recent_feed_server).tick()
    config = str(tmp_path / "agg.toml")
    listing = CliRunner().invoke(cli, ["--config", config, "stories"])
    assert listing.exit_code == 0
    story = next(s for s in store.get_stories() if s.headline in FLOODS)
    assert f"{story.id:>7}       3       3" in listing.output
    explained = CliRunner().invoke(cli, ["--config", config, "stories", "--explain", str(story.id)])
    assert explained.exit_code == 0
    assert "founded the story" in explained.output and "shared:" in explained.output
    regrouped = CliRunner().invoke(cli, ["--config", config, "regroup"])
    assert regrouped.exit_code == 0 and "regrouped 7 entries" in regrouped.output


MERGE_TITLES = (
    "Danube floods force evacuations in Vienna",
    "Heavy rain swells rivers across Bavaria",
    "Danube floods in Vienna as heavy rain swells rivers across Bavaria",
)


def _store_entries(
    store: Store,
    titles: tuple[str, ...],
    ages: tuple[timedelta, ...] = (),
    languages: tuple[str | None, ...] = (),
) -> list[int]:
    """Outlet i's entry titles[i], first seen now and published ages[i] ago (default 0),
    declaring the language languages[i] (default none)."""
    from dataclasses import replace

    from aggregator.models import SourceConfig
    from aggregator.store import FeedUpdate

    now = datetime.now(UTC)
    urls = [f"https://outlet{i}.example/feed" for i in range(len(titles))]
    store.sync_sources([SourceConfig(url=url, title=url) for url in urls], now)
    feeds = sorted(store.claim_due_feeds("w", now, timedelta(minutes=5), 10), key=lambda f: f.url)
    ids = []
    for i, (feed, title) in enumerate(zip(feeds, titles, strict=True)):
        age = ages[i] if i < len(ages) else timedelta(0)
        data = _entry_data(i, title, now - age)
        data = replace(data, language=languages[i] if i < len(languages) else None)
        saved = store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=now), [data])
        ids.extend(saved.new_ids)
    return ids


def _entry_data(i: int, title: str, at: datetime) -> EntryData:
    """Outlet i's entry with this title, published at `at`."""
    return EntryData(
        key=f"k{i}",
        title=title,
        link=f"https://outlet{i}.example/{i}",
        published_at=at,
        updated_at=None,
        summary="",
        content_html="",
        tags=(),
        enclosures=(),
        content_hash=f"h{i}",
    )


def test_a_new_feeds_back_catalogue_stays_out_of_current_stories(
    tmp_path: Path, store: Store
) -> None:
    # Two outlets report today's floods; a feed added today also brings its article on
    # the floods of three weeks ago, first seen now. It is old news: a story of its own.
    titles = (*sorted(FLOODS)[:2], "Danube floods: thousands evacuated as river bursts banks")
    today, also_today, old = _store_entries(
        store, titles, (timedelta(0),) * 2 + (timedelta(days=21),)
    )
    grouper = Grouper(store, "w")
    assert grouper.run() == 3
    assert store.get_ungrouped(10) == []

    (current,) = store.get_stories()
    assert [e.id for e in store.get_story_entries(current.id)] == [today, also_today]
    single = store.get_story(old)
    assert single is not None and single.entry_count == 1
    assert single.headline == titles[2]
    config = str(write_config(tmp_path / "agg.toml", store.database_url, []))
    explained = CliRunner().invoke(cli, ["--config", config, "stories", "--explain", str(old)])
    assert "not grouped: published 21 days before it was first seen" in explained.output

    # A worker that warm-starts leaves it out of its index too: nothing can join it.
    later = datetime.now(UTC) + timedelta(minutes=10)
    other = Grouper(store, "other-worker")
    assert other.run(later) == 0
    assert other._index is not None
    assert set(other._index.active_story_ids) == {current.id}


def test_a_story_merge_persists_and_survives_a_warm_start(store: Store) -> None:
    from aggregator.group import StoryIndex

    first, second, bridge = _store_entries(store, MERGE_TITLES)
    grouper = Grouper(store, "merger")
    # Two stories, then an entry that joins one and makes the centroids converge:
    # with a permissive merge threshold the older story absorbs the younger one.
    grouper._index = StoryIndex(merge_threshold=0.05)
    assert grouper.run() == 3

    (story,) = store.get_stories(min_sources=1)
    assert story.id == first  # the older story's id is kept
    assert story.entry_count == 3 and story.source_count == 3
    assert story.headline_entry_id in (first, second, bridge)
    assert story.headline == MERGE_TITLES[story.headline_entry_id - first]
    assert [e.id for e in store.get_story_entries(first)] == [first, second, bridge]
    assert store.get_story(second) is None  # the absorbed story's row is gone

    # Another worker warm-starts from the store and continues with the merged story.
    later = datetime.now(UTC) + timedelta(minutes=10)
    other = Grouper(store, "other-worker")
    assert other.run(later) == 0
    assert other._index is not None and other._index.members(first) == (first, second, bridge)


def test_the_language_read_off_an_entry_is_kept_and_not_read_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry that declares no language is grouped in the one its text is written in;
    that language is stored (pages and feeds mark the entry with it; a back-catalogue
    entry, kept out of the index, gets it too), and a warm start takes it from the store
    instead of reading the text again."""
    german, english, french = _store_entries(
        store,
        (
            "Hochwasser an der Donau: Tausende müssen ihre Häuser verlassen",
            "Flooding forces thousands from homes along the Danube",
            "Inondations sur le Danube : des milliers de personnes quittent leur maison",
        ),
        ages=(timedelta(0), timedelta(0), timedelta(days=30)),  # the third: back catalogue
    )
    assert Grouper(store, "first").run() == 3
    languages = {e.id: e.language for e in store.get_latest()}
    assert languages == {german: "de", english: "en", french: "fr"}
    single = store.get_story(french)
    assert single is not None and single.language == "fr"

    read: list[str] = []
    monkeypatch.setattr(aggregator.group, "identify", lambda text: read.append(text))
    other = Grouper(store, "second")
    assert other.run(datetime.now(UTC) + timedelta(minutes=10)) == 0  # a warm start
    assert read == [] and other._index is not None and other._index.active_count == 2


def test_grouping_thresholds_come_from_the_config(tmp_path: Path, store: Store) -> None:
    import pytest

    from aggregator.exceptions import ConfigError

    path = write_config(
        tmp_path / "agg.toml", store.database_url, [], extra="group_threshold = 1.5"
    )
    with pytest.raises(ConfigError, match=r"agg.toml:\d+: .*group_threshold.*between 0 and 1"):
        load_config(path)
    write_config(path, store.database_url, [], extra="group_min_cosine = 0.2")
    settings = load_config(path, env={"AGGREGATOR_GROUP_THRESHOLD": "0.5"}).settings
    grouper = Grouper.from_settings(store, "w", settings)
    assert (grouper.threshold, grouper.min_cosine) == (0.5, 0.2)


def test_grouper_passes_an_optional_embedder_and_primes_each_batch(
    tmp_path: Path, store: Store, recent_feed_server: FeedServer
) -> None:
    primed: list[str] = []

    class Embedder:
        """Stands in for aggregator.embed.TitleEmbedder: 'meaning' = mentions the Danube."""

        def __call__(self, title: str) -> tuple[float, float]:
            return (1.0, 0.0) if "danube" in title.lower() else (0.0, 1.0)

        def prime(self, titles: list[str]) -> None:
            primed.extend(titles)

    _worker(tmp_path, store, recent_feed_server).tick()  # polls (and groups without embeddings)
    grouper = Grouper(store, "embedding-worker", embedder=Embedder())
    assert grouper.regroup() == store.count_entries()
    assert FLOODS <= set(primed)
    floods = [s for s in store.get_stories() if s.headline in FLOODS]
    assert len(floods) == 1 and floods[0].source_count == 3


def test_grouper_primes_only_the_titles_the_embedding_stage_embeds(store: Store) -> None:
    primed: list[str] = []

    class Embedder:
        def __call__(self, title: str) -> tuple[float, float]:
            return (1.0, 0.0)

        def prime(self, titles: list[str]) -> None:
            primed.extend(titles)

    titles = ("Hochwasser an der Donau: Wien evakuiert", "Donau-Hochwasser erreicht Wien")
    _store_entries(store, (*titles, MERGE_TITLES[0]), languages=("de", "de", "en-GB"))
    grouper = Grouper(store, "embedding-worker", embedder=Embedder())
    assert grouper.run() == 3
    assert primed == [MERGE_TITLES[0]]  # the model never sees the German titles


# the index test's iOS story with its early wrong join, then a headline a day later
IOS_TITLES = (*IOS, "Storm Ana floods the coast")


def _ios_outlets(store: Store, now: datetime) -> Callable[[int, datetime], int]:
    """One feed per IOS_TITLES headline; returns save(i, at): stores outlet i's headline
    as first seen at `at` and gives its entry id."""
    from aggregator.models import SourceConfig
    from aggregator.store import FeedUpdate

    urls = [f"https://outlet{i}.example/feed" for i in range(len(IOS_TITLES))]
    store.sync_sources([SourceConfig(url=url, title=url) for url in urls], now)
    feeds = sorted(store.claim_due_feeds("w", now, timedelta(minutes=5), 10), key=lambda f: f.url)

    def save(i: int, at: datetime) -> int:
        data = _entry_data(i, IOS_TITLES[i], at)
        update = FeedUpdate(last_fetch_at=at)
        return store.save_update(feeds[i].id, "w", update, [data], now=at).new_ids[0]

    return save


def test_a_second_look_move_persists_and_survives_a_warm_start(store: Store) -> None:
    now = datetime.now(UTC)
    day_ago = now - timedelta(hours=30)
    save = _ios_outlets(store, now)
    ids = [save(i, day_ago) for i in range(7)]
    grouper = Grouper(store, "looker")
    assert grouper.run() == 7
    first, shares = ids[0], ids[1]
    assert [e.id for e in store.get_story_entries(first)] == ids  # one story on arrival

    # A day later the worker looks again: the shares headline leaves the iOS story
    # for a story of its own, saved with the next batch (the storm headline).
    storm = save(7, now)
    assert grouper.run() == 1
    assert [e.id for e in store.get_story_entries(first)] == [first, *ids[2:]]
    moved = store.get_story(shares)
    assert moved is not None and moved.entry_count == 1 and moved.headline == IOS_TITLES[1]
    story = store.get_story(first)
    assert story is not None and story.entry_count == 6 and story.headline != IOS_TITLES[1]
    assert store.get_story(storm) is not None

    # Another worker warm-starts from the store and sees the stories as they are now.
    other = Grouper(store, "other-worker")
    assert other.run(now + timedelta(minutes=10)) == 0
    assert other._index is not None
    assert other._index.members(first) == (first, *ids[2:])
    assert other._index.members(shares) == (shares,)


def test_a_second_look_still_waiting_survives_a_worker_restart(store: Store) -> None:
    now = datetime.now(UTC)
    day_ago = now - timedelta(hours=30)
    save = _ios_outlets(store, now)
    ids = [save(i, day_ago) for i in range(7)]
    assert Grouper(store, "looker").run() == 7
    first, shares = ids[0], ids[1]
    assert [e.id for e in store.get_story_entries(first)] == ids  # one story on arrival

    # The worker restarts before the look is due: the new process rebuilds its index
    # from the store, and its next run gives the shares headline its look all the same.
    restarted = Grouper(store, "looker")
    save(7, now)
    assert restarted.run() == 1
    assert [e.id for e in store.get_story_entries(first)] == [first, *ids[2:]]
    moved = store.get_story(shares)
    assert moved is not None and moved.entry_count == 1 and moved.headline == IOS_TITLES[1]


ARCHIVE_HEADLINES = (  # a story a day for twelve days, no two alike
    "Volcano erupts near Reykjavik airport",
    "Senate passes farm subsidy bill",
    "Chess champion retires after Oslo final",
    "Museum recovers stolen Vermeer painting",
    "Heatwave closes schools across Sicily",
    "Airline grounds fleet after engine fault",
    "Central bank lifts interest rates again",
    "Marathon record broken in Berlin race",
    "Cyberattack disrupts hospital network",
    "Orchestra strike cancels opera season",
    "Wildfire forces evacuation of canyon town",
    "Telescope spots water on distant exoplanet",
)


def test_regrouping_a_long_archive_keeps_only_the_window_in_memory(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aggregator.models import SourceConfig
    from aggregator.store import FeedUpdate

    monkeypatch.setattr(aggregator.grouper, "BATCH", 4)  # a long archive: many batches
    now = datetime.now(UTC)
    days = 12
    urls = [f"https://outlet{i}.example/feed" for i in range(2 * days)]
    store.sync_sources([SourceConfig(url=url, title=url) for url in urls], now)
    feeds = sorted(store.claim_due_feeds("w", now, timedelta(minutes=5), 100), key=lambda f: f.id)
    for n, feed in enumerate(feeds):  # one story a day, told by two outlets
        day = n // 2
        at = now - timedelta(days=days - day)
        data = _entry_data(n, ARCHIVE_HEADLINES[day], at)
        store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=at), [data], now=at)

    grouper = Grouper(store, "regroup")
    assert grouper.regroup() == 2 * days
    # Stories quiet for longer than the window left the index as the replay went on
    # (its memory and cost follow the window, not the archive); all were saved.
    assert grouper._index is not None
    assert grouper._index.active_count <= 3 + 2  # three days of window, a batch's slack
    stories = store.get_stories(limit=100)
    assert len(stories) == days and {s.source_count for s in stories} == {2}


def test_a_stopping_worker_groups_no_further_batch_and_the_next_run_groups_the_rest(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregator.grouper, "BATCH", 1)
    ids = _store_entries(store, MERGE_TITLES)
    grouper = Grouper(store, "stopping")
    batches: list[int] = []

    grouped = grouper.run(progress=batches.append, stopping=lambda: len(batches) >= 1)

    assert grouped == 1  # the batch in hand, then it stopped
    assert len(store.get_ungrouped(10)) == len(ids) - 1  # left for the next run
    assert Grouper(store, "next").run() is None  # the stopping worker still groups...
    grouper.release()  # ...until it gives grouping up as it exits
    assert Grouper(store, "next").run() == len(ids) - 1
    assert store.get_ungrouped(10) == []


def test_a_feeds_items_sharing_one_link_are_not_duplicates_of_each_other(store: Store) -> None:
    """A podcast feed whose every episode links to the show's home page: the link says
    nothing about which article an item is, so the episodes are not "the same article"
    (merged outputs hid all but the first)."""
    from aggregator.models import SourceConfig
    from aggregator.store import FeedUpdate

    now = datetime.now(UTC)
    store.sync_sources([SourceConfig(url="https://podcast.example/feed")], now)
    (podcast,) = store.claim_due_feeds("w", now, timedelta(minutes=5), 10)
    home = "https://podcast.example/"
    episodes = [
        replace(_entry_data(i, title, now - timedelta(hours=3 - i)), link=home)
        for i, title in enumerate(("Episode 61: castles", "Episode 62: time travel"))
    ]
    store.save_update(podcast.id, "w", FeedUpdate(last_fetch_at=now), episodes, now=now)
    Grouper(store, "w").run()
    latest = store.get_latest(limit=10)
    assert sorted(e.title for e in latest) == ["Episode 61: castles", "Episode 62: time travel"]
    assert all(e.duplicate_of is None for e in latest)


STORY_PAIRS = (  # a story a day, told by two outlets in other words
    ("Volcano erupts near Reykjavik airport", "Reykjavik airport shut as volcano erupts"),
    ("Senate passes farm subsidy bill", "Farm subsidy bill clears the Senate"),
    ("Chess champion retires after Oslo final", "Oslo final is chess champion's last"),
    ("Museum recovers stolen Vermeer painting", "Stolen Vermeer painting back at museum"),
    ("Heatwave closes schools across Sicily", "Sicily schools shut by heatwave"),
    ("Comet dust storms blind Mars rover", "Mars rover blinded by dust storms"),
)


def _store_pairs(store: Store, now: datetime) -> dict[int, tuple[str, str]]:
    """Each pair's first headline (outlet 2d) on day d, its second (outlet 2d+1) two
    hours later; returns {the first entry's id: the pair}."""
    from aggregator.models import SourceConfig
    from aggregator.store import FeedUpdate

    days = len(STORY_PAIRS)
    urls = [f"https://outlet{i}.example/feed" for i in range(2 * days)]
    store.sync_sources([SourceConfig(url=url, title=url) for url in urls], now)
    feeds = sorted(store.claim_due_feeds("w", now, timedelta(minutes=5), 100), key=lambda f: f.id)
    firsts = {}
    for n, feed in enumerate(feeds):
        day, second = divmod(n, 2)
        at = now - timedelta(days=days - day) + timedelta(hours=2 * second)
        data = _entry_data(n, STORY_PAIRS[day][second], at)
        saved = store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=at), [data], now=at)
        if not second:
            firsts[saved.new_ids[0]] = STORY_PAIRS[day]
    return firsts


def _words(text: str) -> set[str]:
    return set(text.casefold().replace(":", " ").replace("'s", " ").split())


def _labelled_by_both(story: Story | None, pair: tuple[str, str]) -> bool:
    """The two first key terms are made of words both headlines hold (a story of the
    first headline alone shows its own words), and the headline is one of the two."""
    shared = _words(pair[0]) & _words(pair[1])
    assert story is not None and len(story.terms) >= 2, story
    return story.headline in pair and all(_words(t) <= shared for t in story.terms[:2])


def test_a_run_labels_each_story_as_it_ends_even_one_that_left_the_window(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within a run a story is labelled when founded and once more when the run ends
    (not after every batch): a story that an entry joined and that then went quiet
    for longer than the window before the run ended is labelled before it leaves."""
    monkeypatch.setattr(aggregator.grouper, "BATCH", 1)  # every entry a batch
    firsts = _store_pairs(store, datetime.now(UTC))
    headlines: list[list[str]] = []  # the stored headlines after each batch

    def saved(_: int) -> None:
        headlines.append([s.headline for s in store.get_stories(min_sources=1, limit=100)])

    assert Grouper(store, "regroup").regroup(progress=saved) == 2 * len(STORY_PAIRS)
    # no reader ever saw a story without a headline, even in the middle of the run
    assert all(all(headlines) for headlines in headlines) and len(headlines) == 12
    for first, pair in firsts.items():
        story = store.get_story(first)
        assert story is not None and story.source_count == 2
        assert _labelled_by_both(story, pair), (story.headline, story.terms)


def test_a_warm_start_relabels_what_a_dead_worker_left_unlabelled(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregator.grouper, "BATCH", 1)
    now = datetime.now(UTC)
    last, pair = list(_store_pairs(store, now).items())[-1]  # yesterday's story

    class Killed(Exception):
        pass

    def die_after_the_join(done: int) -> None:
        if store.get_ungrouped(1) == []:
            raise Killed  # the worker dies after saving its last batch, before the labels

    with pytest.raises(Killed):
        Grouper(store, "dying").run(progress=die_after_the_join)
    assert not _labelled_by_both(store.get_story(last), pair)  # the founder's label

    Grouper(store, "next").run(now + timedelta(minutes=10))  # takes over: warm start
    assert _labelled_by_both(store.get_story(last), pair)
