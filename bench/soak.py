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
[--vacuum-daily] (VACUUM it every simulated day, for a server whose autovacuum is off)
[--restart-every 3] (a new Worker every 3 simulated days, as a deploy or a crash
would make: it takes over the grouping with a warm start)
[--faults 0.2] (that share of the feeds misbehaves: see `Faults`; each day then also
prints the server's requests and error answers, the requests that broke a rule -
before a Retry-After, after a 410, to a URL moved by a 301 - the feeds failing and
disabled, and stored entries that are strays, edited or lost; see `Checked`).
Needs the `bench` extra (psutil, time-machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
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
    atom_link,
    cpu_seconds,
    machine,
    max_rss_mb,
    rss_link,
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

    def link(self, k: int) -> str:
        """The link of item `k`, as the documents give it."""
        return (atom_link if self.atom else rss_link)(self.feed, k, self.published(k))

    def holds(self, link: str | None) -> bool:
        """Whether `link` is the link of one of this feed's items."""
        number = (link or "").rpartition("-")[2]
        return number.isdigit() and self.link(int(number)) == link

    def _items(self, rng: random.Random, numbers: range) -> Iterator[Item]:
        for k in numbers:
            rng.seed(f"{self.seed}:{self.feed}:{k}")
            when = self.published(k)
            subject = _event_words(when, rng)
            yield k, _headline(rng, subject), _html_description(rng, self.feed, k, subject), when


FAULT_KINDS = ("outages", "throttled", "gone", "moved", "truncated", "guids", "zone")
OUTAGE_CHANCE = 0.4  # of a day holding an outage (or a throttling) window
OUTAGE_HOURS = (1.0, 12.0)  # its length, uniform
RETRY_AFTER = {"outages": 1800, "throttled": 3600}  # seconds, as the server sends it
TRUNCATED_CHANCE = 0.3  # of a new version of a "truncated" feed's document being cut
TRUNCATED_SHARE = 0.6  # of its bytes then sent
HEALTHY_FOR_FETCH = timedelta(hours=1)  # an item held this long is one the worker can get
_RSS_GUID = re.compile(rb'<guid isPermaLink="true">([^<]*)</guid>')
_ATOM_ID = re.compile(rb"(<id>tag:[^<]*:\d+)</id>")  # an entry's id (the feed's ends in "feed")
_ATOM_UTC = re.compile(rb"\+00:00</(published|updated)>")


@dataclass(frozen=True)
class Faults:
    """How one feed misbehaves over the run (`kind` None: it does not).

    outages: on some days a window of 1-12 hours answering 503 with Retry-After (odd
    windows) or a bare 500; throttled: the same windows answering 429 with
    Retry-After; gone: 410 from `start` on; moved: 301 to another URL from `start` on
    (which serves the same timeline); truncated: some new versions of the document are
    first served cut short, as a broken CMS or proxy would send them; guids: every new
    version of the document gives every item a new guid (a CMS that puts a revision
    number in it); zone: dates five hours in the future (UTC times labelled UTC-5).
    """

    seed: int
    feed: int
    kind: str | None
    start: datetime

    @classmethod
    def of(cls, feed: int, seed: int, share: float, days: int) -> Faults:
        rng = random.Random(f"{seed}:{feed}:faults")
        kind = rng.choice(FAULT_KINDS) if rng.random() < share else None
        start = START + timedelta(days=rng.uniform(1.0, max(1.0, days - 1.0)))
        return cls(seed, feed, kind, start)

    def windows(self, day: int) -> list[tuple[datetime, datetime]]:
        """The outage or throttling windows that begin on simulated day `day` (0: START)."""
        if self.kind not in ("outages", "throttled"):
            return []
        rng = random.Random(f"{self.seed}:{self.feed}:window:{day}")
        if rng.random() >= OUTAGE_CHANCE:
            return []
        begin = START + timedelta(days=day, hours=rng.uniform(0.0, 24.0))
        return [(begin, begin + timedelta(hours=rng.uniform(*OUTAGE_HOURS)))]

    def window_day(self, now: datetime) -> int | None:
        """The day the window holding `now` began on, if a window holds it."""
        today = (now - START) // timedelta(days=1)
        for day in (today - 1, today):
            for begin, end in self.windows(day):
                if begin <= now < end:
                    return day
        return None

    def rewrite(self, document: bytes, newest: int) -> bytes:
        """The document as this feed serves the version whose newest item is `newest`."""
        if self.kind == "guids":
            version = f"#v{newest}".encode()
            guid = rb'<guid isPermaLink="false">\1' + version + b"</guid>"
            return _ATOM_ID.sub(rb"\1" + version + b"</id>", _RSS_GUID.sub(guid, document))
        if self.kind == "zone":
            document = document.replace(b" +0000</pubDate>", b" -0500</pubDate>")
            return _ATOM_UTC.sub(rb"-05:00</\1>", document)
        return document

    def truncates(self, newest: int) -> bool:
        rng = random.Random(f"{self.seed}:{self.feed}:cut:{newest}")
        return self.kind == "truncated" and rng.random() < TRUNCATED_CHANCE


@dataclass
class ServerStats:
    """What the feed server saw, counted from the start of the run."""

    requests: int = 0
    errors: int = 0  # answers other than 200 and 304
    early: int = 0  # requests before the Retry-After the feed was last sent
    after_gone: int = 0  # requests for a feed after it answered 410
    old_url: int = 0  # requests for a feed's old URL after it answered 301


# --- the server ------------------------------------------------------------------------


def serve(feeds: int, seed: int, faults: float, days: int) -> None:
    """Serve the timelines until killed; `/clock/{epoch}` sets the server's time and
    `/stats` answers the `ServerStats` so far as JSON."""
    from aiohttp import web

    timelines = [Timeline.of(n, seed) for n in range(feeds)]
    profiles = [Faults.of(n, seed, faults, days) for n in range(feeds)]
    clock = [START]
    cache: dict[int, tuple[int, bytes]] = {}
    stats = ServerStats()
    retry_until: dict[int, datetime] = {}
    told: set[tuple[int, int]] = set()  # (feed, status) of the 410s and 301s sent
    served: set[tuple[int, int]] = set()  # (feed, newest): versions sent, cut or whole

    async def set_clock(request: web.Request) -> web.Response:
        clock[0] = datetime.fromtimestamp(float(request.match_info["epoch"]), UTC)
        return web.Response(status=204)

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(vars(stats))

    def fault(n: int, moved_path: bool, now: datetime) -> web.Response | None:
        """The answer of a feed that misbehaves at `now`, counting what the client did
        wrong; None: it answers normally."""
        profile = profiles[n]
        if now < retry_until.get(n, now):
            stats.early += 1
        if profile.kind in ("gone", "moved") and now >= profile.start:
            status = 410 if profile.kind == "gone" else 301
            if status == 301 and moved_path:
                return None
            if (n, status) in told:
                stats.after_gone += status == 410
                stats.old_url += status == 301
            told.add((n, status))
            return web.Response(status=status, headers={"Location": f"/m/{n}.xml"})
        day = profile.window_day(now)
        if day is None:
            return None
        if profile.kind == "outages" and day % 2 == 0:
            return web.Response(status=500)
        assert profile.kind is not None
        seconds = RETRY_AFTER[profile.kind]
        retry_until[n] = now + timedelta(seconds=seconds)
        status = 429 if profile.kind == "throttled" else 503
        return web.Response(status=status, headers={"Retry-After": str(seconds)})

    async def feed(request: web.Request) -> web.Response:
        try:
            n = int(request.match_info["n"])
            timeline = timelines[n]
        except (ValueError, IndexError):
            raise web.HTTPNotFound() from None
        now = clock[0]
        stats.requests += 1
        failed = fault(n, request.path.startswith("/m/"), now)
        if failed is not None:
            stats.errors += 1
            return failed
        newest = timeline.newest(now)
        etag = f'"{timeline.feed}-{newest}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        cached = cache.get(timeline.feed)
        if cached is None or cached[0] != newest:
            document = profiles[n].rewrite(timeline.document(now), newest)
            cached = cache[timeline.feed] = (newest, document)
        body = cached[1]
        if (n, newest) not in served and profiles[n].truncates(newest):
            served.add((n, newest))  # cut once; the next request gets it whole
            cut = body[: int(len(body) * TRUNCATED_SHARE)]
            return web.Response(body=cut, headers={"Content-Type": "application/xml"})
        served.add((n, newest))
        return web.Response(body=body, headers={"ETag": etag, "Content-Type": "application/xml"})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/clock/{epoch}", set_clock)
        app.router.add_get("/stats", get_stats)
        app.router.add_get("/f/{n}.xml", feed)
        app.router.add_get("/m/{n}.xml", feed)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(f"port {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def timeline_server(feeds: int, seed: int, faults: float, days: int) -> Iterator[tuple[str, int]]:
    """Start the server in a child process; yields its base URL and its pid."""
    args = [__file__, "serve", f"--feeds={feeds}", f"--seed={seed}"]
    with server_process([*args, f"--faults={faults}", f"--days={days}"]) as server:
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
    faults: Checked | None = None  # with --faults only

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
            f"{self.atom_ms:>7.0f}" + (self.faults.line() if self.faults else "")
        )


@dataclass
class Checked:
    """One simulated day with --faults: what the server saw and what the store holds."""

    requests: int = 0  # that day
    errors: int = 0  # answers other than 200/304 that day
    violations: int = 0  # that day: early retries, requests after 410 or to a moved URL
    failing: int = 0  # feeds whose last poll failed, at the end of the day
    disabled: int = 0  # feeds disabled (410), at the end of the day
    strays: int = 0  # stored entries that are no item of their feed, or a second copy
    edited: int = 0  # stored entries updated since first stored (items never change)
    lost: int = 0  # items of the last two days a healthy document held but not stored

    HEADER = (
        f" {'reqs':>6} {'errs':>5} {'viol.':>5} {'failing':>7} {'disab.':>6} "
        f"{'strays':>6} {'edited':>6} {'lost':>5}"
    )

    def line(self) -> str:
        return (
            f" {self.requests:>6} {self.errors:>5} {self.violations:>5} {self.failing:>7} "
            f"{self.disabled:>6} {self.strays:>6} {self.edited:>6} {self.lost:>5}"
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
    rows = query(url, "SELECT pg_database_size(current_database())")
    return float(rows[0][0]) / 2**20


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of `sql` run on the store's database, read behind the worker's back."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return conn.execute(sql).fetchall()
    with _postgresql(url) as conn:
        return conn.execute(sql).fetchall()


def check(
    url: str,
    base: str,
    timelines: list[Timeline],
    profiles: list[Faults],
    now: datetime,
    margins: tuple[timedelta, timedelta],
) -> Checked:
    """The store's side of a day with faults (the server's is added by the caller)."""
    failing, disabled = query(
        url,
        "SELECT sum(CASE WHEN error_count > 0 THEN 1 ELSE 0 END), count(disabled_reason) "
        "FROM feeds",
    )[0]
    links: dict[int, Counter[str | None]] = {n: Counter() for n in range(len(timelines))}
    edited = 0
    for config_url, link, changed in query(
        url,
        "SELECT f.config_url, e.link, e.updated_at <> e.published_at "
        "FROM entries e JOIN feeds f ON f.id = e.feed_id",
    ):
        links[int(config_url.removeprefix(f"{base}/f/").removesuffix(".xml"))][link] += 1
        edited += bool(changed)
    strays = sum(
        count - 1 if timelines[n].holds(link) else count
        for n, held in links.items()
        for link, count in held.items()
    )
    lost = 0
    for timeline, profile in zip(timelines, profiles, strict=True):
        if profile.kind != "gone":
            missing = lost_items(timeline, profile, links[timeline.feed], now, margins)
            if missing:
                _report_lost(url, f"{base}/f/{timeline.feed}.xml", timeline, profile, missing)
            lost += missing
    failing = failing or 0
    return Checked(failing=failing, disabled=disabled, strays=strays, edited=edited, lost=lost)


def _report_lost(url: str, feed_url: str, timeline: Timeline, profile: Faults, lost: int) -> None:
    """Say on stderr which feed lost items, with what the store knows of it."""
    row = query(
        url,
        "SELECT last_status, error_count, last_success_at, next_check_at, last_error "
        f"FROM feeds WHERE config_url = '{feed_url}'",
    )
    held = timeline.count * timeline.hours
    print(
        f"lost {lost} of feed {timeline.feed} ({profile.kind or 'healthy'}, an item every "
        f"{timeline.hours:.2f} h, a document holds {held:.1f} h): store says {row}",
        file=sys.stderr,
    )


def lost_items(
    timeline: Timeline,
    profile: Faults,
    stored: Counter[str | None],
    now: datetime,
    margins: tuple[timedelta, timedelta],
) -> int:
    """Items that left the feed's document in the last two days, younger than the
    retention age, that a healthy document held for at least `healthy` and that the
    store does not hold: lost for good."""
    healthy, retention = margins
    lost = 0
    k = timeline.newest(now) - timeline.count  # the last item to leave the document
    while timeline.published(k + timeline.count) > now - timedelta(days=2):
        young = timeline.published(k) > now - retention + timedelta(days=1)
        if young and timeline.link(k) not in stored:
            lost += healthy_time(timeline, profile, k, now) >= healthy
        k -= 1
    return lost


def healthy_time(timeline: Timeline, profile: Faults, k: int, now: datetime) -> timedelta:
    """How long, since START, the feed's document held item `k` outside its windows."""
    begin = max(timeline.published(k), START)
    end = min(now, timeline.published(k + timeline.count))
    held = max(end - begin, timedelta(0))
    for day in range((begin - START).days - 1, (end - START).days + 1):
        for w_begin, w_end in profile.windows(day):
            held -= max(min(end, w_end) - max(begin, w_begin), timedelta(0))
    return held


@dataclass(frozen=True)
class Options:
    """A run's settings (the command line's)."""

    feeds: int = 300
    days: int = 30
    tick: timedelta = timedelta(minutes=15)
    retention_days: int = 14
    seed: int = 1
    database_url: str | None = None  # an empty PostgreSQL database; None: SQLite
    vacuum_daily: bool = False
    faults: float = 0.0
    restart_every: int = 0  # days; 0: one worker for the whole run


def run(options: Options) -> None:
    import time_machine

    from aggregator.config import load_config
    from aggregator.scheduler import Worker
    from aggregator.store import Store
    from aggregator.web import create_app

    feeds, days, tick, faults = options.feeds, options.days, options.tick, options.faults
    print(f"# {machine()}")
    print(
        f"# {feeds} feeds, {days} simulated days from {START:%Y-%m-%d}, a tick every "
        f"{tick}, retention {options.retention_days} days"
        + (f", a new worker every {options.restart_every} days" if options.restart_every else "")
    )
    timelines = [Timeline.of(n, options.seed) for n in range(feeds)]
    profiles = [Faults.of(n, options.seed, faults, days) for n in range(feeds)]
    if faults:
        kinds = Counter(p.kind for p in profiles if p.kind)
        print(f"# faults: {', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items()))}")
    margins = (HEALTHY_FOR_FETCH, timedelta(days=options.retention_days))
    seen = ServerStats()
    with (
        tempfile.TemporaryDirectory() as tmp,
        timeline_server(feeds, options.seed, faults, days) as (base, server),
        time_machine.travel(START, tick=True) as traveller,
    ):
        folder = Path(tmp)
        written = write_config(folder, base, feeds, options.retention_days, options.database_url)
        config = load_config(written)
        store = Store(config.settings.database_url)
        store.upgrade()
        worker = Worker(config, store)
        app = create_app({"CONFIG_PATH": str(config.path), "VERSION_TTL": 0, "STALE_SECONDS": 0})
        client = app.test_client()
        print(Day.HEADER + (Checked.HEADER if faults else ""), flush=True)
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
                if options.vacuum_daily:
                    vacuum(config.settings.database_url)
                today.db_mb = database_mb(config.settings.database_url)
                today.cpu, cpu = cpu_seconds() - cpu, cpu_seconds()
                today.ticks = tuple(ticks)
                today.page_ms = timed_get(client, "/")
                today.atom_ms = timed_get(client, "/feed.atom")
                if faults:
                    url = config.settings.database_url
                    today.faults = check(url, base, timelines, profiles, now, margins)
                    seen = server_day(base, seen, today.faults)
                print(today.line(), flush=True)
                if options.restart_every and number % options.restart_every == 0:
                    worker.close()  # as a deploy or a crash would, between two ticks
                    worker = Worker(config, store)
                    print(f"# a new worker after day {number}", flush=True)
        finally:
            worker.close()
            store.close()
    print(f"# max RSS of the worker process: {max_rss_mb():.0f} MiB")


def server_day(base: str, before: ServerStats, day: Checked) -> ServerStats:
    """Fill `day` with what the server saw since `before`; returns the new totals."""
    with urlopen(f"{base}/stats") as response:
        now = ServerStats(**json.load(response))
    day.requests = now.requests - before.requests
    day.errors = now.errors - before.errors
    day.violations = sum(
        getattr(now, name) - getattr(before, name) for name in ("early", "after_gone", "old_url")
    )
    return now


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
    parser.add_argument(
        "--faults",
        type=float,
        default=0.0,
        help="share of feeds that misbehave (outages, throttling, 410, 301, cut documents)",
    )
    parser.add_argument(
        "--restart-every",
        type=int,
        default=0,
        metavar="DAYS",
        help="replace the worker by a new one every DAYS simulated days (0: never)",
    )
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.feeds, args.seed, args.faults, args.days)
    else:
        run(Options(**{k: v for k, v in vars(args).items() if k != "command"}))


if __name__ == "__main__":
    main()
