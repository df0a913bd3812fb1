"""Polling benchmark (issue 3): our pipeline against the `reader` library.

1,000 feeds of 20-100 entries (RSS 2.0 and Atom with HTML descriptions, fixed seed) are
served by `bench/common.py`'s aiohttp server in its own process, with 50-200 ms of
latency per response and ETag/304. Each contender runs in its own subprocess on a fresh
SQLite file, so its CPU and peak memory are its own, for two rounds: the first (every
entry new) and the second (every feed answers 304).

- ours: what a worker's tick does: `aggregator.update.poll_due` (every feed due) with
  the worker's `Parsers` kept across both rounds, then `Grouper.run` (story grouping,
  as `scheduler.Worker.tick` calls it). max_connections = max_per_host = --connections
  (all feeds are on 127.0.0.1), allowed_networks 127.0.0.1/32. Parse modes: "default"
  is the shipped setting (`parse_processes` = 2: two parser processes for this batch),
  "thread" is `parse_processes = 0`. Its time is the poll plus grouping; both are also
  printed apart, with the CPU of the main process apart from its children.
- reader: `make_reader(db)`, `add_feed` per URL, `update_feeds(scheduled=False,
  workers=--reader-workers)`.

Run: python bench/poll.py [--feeds 1000] [--connections 256] [--reader-workers 64]
Also: `python bench/poll.py threshold` (inline parse vs a pool round trip by size),
`python bench/poll.py parse-only` (parse throughput: 1 thread vs a pool of 2) and
`python bench/poll.py floor` (round 2's floor: a bare aiohttp client, nothing else).
Needs the `bench` extra (reader, psutil).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    corpus,
    feed_server,
    feed_urls,
    machine,
    max_rss_mb,
    measure,
    self_cpu_seconds,
    tree_rss,
)

FETCHED = datetime(2026, 11, 25, tzinfo=UTC)
URL = "https://x.example/"
RESULT_PREFIX = "RESULT "


# --- contenders (each runs in its own subprocess) --------------------------------------


class GcPauses:
    """Time this process's garbage collector spends, and its full collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info["generation"] == 2

    def take(self) -> dict[str, float]:
        """The pauses since the last call."""
        taken = {"seconds": self.seconds, "full": self.full}
        self.seconds, self.full = 0.0, 0
        return taken


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    from aggregator.config import Settings
    from aggregator.grouper import Grouper
    from aggregator.models import FetchOptions, SourceConfig
    from aggregator.scheduler import settle_after_grouping, settle_heap
    from aggregator.store import Store
    from aggregator.update import Parsers, PollOptions, poll_due

    import_rss = tree_rss() / 2**20  # the worker's imports, before any work
    store = Store(f"sqlite:///{args.db}")
    store.upgrade()
    urls = feed_urls(args.base, args.feeds)
    store.sync_sources([SourceConfig(url=u) for u in urls], datetime.now(UTC))
    fetch = FetchOptions(
        user_agent="aggregator-bench",
        timeout=120.0,
        max_connections=args.connections,
        max_per_host=args.connections,
        allowed_networks=("127.0.0.1/32",),
    )
    settings = Settings()
    processes = settings.parse_processes if args.parse_mode == "default" else 0
    options = PollOptions(fetch=fetch, parse_processes=processes)
    parsers = Parsers(processes)  # kept across rounds, as a worker keeps it
    grouper = Grouper.from_settings(store, "bench", settings)
    settle_heap()  # as `aggregator worker` does once it is set up
    pauses = GcPauses()
    rounds = []
    for number in (1, 2):
        # Not force=True: with more feeds than update.CLAIM_BATCH, a forced poll claims
        # the feeds it just released again and never ends. A clock past max_interval
        # makes every feed due instead (round 1: new feeds are due anyway).
        clock = datetime.now(UTC) + (number - 1) * timedelta(days=2)
        profiler = _profiler(args, number)
        main_cpu = self_cpu_seconds()
        pauses.take()
        with measure() as measured:
            with measure() as polled:
                summary = poll_due(store, options, owner="bench", now=clock, parsers=parsers)
            with measure() as grouping:
                grouped = None if args.skip_grouping else grouper.run(clock)
                settle_after_grouping(grouped)  # as the worker's tick does
        main_cpu = self_cpu_seconds() - main_cpu
        _save_profile(profiler, args, number)
        if len(summary.results) != args.feeds:
            raise RuntimeError(f"round {number} polled {len(summary.results)} feeds")
        statuses = Counter(r.status for r in summary.results)
        rounds.append(
            {
                **vars(measured),
                "statuses": statuses,
                "entries": store.count_entries(),
                "main_cpu": main_cpu,
                "poll": vars(polled),
                "group": {**vars(grouping), "entries": grouped},
                "gc": pauses.take(),
            }
        )
    parsers.close()
    return {"rounds": rounds, "max_rss_mb": max_rss_mb(), "import_rss_mb": import_rss}


def _profiler(args: argparse.Namespace, number: int) -> Any:
    if not args.profile:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _save_profile(profiler: Any, args: argparse.Namespace, number: int) -> None:
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{args.profile}.round{number}")


def run_reader(args: argparse.Namespace) -> dict[str, Any]:
    from reader import make_reader

    import_rss = tree_rss() / 2**20
    reader = make_reader(str(args.db), search_enabled=False)
    for url in feed_urls(args.base, args.feeds):
        reader.add_feed(url)
    rounds = []
    for _ in (1, 2):
        with measure() as measured:
            reader.update_feeds(scheduled=False, workers=args.workers)
        failed = sum(1 for feed in reader.get_feeds() if feed.last_exception)
        statuses = {"error": failed, "ok": args.feeds - failed}
        entries = reader.get_entry_counts().total
        rounds.append({**vars(measured), "statuses": statuses, "entries": entries})
    reader.close()
    return {"rounds": rounds, "max_rss_mb": max_rss_mb(), "import_rss_mb": import_rss}


def _child(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *command], capture_output=True, text=True, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise RuntimeError(f"{command[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


# --- the comparison ----------------------------------------------------------------------


def _row(name: str, number: int, r: dict[str, Any], feeds: int) -> str:
    statuses = ",".join(f"{k}={v}" for k, v in sorted(r["statuses"].items()))
    line = (
        f"{name:<22} round {number}  wall {r['wall']:7.2f} s  {feeds / r['wall']:7.1f} feeds/s  "
        f"CPU {r['cpu']:6.2f} s  peak RSS {r['peak_rss_mb']:6.1f} MB  "
        f"entries {r['entries']}  [{statuses}]"
    )
    if "poll" in r:
        poll, group = r["poll"], r["group"]
        line += (
            f"\n{'':<22}          = poll {poll['wall']:.2f} s wall / {poll['cpu']:.2f} s CPU"
            f" + grouping {group['wall']:.2f} s wall / {group['cpu']:.2f} s CPU"
            f" ({group['entries']} entries); main process CPU {r['main_cpu']:.2f} s"
        )
    if "gc" in r:
        line += f"; GC {r['gc']['seconds']:.2f} s ({r['gc']['full']} full collections)"
    return line


def compare(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(
        f"corpus: {args.feeds} feeds, 20-100 entries dated back from today, "
        "latency 50-200 ms; "
        f"ours: max_connections=max_per_host={args.connections}; "
        f"reader: workers={args.reader_workers}"
    )
    results: dict[str, dict[str, Any]] = {}
    documents = corpus(args.feeds)  # warm the cache before the server starts
    entries = sum(d.count(b"</item>") + d.count(b"</entry>") for d in documents)
    print(f"corpus: {sum(map(len, documents)) / 2**20:.1f} MiB, {entries} entries")
    with feed_server(args.feeds) as base, tempfile.TemporaryDirectory() as tmp:
        common = ["--base", base, "--feeds", str(args.feeds)]
        for mode in args.parse_modes.split(","):
            name = f"ours ({mode})"
            command = ["ours", *common, "--db", f"{tmp}/{mode}.db", "--parse-mode", mode]
            command += ["--connections", str(args.connections)]
            command += ["--skip-grouping"] if args.skip_grouping else []
            command += ["--profile", f"{args.profile}.{mode}"] if args.profile else []
            results[name] = _child(command)
        if not args.skip_reader:
            command = ["reader", *common, "--db", f"{tmp}/reader.db"]
            results[f"reader (workers={args.reader_workers})"] = _child(
                [*command, "--workers", str(args.reader_workers)]
            )
    _report(results, args.feeds)


def _report(results: dict[str, dict[str, Any]], feeds: int) -> None:
    for name, result in results.items():
        for number, r in enumerate(result["rounds"], 1):
            print(_row(name, number, r, feeds))
        print(
            f"{name:<22} process max RSS {result['max_rss_mb']:.1f} MB; "
            f"RSS after imports {result['import_rss_mb']:.1f} MB"
        )
    readers = [name for name in results if name.startswith("reader")]
    if not readers:
        return
    theirs = results[readers[0]]
    for name, ours in results.items():
        if name in readers:
            continue
        for number in (1, 2):
            a, b = ours["rounds"][number - 1], theirs["rounds"][number - 1]
            print(
                f"{name} vs reader, round {number}: {b['wall'] / a['wall']:.2f}x faster "
                f"(poll + grouping; poll alone {b['wall'] / a['poll']['wall']:.2f}x), "
                f"CPU {b['cpu'] / a['cpu']:.2f}x less, "
                f"peak memory {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}x of reader's"
            )


# --- parse-pool measurements --------------------------------------------------------------


def _median_ms(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def threshold(args: argparse.Namespace) -> None:
    """Inline parse time against a pool round trip, by document size."""
    from aggregator.parse import cap_document, parse_feed
    from aggregator.parsepool import ParsePool

    base = next(d for d in corpus(args.feeds) if d.count(b"</item>") >= 60)
    print(f"machine: {machine()}")
    print(f"{'entries':>7} {'bytes':>8} {'inline ms':>10} {'pool ms':>8} {'IPC ms':>7}")
    with ParsePool(1, inline_max_bytes=0).start() as pool:
        for entries in (0, 1, 2, 3, 5, 10, 20, 50):
            data = cap_document(base, entries)[0] if entries else base[: base.index(b"<item>")]
            if not entries:
                data += b"</channel></rss>"
            inline = _median_ms(partial(parse_feed, data, url=URL, fetched_at=FETCHED), 30)
            pooled = _median_ms(partial(pool.parse, data, URL, None, FETCHED), 30)
            print(f"{entries:7} {len(data):8} {inline:10.2f} {pooled:8.2f} {pooled - inline:7.2f}")


def parse_only(args: argparse.Namespace) -> None:
    """Parse throughput of the corpus: one thread against a ParsePool of 2."""
    from aggregator.parse import parse_feed
    from aggregator.parsepool import ParsePool

    documents = corpus(args.feeds)[: args.documents]
    print(f"machine: {machine()}; {len(documents)} documents")
    with measure() as inline:
        for d in documents:
            parse_feed(d, url=URL, fetched_at=FETCHED)
    with ParsePool(2).start() as pool, ThreadPoolExecutor(4) as threads:
        with measure() as pooled:  # two threads per child, as update.py drives it
            list(threads.map(lambda d: pool.parse(d, URL, None, FETCHED), documents))
    for name, m in (("1 thread", inline), ("pool of 2", pooled)):
        print(
            f"{name:<10} wall {m.wall:6.2f} s  {len(documents) / m.wall:6.1f} docs/s  "
            f"CPU {m.cpu:6.2f} s  peak RSS {m.peak_rss_mb:6.1f} MB"
        )
    print(f"pool speed-up: {inline.wall / pooled.wall:.2f}x")


def floor(args: argparse.Namespace) -> None:
    """Round 2's floor: a bare aiohttp client making the same conditional GETs (one
    session, --connections at a time, nothing parsed or stored) against the server."""
    import asyncio
    import hashlib

    import aiohttp

    etags = [f'"{hashlib.sha256(d).hexdigest()[:20]}"' for d in corpus(args.feeds)]

    async def round_trip(urls: list[str]) -> tuple[float, Counter[int]]:
        limit = args.connections
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
        async with aiohttp.ClientSession(connector=connector) as session:
            gate = asyncio.Semaphore(limit)

            async def get(url: str, etag: str) -> int:
                async with gate, session.get(url, headers={"If-None-Match": etag}) as resp:
                    await resp.read()
                    return resp.status

            started = time.perf_counter()
            statuses = await asyncio.gather(*map(get, urls, etags))
            return time.perf_counter() - started, Counter(statuses)

    print(f"machine: {machine()}")
    with feed_server(args.feeds) as base:
        for _ in range(3):
            wall, statuses = asyncio.run(round_trip(feed_urls(base, args.feeds)))
            print(f"bare aiohttp, {args.connections} connections: {wall:.3f} s wall {statuses}")


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        nargs="?",
        default="compare",
        choices=["compare", "ours", "reader", "threshold", "parse-only", "floor"],
    )
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--reader-workers", type=int, default=64)
    parser.add_argument(
        "--parse-modes", default="default", help="comma-separated: default (shipped), thread"
    )
    parser.add_argument("--skip-reader", action="store_true")
    parser.add_argument(
        "--skip-grouping", action="store_true", help="ours: poll only (for profiling)"
    )
    parser.add_argument("--documents", type=int, default=300, help="parse-only: documents")
    parser.add_argument("--profile", help="ours: write cProfile stats to PROFILE.roundN")
    # used by the subprocesses
    parser.add_argument("--base")
    parser.add_argument("--db", type=Path)
    parser.add_argument("--parse-mode", default="default", choices=["default", "thread"])
    parser.add_argument("--workers", type=int, default=32)
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.command in ("ours", "reader"):
        result = (run_ours if args.command == "ours" else run_reader)(args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
    else:
        commands = {"compare": compare, "threshold": threshold, "parse-only": parse_only}
        {**commands, "floor": floor}[args.command](args)


if __name__ == "__main__":
    main()
