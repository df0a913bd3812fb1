"""The worker: ticks poll what is due, config edits are picked up, heartbeats written."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator.config import load_config
from aggregator.scheduler import Worker
from aggregator.store import Store
from tests.conftest import write_config
from tests.feedserver import FeedServer


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
        extra="retention_days = 1\nretention_min_entries = 1",
    )
    first, second = Worker(load_config(path), store), Worker(load_config(path), store)
    first.tick()
    assert store.count_entries() == 3
    now = datetime.now(UTC)
    assert first.prune(now) == 2  # entries from 2026-11-23/24 are over a day old; 1 kept
    assert second.prune(now) is None  # the other worker holds the hourly job
    assert second.prune(now + timedelta(hours=1, seconds=1)) == 0
