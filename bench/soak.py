"""A long run in compressed time (issues 3-5): what an operator who leaves the worker
running for months would see happen to memory, the database, tick times and page times.

F feeds (default 300) keep publishing on a timeline: each has its own interval (15 min
to 3 days, log-uniform, as in `bench/common.py`) and keeps its newest 20-100 items in
its document, so every poll meets what that feed published since the last one. The
feeds are served from 127.0.0.1 by this script in a child process; each answers with a
strong ETag and 304 when nothing changed. One `aggregator.scheduler.Worker` (the real
worker: config file, store, parser processes, grouper, retention) is ticked by a
simulated clock (`time-machine` moves the process's wall clock; the event loop's
monotonic clock is left alone) every `--tick` of simulated time, and prunes every hour
of it, for `--days` simulated days. Every simulated day it prints the entries stored,
added and pruned, the stories active in the grouping index, the worker's RSS (the
process alone and with its parser processes), the database's size (a SQLite file with
its WAL, or `pg_database_size`), the CPU that day, the ticks' median and slowest wall
time, and the wall time of rendering `/` and `/feed.atom` from the store (the render
cache off).

Run: python bench/soak.py [--feeds 300] [--days 30] [--tick 15m] [--retention-days 14]
[--database-url postgresql://...] (an empty database; default: SQLite in a temp folder)
[--vacuum-daily] (VACUUM it every simulated day, for a server whose autovacuum is off).
Needs the `bench` extra (psutil, time-machine).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    INTERVALS,
    Item,
    _atom,
    _event_words,
    _headline,
    _html_description,
    _rss,
    cpu_seconds,
    machine,
    max_rss_mb,
    server_process,
)

if TYPE_CHECKING:
    import psycopg
    from flask.testing import FlaskClient

START = datetime(2026, 1, 5, tzinfo=UTC)  # the simulated first tick (fixed: deterministic)
HISTORY = timedelta(days=400)  # the timelines begin this long before START: full feeds
ORIGIN = START - HISTORY


@dataclass(frozen=True)
class Timeline:
    """One feed's publishing: item k is published at ORIGIN + (k + phase) x interval,
    and the document at time t holds the newest `count` items published by t. Each
    item's text depends only on (seed, feed, k), so a document changes only when an item
    is published."""

    seed: int
    feed: int
    count: int
    hours: float
    phase: float
    atom: bool

    @classmethod
    def of(cls, feed: int, seed: int) -> Timeline:
        rng = random.Random(f"{seed}:{feed}")
        count = rng.randint(20, 100)
        hours = math.exp(rng.uniform(*map(math.log, INTERVALS)))
        return cls(seed, feed, count, hours, rng.random(), rng.random() < 0.3)

    def newest(self, now: datetime) -> int:
        """The number of the newest item published by `now`."""
        return math.floor((now - ORIGIN) / timedelta(hours=self.hours) - self.phase)

    def published(self, k: int) -> datetime:
        return ORIGIN + timedelta(hours=self.hours * (k + self.phase))

    def document(self, now: datetime) -> bytes:
        # one rng, re-seeded for each item before it is written: `_rss` and `_atom`
        # draw from it between items, and those draws must not depend on which other
        # items the document holds
        rng = random.Random()
        newest = self.newest(now)
        numbers = range(newest, newest - self.count, -1)
        items = self._items(rng, numbers)
        if self.atom:
            return _atom(rng, self.feed, items, self.published(newest)).encode()
        return _rss(rng, self.feed, items).encode()

    def _items(self, rng: random.Random, numbers: range) -> Iterator[Item]:
        for k in numbers:
            rng.seed(f"{self.seed}:{self.feed}:{k}")
            when = self.published(k)
            subject = _event_words(when, rng)
            yield k, _headline(rng, subject), _html_description(rng, self.feed, k, subject), when


# --- the server ------------------------------------------------------------------------


def serve(feeds: int, seed: int) -> None:
    """Serve the timelines until killed; `/clock/{epoch}` sets the server's time."""
    from aiohttp import web

    timelines = [Timeline.of(n, seed) for n in range(feeds)]
    clock = [START]
    cache: dict[int, tuple[int, bytes]] = {}

    async def set_clock(request: web.Request) -> web.Response:
        clock[0] = datetime.fromtimestamp(float(request.match_info["epoch"]), UTC)
        return web.Response(status=204)

    async def feed(request: web.Request) -> web.Response:
        try:
            timeline = timelines[int(request.match_info["n"])]
        except (ValueError, IndexError):
            raise web.HTTPNotFound() from None
        newest = timeline.newest(clock[0])
        etag = f'"{timeline.feed}-{newest}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        cached = cache.get(timeline.feed)
        if cached is None or cached[0] != newest:
            cached = cache[timeline.feed] = (newest, timeline.document(clock[0]))
        return web.Response(
            body=cached[1], headers={"ETag": etag, "Content-Type": "application/xml"}
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/clock/{epoch}", set_clock)
        app.router.add_get("/f/{n}.xml", feed)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(f"port {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def timeline_server(feeds: int, seed: int) -> Iterator[tuple[str, int]]:
    """Start the server in a child process; yields its base URL and its pid."""
    with server_process([__file__, "serve", f"--feeds={feeds}", f"--seed={seed}"]) as server:
        yield server


# --- the run ---------------------------------------------------------------------------


def write_config(
    folder: Path, base: str, feeds: int, retention_days: int, database_url: str | None = None
) -> Path:
    path = folder / "aggregator.toml"
    database_url = database_url or f"sqlite:///{folder / 'soak.db'}"
    lines = [
        "[settings]",
        f'database_url = "{database_url}"',
        'allowed_networks = ["127.0.0.1/32"]',
        f"retention_days = {retention_days}",
        "worker_nice = 0",
        "max_per_host = 64",
        "",
    ]
    for n in range(feeds):
        lines += ["[[feeds]]", f'url = "{base}/f/{n}.xml"', ""]
    path.write_text("\n".join(lines))
    return path


@dataclass
class Day:
    """What one simulated day did."""

    day: int
    entries: int = 0
    added: int = 0
    pruned: int = 0
    stories: int = 0
    rss_mb: float = 0.0
    tree_mb: float = 0.0
    db_mb: float = 0.0
    cpu: float = 0.0
    ticks: tuple[float, ...] = ()
    page_ms: float = 0.0
    atom_ms: float = 0.0

    HEADER = (
        f"{'day':>4} {'entries':>8} {'added':>6} {'pruned':>6} {'stories':>7} "
        f"{'RSS MB':>7} {'+pars.':>6} {'DB MB':>7} {'CPU s':>6} {'tick p50':>8} "
        f"{'max':>6} {'/ ms':>6} {'atom ms':>7}"
    )

    def line(self) -> str:
        median = statistics.median(self.ticks) if self.ticks else 0.0
        slowest = max(self.ticks, default=0.0)
        return (
            f"{self.day:>4} {self.entries:>8} {self.added:>6} {self.pruned:>6} "
            f"{self.stories:>7} {self.rss_mb:>7.1f} {self.tree_mb:>6.1f} {self.db_mb:>7.1f} "
            f"{self.cpu:>6.1f} {median:>8.3f} {slowest:>6.2f} {self.page_ms:>6.0f} "
            f"{self.atom_ms:>7.0f}"
        )


def own_rss_mb() -> float:
    """The current RSS of this process (not its maximum), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def worker_rss_mb(server: int) -> float:
    """The current RSS of this process and its children but the feed server, in MiB."""
    import psutil

    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    return float(sum(p.memory_info().rss for p in processes if p.pid != server)) / 2**20


def timed_get(client: FlaskClient, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"{path}: HTTP {response.status_code}")
    return (time.perf_counter() - started) * 1000


def _postgresql(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection to the PostgreSQL database of an SQLAlchemy `url`, in autocommit."""
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def vacuum(url: str) -> None:
    """`VACUUM` a PostgreSQL database, standing in for autovacuum where it is off."""
    with _postgresql(url) as conn:
        conn.execute("VACUUM")


def database_mb(url: str) -> float:
    """The size of the store: a SQLite file with its WAL, or a PostgreSQL database."""
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists()) / 2**20
    with _postgresql(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return float(row[0] if row else 0) / 2**20


def run(
    feeds: int,
    days: int,
    tick: timedelta,
    retention_days: int,
    seed: int,
    database_url: str | None = None,
    vacuum_daily: bool = False,
) -> None:
    import time_machine

    from aggregator.config import load_config
    from aggregator.scheduler import Worker
    from aggregator.store import Store
    from aggregator.web import create_app

    print(f"# {machine()}")
    print(
        f"# {feeds} feeds, {days} simulated days from {START:%Y-%m-%d}, a tick every "
        f"{tick}, retention {retention_days} days"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        timeline_server(feeds, seed) as (base, server),
        time_machine.travel(START, tick=True) as traveller,
    ):
        folder = Path(tmp)
        config = load_config(write_config(folder, base, feeds, retention_days, database_url))
        store = Store(config.settings.database_url)
        store.upgrade()
        worker = Worker(config, store)
        app = create_app({"CONFIG_PATH": str(config.path), "VERSION_TTL": 0, "STALE_SECONDS": 0})
        client = app.test_client()
        print(Day.HEADER, flush=True)
        now, stored, cpu = START, 0, cpu_seconds()
        try:
            for number in range(1, days + 1):
                today = Day(number)
                ticks = []
                end = START + timedelta(days=number)
                while now < end:
                    traveller.move_to(now)
                    urlopen(f"{base}/clock/{now.timestamp()}").close()
                    started = time.perf_counter()
                    worker.tick(now)
                    if now.minute < tick.total_seconds() / 60:  # once an hour
                        today.pruned += worker.prune(now) or 0
                    ticks.append(time.perf_counter() - started)
                    now += tick
                entries = store.count_entries()
                today.entries, today.added = entries, entries - stored + today.pruned
                stored = entries
                index = worker.grouper.index
                today.stories = len(index.active_story_ids) if index else 0
                today.rss_mb, today.tree_mb = own_rss_mb(), worker_rss_mb(server)
                if vacuum_daily:
                    vacuum(config.settings.database_url)
                today.db_mb = database_mb(config.settings.database_url)
                today.cpu, cpu = cpu_seconds() - cpu, cpu_seconds()
                today.ticks = tuple(ticks)
                today.page_ms = timed_get(client, "/")
                today.atom_ms = timed_get(client, "/feed.atom")
                print(today.line(), flush=True)
        finally:
            worker.close()
            store.close()
    print(f"# max RSS of the worker process: {max_rss_mb():.0f} MiB")


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return timedelta(seconds=float(text[:-1]) * units[text[-1]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["run", "serve"], default="run")
    parser.add_argument("--feeds", type=int, default=300)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tick", type=_duration, default=timedelta(minutes=15))
    parser.add_argument("--retention-days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database (default: SQLite in a temp folder)"
    )
    parser.add_argument(
        "--vacuum-daily",
        action="store_true",
        help="VACUUM the PostgreSQL database every simulated day (where autovacuum is off)",
    )
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.feeds, args.seed)
    else:
        run(
            args.feeds,
            args.days,
            args.tick,
            args.retention_days,
            args.seed,
            args.database_url,
            args.vacuum_daily,
        )


if __name__ == "__main__":
    main()
