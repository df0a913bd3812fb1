"""The worker: ticks poll what is due, config edits are picked up, heartbeats written."""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from aggregator import grouper as grouper_module
from aggregator.config import Settings, load_config
from aggregator.parse import CUT_SHORT_WARNING
from aggregator.scheduler import Worker
from aggregator.store import Store
from aggregator.update import POOL_MIN_FEEDS
from tests.conftest import (
    killed_on_exit,
    slow_feeds,
    wait_until,
    wait_while_running,
    write_config,
)
from tests.feedserver import FeedServer, RecordedRequest, Response


def _touch_later(path: Path) -> None:
    """Make sure the edit is seen even on coarse file-system clocks."""
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))


def test_tick_polls_new_sources_and_retires_removed_ones(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("world.rss")])
    worker = Worker(load_config(path), store)

    first = worker.tick()
    assert [r.status for r in first.results] == ["ok"]

    write_config(path, store.database_url, [feed_server.url("world.atom")])
    _touch_later(path)
    second = worker.tick()

    assert [r.url for r in second.results] == [feed_server.url("world.atom")]
    feeds = {f.url: f for f in store.get_feeds()}
    removed = feeds[feed_server.url("world.rss")]
    assert removed.in_config is False and removed.entry_count == 3
    feed_server.reset()
    worker.tick(now=datetime.now(UTC) + timedelta(days=3))
    assert all("world.rss" not in r.path for r in feed_server.requests)


def test_invalid_config_edit_keeps_the_previous_config(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("world.rss")])
    worker = Worker(load_config(path), store)
    path.write_text(path.read_text() + "\n[[feeds]]\nurl = 'not a url'\n")
    _touch_later(path)

    summary = worker.tick()

    assert [r.status for r in summary.results] == ["ok"]
    assert worker.config.sources[0].url == feed_server.url("world.rss")


def test_a_config_edit_applies_a_new_tick_interval_and_grouping_threshold(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """The tick runs at the interval the heartbeat promises (a shorter one kept at the
    old pace made /healthz answer 503 between ticks), and grouping goes on with the new
    threshold."""
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("world.rss")])
    worker = Worker(load_config(path), store)
    scheduler = worker.schedule(BackgroundScheduler(timezone=UTC))
    scheduler.start(paused=True)
    try:
        assert scheduler.get_job("tick").trigger.interval == timedelta(seconds=1)  # the test's
        write_config(
            path,
            store.database_url,
            [feed_server.url("world.rss")],
            extra='tick_interval = "7s"\ngroup_threshold = 0.3',
        )
        _touch_later(path)
        worker.tick()
        assert scheduler.get_job("tick").trigger.interval == timedelta(seconds=7)
        assert worker.grouper.threshold == 0.3
    finally:
        scheduler.shutdown(wait=False)


def test_a_config_edit_applies_a_new_address_policy_at_the_next_tick(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """Taking back the loopback network an operator had allowed stops the next tick's
    fetches there, before any connection (the README: the poll's settings reload)."""
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("world.rss")])
    worker = Worker(load_config(path), store)
    assert [r.status for r in worker.tick().results] == ["ok"]
    feed_server.reset()
    urls = [feed_server.url("world.rss"), feed_server.url("world.atom")]
    write_config(path, store.database_url, urls, extra="allowed_networks = []")
    _touch_later(path)

    (result,) = worker.tick().results  # the new feed is due, the other is not
    assert result.status == "error" and "address" in (result.error or "")
    assert feed_server.requests == []


def test_the_worker_ticks_on_when_the_clock_steps_back(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """APScheduler times jobs on the wall clock: a step back of 30 minutes (an NTP step,
    a virtual machine's snapshot restored) held the next tick for 30 minutes."""
    import time_machine

    worker = Worker(load_config(write_config(tmp_path / "agg.toml", store.database_url, [])), store)
    scheduler = worker.schedule(BackgroundScheduler(timezone=UTC))
    scheduler.start()
    try:
        wait_until(lambda: worker._ticks >= 1, 5)
        with (
            caplog.at_level(logging.WARNING, logger="aggregator.scheduler"),
            time_machine.travel(datetime.now(UTC) - timedelta(minutes=30), tick=True),
        ):
            before = worker._ticks
            wait_until(lambda: worker._ticks >= before + 2, 10)
        assert any(
            re.fullmatch(r"worker: the clock went back 1[78]\d\ds; ticking on from now", m)
            for m in caplog.messages
        )
    finally:
        worker.stop(scheduler)


def test_the_worker_logs_each_feed_that_failed_and_why(
    tmp_path: Path, store: Store, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    urls = [feed_server.url("world.rss"), feed_server.url("broken")]
    worker = Worker(
        load_config(write_config(tmp_path / "agg.toml", store.database_url, urls)), store
    )
    with caplog.at_level(logging.WARNING, logger="aggregator.scheduler"):
        worker.tick()
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert failures == [f"worker: {feed_server.url('broken')}: fetch: HTTP 404"]  # unserved


def test_tick_writes_a_heartbeat(tmp_path: Path, store: Store, feed_server: FeedServer) -> None:
    path = write_config(tmp_path / "agg.toml", store.database_url, [])
    before = datetime.now(UTC)
    Worker(load_config(path), store).tick()
    tick = store.last_tick()
    assert tick is not None and tick[0] >= before and tick[1] == 1


def test_restarted_worker_does_not_repoll_early(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("world.rss")])
    Worker(load_config(path), store).tick()
    feed_server.reset()
    restarted = Worker(load_config(path), store)
    assert restarted.tick().results == ()
    assert feed_server.requests == []


def test_prune_runs_once_per_hour_across_workers(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    path = write_config(
        tmp_path / "agg.toml",
        store.database_url,
        [feed_server.url("world.rss")],
        extra="retention_days = 3650\nretention_min_entries = 1",
    )
    first, second = Worker(load_config(path), store), Worker(load_config(path), store)
    first.tick()
    assert store.count_entries() == 3
    later = datetime.now(UTC) + timedelta(days=3650)  # all three are now too old; 1 kept
    assert first.prune(later) == 2
    assert second.prune(later) is None  # the other worker holds the hourly job
    assert second.prune(later + timedelta(hours=1, seconds=1)) == 0


def test_the_hourly_job_forgets_workers_gone_for_a_day(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("world.rss")])
    running = Worker(load_config(path), store)
    now = datetime.now(UTC)
    store.record_tick("deployed-yesterday", now - timedelta(days=1, minutes=1), 30)
    store.record_tick("restarted-an-hour-ago", now - timedelta(hours=1), 30)
    running.tick()
    running.prune(now)
    names = {b.name for b in store.get_workers()}
    assert names == {running.name, "restarted-an-hour-ago"}


def _blog(posts: list[tuple[str, datetime]], ids: bool = True) -> str:
    """An RSS document of `posts`; with `ids` False, items have no guid and no link."""
    items = "".join(
        f"<item><title>Post {key}</title><pubDate>{format_datetime(date)}</pubDate>"
        + (f"<link>https://blog.example/{key}</link><guid>{key}</guid>" if ids else "")
        + f"<description>The whole text of post {key}.</description></item>"
        for key, date in posts
    )
    channel = f"<channel><title>Blog</title>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'


def test_pruned_entries_do_not_come_back_when_the_document_changes(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    """A blog's document lists a year of posts; retention keeps 100 days (and at least
    two). The worker stores only what retention keeps, and when the blog publishes
    again, only the new post is new: no old post returns with a new id, to be pruned
    again an hour later."""
    now = datetime.now(UTC)
    posts = [(f"p{i}", now - timedelta(days=40 * i, hours=1)) for i in range(9)]
    (feed_dir / "blog.rss").write_text(_blog(posts))
    path = write_config(
        tmp_path / "agg.toml",
        store.database_url,
        [feed_server.url("blog.rss")],
        extra="retention_days = 100\nretention_min_entries = 2",
    )
    worker = Worker(load_config(path), store)

    (first,) = worker.tick().results
    kept = {e.key: e.id for e in store.get_latest(limit=100)}
    assert (first.new_entries, set(kept)) == (3, {"p0", "p1", "p2"})  # 0, 40 and 80 days
    assert worker.prune(now) == 0

    (feed_dir / "blog.rss").write_text(_blog([("new", now), *posts]))
    (second,) = worker.tick(now + timedelta(hours=1)).results

    assert (second.status, second.new_entries) == ("ok", 1)
    after = {e.key: e.id for e in store.get_latest(limit=100)}
    assert after == {**kept, "new": after["new"]}  # the old posts keep their rows


@pytest.mark.parametrize("cut_in", ["title", "description"])
def test_a_document_cut_short_neither_edits_nor_adds_entries(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path, cut_in: str
) -> None:
    """The blog's server once sends its document cut short (the next fetch has it whole),
    cut inside the oldest post's title or text: the post is not stored again under
    another key or edited to its cut text, the feed's status says why, and the new post
    is stored."""
    now = datetime.now(UTC)
    posts = [(f"p{i}", now - timedelta(days=i, hours=1)) for i in range(3)]
    (feed_dir / "blog.rss").write_text(_blog(posts))
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("blog.rss")])
    worker = Worker(load_config(path), store)
    worker.tick(now)
    before = {e.key: (e.id, e.updated_at, e.summary) for e in store.get_latest(limit=10)}

    whole = _blog([("new", now), *posts])
    cut = whole.index("Post p2" if cut_in == "title" else "whole text of post p2") + 6
    (feed_dir / "blog.rss").write_text(whole[:cut])
    (second,) = worker.tick(now + timedelta(hours=1)).results
    (feed,) = store.get_feeds()
    (feed_dir / "blog.rss").write_text(whole)
    (third,) = worker.tick(now + timedelta(hours=2)).results

    assert (second.status, second.new_entries, second.changed_entries) == ("ok", 1, 0)
    assert feed.last_error and CUT_SHORT_WARNING in feed.last_error
    assert (third.new_entries, third.changed_entries) == (0, 0)
    after = {e.key: (e.id, e.updated_at, e.summary) for e in store.get_latest(limit=10)}
    assert after == {**before, "new": after["new"]}


def test_a_document_cut_short_is_asked_for_whole_next_time(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """A server sends a new version of its document once cut short, inside its second
    new post, with the version's ETag, and answers 304 to that ETag after: the worker
    does not keep a cut document's validators, so the next fetch gets the whole
    document and the post the cut left out."""
    now = datetime.now(UTC)
    posts = [(f"p{i}", now - timedelta(days=i, hours=1)) for i in range(3)]
    whole = _blog([("n1", now), ("n2", now - timedelta(minutes=30)), *posts]).encode()
    cut = whole[: whole.index(b"whole text of post n2") + 6]
    served: list[str] = []

    def handler(request: RecordedRequest) -> Response:
        if not served:  # the first fetch: the old version
            served.append("old")
            return Response(200, {"ETag": '"v1"'}, _blog(posts).encode())
        if request.headers.get("If-None-Match") == '"v2"':
            served.append("304")
            return Response(304, {"ETag": '"v2"'}, b"")
        body = cut if "cut" not in served else whole
        served.append("cut" if body is cut else "whole")
        return Response(200, {"ETag": '"v2"'}, body)

    feed_server.route("/blog.rss", handler=handler)
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("blog.rss")])
    worker = Worker(load_config(path), store)
    for hours in range(3):
        worker.tick(now + timedelta(hours=hours))

    assert served == ["old", "cut", "whole"]
    assert {e.key for e in store.get_latest(limit=10)} == {"n1", "n2", "p0", "p1", "p2"}


def test_a_document_cut_short_is_fetched_again_within_min_interval(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """The posts a cut leaves out are the oldest, the next to leave the document: the
    worker asks again after `min_interval`, not after the feed's interval."""
    now = datetime.now(UTC)
    posts = [(f"p{i}", now - timedelta(hours=i + 1)) for i in range(3)]
    whole = _blog([("n1", now), *posts]).encode()
    feed_server.route("/blog.rss", body=whole[: whole.index(b"whole text of post p1") + 6])
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("blog.rss")])
    config = load_config(path)
    Worker(config, store).tick(now)
    (feed,) = store.get_feeds()
    assert feed.last_error and feed.last_error.startswith(CUT_SHORT_WARNING)
    assert feed.next_check_at is not None and feed.last_fetch_at is not None
    wait = (feed.next_check_at - max(now, feed.last_fetch_at)).total_seconds()
    assert wait <= config.settings.min_interval * 1.2 < config.settings.default_interval * 0.9
    # cut again (a server that always cuts): asked at the feed's interval, not every
    # min_interval for good
    again = feed.next_check_at
    Worker(config, store).tick(again)
    (feed,) = store.get_feeds()
    assert feed.last_error and feed.last_error.startswith(CUT_SHORT_WARNING)
    assert feed.next_check_at is not None and feed.last_fetch_at is not None
    wait = (feed.next_check_at - max(again, feed.last_fetch_at)).total_seconds()
    assert wait >= config.settings.default_interval * 0.9


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended while we looked
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _big_rss(n: int) -> bytes:
    """A feed document above the pool's inline size, so that a child parses it."""
    text = " ".join(["Lorem ipsum dolor sit amet, consectetur adipiscing elit."] * 20)
    items = "".join(
        f"<item><title>Story {n}-{i}</title><link>https://site{n}.example/{i}</link>"
        f"<description>&lt;p&gt;{text}&lt;/p&gt;</description></item>"
        for i in range(6)
    )
    head = f'<?xml version="1.0"?><rss version="2.0"><channel><title>F{n}</title>'
    return f"{head}{items}</channel></rss>".encode()


def _start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`aggregator worker` in its own process, its output written to `log`."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "aggregator", "--config", str(config), "worker"],
            stdout=output,
            stderr=output,
        )


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_worker_exit_stops_its_parser_processes(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path, stop: signal.Signals
) -> None:
    for n in range(POOL_MIN_FEEDS):
        (feed_dir / f"p{n}.xml").write_bytes(_big_rss(n))
    urls = [feed_server.url(f"p{n}.xml") for n in range(POOL_MIN_FEEDS)]
    path = write_config(tmp_path / "agg.toml", store.database_url, urls, "parse_processes = 2")
    log = tmp_path / "worker.log"
    with killed_on_exit(_start_worker(path, log)) as worker:
        wait_while_running(worker, lambda: store.count_entries() >= 6 * POOL_MIN_FEEDS, 120)
        parsers = _children(worker.pid)
        assert len(parsers) == min(2, os.cpu_count() or 1)  # started for the big poll
        # Polling yields the CPU to the web (worker_nice, default 10), children included.
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + Settings().worker_nice)
        for pid in (worker.pid, *parsers):
            assert os.getpriority(os.PRIO_PROCESS, pid) == expected
        worker.send_signal(stop)
        worker.wait(60)
    # a clean stop either way (a service manager sends SIGTERM): the worker closes its
    # pool and exits 0, and says so
    assert worker.returncode == 0, log.read_text()
    assert "worker: stopped" in log.read_text()
    assert "Traceback" not in log.read_text()  # no parser process died on a broken pipe
    # Killed or stopped, the worker leaves no parser process behind: a child whose
    # parent is gone sees its stdin close and exits.
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in parsers):
        assert time.monotonic() < deadline, "parser processes outlived the worker"
        time.sleep(0.05)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_in_a_long_poll_stops_soon_and_leaves_the_rest_to_the_next_worker(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    urls = slow_feeds(feed_server, 40)  # two at a time: a 20 s poll
    settings = 'max_connections = 2\nmax_per_host = 2\nlease_seconds = "10m"'
    path = write_config(tmp_path / "agg.toml", store.database_url, urls, settings)
    log = tmp_path / "worker.log"
    with killed_on_exit(_start_worker(path, log)) as worker:
        wait_while_running(worker, lambda: store.count_entries() >= 3)
        worker.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        worker.wait(30)
    assert worker.returncode == 0, log.read_text()
    assert time.monotonic() - stopped_at < 5  # the fetches in flight, not the 40 feeds
    assert "worker: stopped" in log.read_text()
    fetched = [f for f in store.get_feeds() if f.last_status == "ok"]
    assert 1 <= len(fetched) < 40 and store.count_entries() == 3 * len(fetched)
    # nothing is left leased for ten minutes: another worker takes the rest now
    free = store.claim_due_feeds("next", datetime.now(UTC), timedelta(minutes=5), 100)
    assert len(free) == 40 - len(fetched)
    assert store.acquire_lock("grouper", "next", datetime.now(UTC), timedelta(minutes=5))[0]


def test_worker_embedded_in_the_web_process_parses_in_a_thread(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("world.rss")])
    worker = Worker(load_config(path), store)
    assert worker.parsers.processes == min(2, os.cpu_count() or 1)  # the default
    scheduler = worker.start_background()
    try:
        deadline = time.monotonic() + 30
        while store.count_entries() < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        scheduler.shutdown()
    assert worker.parsers.processes == 0 and worker.parsers.pool is None


SETTLE_CHECK = """
import gc, json
import aggregator.scheduler
cycle = []
cycle.append(cycle)  # garbage from start-up: collected, not kept forever
del cycle
before = len(gc.get_objects())
aggregator.scheduler.settle_heap()
print(json.dumps([before, len(gc.get_objects()), gc.get_freeze_count()]))
"""


def test_a_settled_worker_leaves_its_start_up_objects_out_of_full_collections() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SETTLE_CHECK], capture_output=True, text=True, check=True
    ).stdout
    before, after, frozen = (int(n) for n in out.strip().strip("[]").split(","))
    assert before > 10_000 and after < 100  # what a full collection still walks
    assert frozen < before  # the cycle was collected first, not frozen


def test_a_big_grouping_run_is_followed_by_a_full_collection_not_a_small_one() -> None:
    import gc

    from aggregator.scheduler import COLLECT_AFTER_GROUPING, settle_after_grouping

    def full_collections() -> int:
        return int(gc.get_stats()[2]["collections"])

    before = full_collections()
    settle_after_grouping(COLLECT_AFTER_GROUPING - 1)
    settle_after_grouping(None)  # another worker held the grouping lease
    assert full_collections() == before
    settle_after_grouping(COLLECT_AFTER_GROUPING)
    assert full_collections() == before + 1


@pytest.mark.parametrize("ids", [True, False])
def test_a_future_dated_entry_is_stored_once_and_not_edited_by_each_fetch(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path, ids: bool
) -> None:
    """A feed dates its posts three hours ahead (a wrong time zone). The post is stored
    dated when first seen, and the next fetch of the changed document neither edits it
    (its date clamped to a later fetch time) nor, when it has no guid or link, stores it
    a second time."""
    ahead = datetime.now(UTC) + timedelta(hours=3)
    (feed_dir / "ahead.rss").write_text(_blog([("early", ahead)], ids))
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("ahead.rss")])
    worker = Worker(load_config(path), store)
    worker.tick()
    (stored,) = store.get_latest(limit=10)

    (feed_dir / "ahead.rss").write_text(_blog([("next", ahead), ("early", ahead)], ids))
    (second,) = worker.tick(datetime.now(UTC) + timedelta(hours=1)).results

    assert (second.new_entries, second.changed_entries) == (1, 0)
    entries = {e.title: e for e in store.get_latest(limit=10)}
    assert set(entries) == {"Post early", "Post next"}
    assert entries["Post early"] == stored
    assert stored.published_at == stored.first_seen_at == stored.updated_at


def _rss(number: int) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel>'
        f"<title>Slow {number}</title><link>https://example.org/</link>"
        f"<item><title>Harbour bridge {number} reopens</title>"
        f"<link>https://example.org/{number}</link><guid>slow-{number}</guid></item>"
        "</channel></rss>"
    ).encode()


def test_a_long_poll_keeps_the_worker_alive(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """A tick longer than three tick intervals (five feeds answering after 0.9 s each,
    one at a time, tick_interval 1 s) is a busy worker, not a dead one: the heartbeat
    that /healthz reads stays fresh while feeds complete."""
    urls = []
    for number in range(5):
        feed_server.route(f"/slow{number}.rss", body=_rss(number), delay=0.9)
        urls.append(feed_server.url(f"slow{number}.rss"))
    path = write_config(tmp_path / "agg.toml", store.database_url, urls, "max_connections = 1")
    worker = Worker(load_config(path), store)
    seen: list[tuple[datetime, bool]] = []
    ticking = threading.Thread(target=worker.tick)
    ticking.start()
    while ticking.is_alive():
        now = datetime.now(UTC)
        beats = [beat for beat in store.get_workers() if beat.name == worker.name]
        if beats:
            seen.append((now, beats[0].alive(now)))
        time.sleep(0.1)
    ticking.join()

    assert store.count_entries() == 5
    assert seen[-1][0] - seen[0][0] > timedelta(seconds=3.5)  # past three intervals
    assert [when for when, alive in seen if not alive] == []


class _BeatLog(Store):
    """The real store, noting each heartbeat written (the poll it reports, if any)."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.beats: list[tuple[float, int] | None] = []

    def record_tick(
        self, name: str, now: datetime, tick_seconds: float, poll: tuple[float, int] | None = None
    ) -> None:
        self.beats.append(poll)
        super().record_tick(name, now, tick_seconds, poll)


def test_grouping_keeps_the_worker_alive_batch_by_batch(
    tmp_path: Path, store: Store, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grouping a first poll's entries can take minutes: each saved batch writes a
    heartbeat once a tick interval has passed (here a clock that moves an interval
    between any two readings; world.rss's three entries, one per batch)."""
    monkeypatch.setattr(grouper_module, "BATCH", 1)
    path = write_config(tmp_path / "agg.toml", store.database_url, [feed_server.url("world.rss")])
    logged = _BeatLog(store.database_url)
    readings = itertools.count(step=1000.0)
    worker = Worker(load_config(path), logged, clock=lambda: next(readings))

    worker.tick()

    # tick start, the one feed polled, three batches grouped, tick end (with the poll)
    assert logged.beats[:5] == [None] * 5
    assert len(logged.beats) == 6 and logged.beats[5] is not None
    assert logged.beats[5][1] == 1
    logged.close()


def test_a_tick_outlasting_its_interval_does_not_fill_the_log(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """APScheduler warns at every interval that a job still running was skipped; for
    the worker's ticks that is normal (a first poll runs for minutes) and not logged."""
    path = write_config(tmp_path / "agg.toml", store.database_url, [])
    scheduler = Worker(load_config(path), store).schedule(BackgroundScheduler(timezone=UTC))
    scheduler.add_job(time.sleep, "interval", args=[2.5], seconds=1, id="slow", name="slow")
    with caplog.at_level(logging.INFO, logger="apscheduler"):
        scheduler.start()
        time.sleep(3.2)
        scheduler.shutdown(wait=True)
    messages = [record.getMessage() for record in caplog.records]
    assert any("slow" in message for message in messages)  # the scheduler did log
    assert [m for m in messages if "maximum number of running instances" in m] == []
