"""Helpers shared by the benchmarks: a deterministic feed corpus, a slow local feed
server in its own process, and CPU / peak-memory measurement.

The corpus is news as a first poll meets it: each feed publishes every 15 min to 3 days
(log-uniform), so its 20-100 entries reach back from hours to months before today
(about 40 % of all entries are from the last three days); headlines name one of the
events in the news at their time (500 per 6 h with Zipf weights: a few draw dozens of
outlets, most one or two), so several outlets cover the same event. It is deterministic
per day (dates count back from today's midnight, UTC).

The server is `python bench/common.py serve --feeds N --seed S`: an aiohttp.web app on
127.0.0.1 (a free port, printed as "port N" on stdout) serving /f/{i}.xml with 50-200 ms
of latency per response, a strong ETag and 304 on a matching If-None-Match. It answers
thousands of concurrent connections from one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import itertools
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

WORDS = (
    "government minister election council budget report climate energy market shares "
    "court ruling police city river storm heat record season league final coach player "
    "research study university health hospital vaccine school students teachers strike "
    "union rail airport flights prices inflation bank rates housing rent plan talks "
    "summit leaders border trade deal tariffs company profits jobs workers factory car "
    "electric battery solar wind farm water drought flood rescue fire forest museum art "
    "festival film music album tour book author prize science space mission satellite"
).split()
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
VOCABULARY = 30_000  # content words of the running text, used with Zipf frequencies
EVENTS_PER_BUCKET = 500  # events in the news at once, per BUCKET of publication time
BUCKET = timedelta(hours=6)
INTERVALS = (0.25, 72.0)  # hours between a feed's entries: log-uniform over this range


def corpus_day() -> datetime:
    """The start of the current hour (UTC): entries are dated back from it, so a first
    poll meets news as a worker would (entries of the last hours, and older back
    catalogue). Dated back from midnight until the seventeenth session, the corpus put
    49 h of entries in the 72 h grouping window at 23:00 and 72 h at 00:05, and round 1
    of `poll.py` grouped 21,000 or 31,000 entries by the time of day it ran."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _name(number: int) -> str:
    """A made-up proper name or subject word, distinct per number (2-4 syllables)."""
    rng = random.Random(number)
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def _event_words(when: datetime, rng: random.Random) -> list[str]:
    """The subject words of one of the events in the news at `when`: the events of a
    time bucket are fixed, and a few of them draw most of the coverage (Zipf)."""
    bucket = int(when.timestamp() // BUCKET.total_seconds())
    ranks = range(1, EVENTS_PER_BUCKET + 1)
    event = rng.choices(ranks, weights=[1 / r for r in ranks])[0]
    base = (bucket * EVENTS_PER_BUCKET + event) * 5
    return [_name(base + k) for k in range(5)]


@functools.cache
def _vocabulary() -> tuple[list[str], list[float]]:
    """Words for running text, most frequent first (WORDS, then made-up ones), with
    cumulative Zipf weights: as in real text, a few words are everywhere and most are
    rare (a vocabulary of 100 words made every headline look alike to grouping)."""
    words = list(dict.fromkeys([*WORDS, *(_name(-1 - n) for n in range(VOCABULARY))]))
    return words, list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))


def _words(rng: random.Random, k: int) -> list[str]:
    words, weights = _vocabulary()
    return rng.choices(words, cum_weights=weights, k=k)


def _headline(rng: random.Random, subject: list[str]) -> str:
    words = rng.sample(subject, rng.randint(2, 3)) + _words(rng, rng.randint(2, 6))
    rng.shuffle(words)
    return " ".join(words).capitalize()


def _sentence(rng: random.Random, low: int = 8, high: int = 18) -> str:
    words = _words(rng, rng.randint(low, high))
    return " ".join(words).capitalize() + "."


def _html_description(rng: random.Random, feed: int, item: int, subject: list[str]) -> str:
    paragraphs = []
    for p in range(rng.randint(1, 3)):
        text = " ".join(_sentence(rng) for _ in range(rng.randint(2, 4)))
        if p == 0:
            text = f"{' '.join(rng.sample(subject, 3)).capitalize()}: {text}"
        word = rng.choice(WORDS)
        link = f'<a href="https://news{feed}.example.org/topic/{word}">{word}</a>'
        paragraphs.append(f"<p>{text} See {link}, <em>{_sentence(rng, 3, 6)}</em></p>")
        if p == 0 and rng.random() < 0.3:
            paragraphs.append(f'<img src="/img/{feed}-{item}.jpg" alt="{word}">')
    return "".join(paragraphs)


Item = tuple[int, str, str, datetime]  # number within the feed, headline, HTML, published


def _items(rng: random.Random, feed: int, day: datetime) -> Iterator[Item]:
    """A feed's entries, newest first: one every `interval` hours (a wire service every
    quarter hour, a weekly blog every few days), back from `day`."""
    count = rng.randint(20, 100)
    interval = math.exp(rng.uniform(*map(math.log, INTERVALS)))
    for item in range(count):
        when = day - timedelta(hours=interval * (item + rng.random()))
        subject = _event_words(when, rng)
        yield item, _headline(rng, subject), _html_description(rng, feed, item, subject), when


def rss_link(feed: int, item: int, when: datetime) -> str:
    return f"https://news{feed}.example.org/{when:%Y/%m/%d}/story-{item}"


def atom_link(feed: int, item: int, when: datetime) -> str:
    return f"https://blog{feed}.example.org/{when:%Y/%m}/post-{item}"


def _rss(rng: random.Random, feed: int, items: Iterable[Item]) -> str:
    """An RSS 2.0 document of `items` (consumed in step with `rng`)."""
    rendered = []
    for item, title, html, when in items:
        link = rss_link(feed, item, when)
        rendered.append(
            f"<item><title>{escape(title)}</title><link>{link}</link>"
            f'<guid isPermaLink="true">{link}</guid><pubDate>{format_datetime(when)}</pubDate>'
            f"<author>desk{feed}@example.org (News desk)</author><category>{rng.choice(WORDS)}"
            f"</category><description>{escape(html)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>News {feed}</title><link>https://news{feed}.example.org/</link>"
        f"<description>Feed {feed}</description><language>en</language>{''.join(rendered)}"
        "</channel></rss>"
    )


def _atom(rng: random.Random, feed: int, items: Iterable[Item], updated: datetime) -> str:
    """An Atom 1.0 document of `items` (consumed in step with `rng`)."""
    entries = []
    for item, title, html, when in items:
        link = atom_link(feed, item, when)
        entries.append(
            f'<entry><title>{escape(title)}</title><link href="{link}"/>'
            f"<id>tag:blog{feed}.example.org,2026:{item}</id>"
            f"<published>{when.isoformat()}</published><updated>{when.isoformat()}</updated>"
            f"<author><name>Author {feed}</name></author>"
            f'<summary>{escape(_sentence(rng))}</summary><content type="html">{escape(html)}'
            "</content></entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f'<title>Blog {feed}</title><link href="https://blog{feed}.example.org/"/>'
        f"<id>tag:blog{feed}.example.org,2026:feed</id><updated>{updated.isoformat()}"
        f"</updated>{''.join(entries)}</feed>"
    )


def feed_document(feed: int, seed: int = 1, day: datetime | None = None) -> bytes:
    """Feed number `feed` of the corpus: RSS 2.0 (70%) or Atom, 20-100 entries dated
    back from `day` (default: `corpus_day()`)."""
    rng = random.Random(seed * 1_000_003 + feed)
    day = day or corpus_day()
    if rng.random() < 0.3:
        return _atom(rng, feed, _items(rng, feed, day), day).encode()
    return _rss(rng, feed, _items(rng, feed, day)).encode()


def corpus(feeds: int, seed: int = 1) -> list[bytes]:
    """The whole corpus, cached under the temp folder for the hour (generating it takes
    seconds); the caches of earlier hours are removed."""
    day = corpus_day()
    prefix = f"aggregator-bench-corpus-{seed}-{feeds}-"
    cache = Path(tempfile.gettempdir()) / f"{prefix}{day:%Y%m%d%H}"
    if not (cache / "done").exists():
        for old in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
            if old != cache:
                shutil.rmtree(old, ignore_errors=True)
        cache.mkdir(exist_ok=True)
        for n in range(feeds):
            (cache / f"{n}.xml").write_bytes(feed_document(n, seed, day))
        (cache / "done").touch()
    return [(cache / f"{n}.xml").read_bytes() for n in range(feeds)]


def feed_urls(base: str, feeds: int) -> list[str]:
    return [f"{base}/f/{n}.xml" for n in range(feeds)]


# --- the server ------------------------------------------------------------------------


def serve(feeds: int, seed: int, low: float, high: float) -> None:
    """Serve the corpus until killed (run in its own process)."""
    from aiohttp import web

    documents = corpus(feeds, seed)
    etags = [f'"{hashlib.sha256(d).hexdigest()[:20]}"' for d in documents]
    rng = random.Random(seed)

    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(rng.uniform(low, high))
        try:
            n = int(request.match_info["n"])
            body, etag = documents[n], etags[n]
        except (ValueError, IndexError):
            raise web.HTTPNotFound() from None
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=body, headers={"ETag": etag, "Content-Type": "application/xml; charset=utf-8"}
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/f/{n}.xml", handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = runner.addresses[0][1]
        print(f"port {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def feed_server(feeds: int, seed: int = 1, low: float = 0.05, high: float = 0.2) -> Iterator[str]:
    """Start the slow feed server in a child process; yields its base URL."""
    args = [__file__, "serve", f"--feeds={feeds}", f"--seed={seed}"]
    args += [f"--low={low}", f"--high={high}"]
    with server_process(args) as (base, _pid):
        yield base


@contextmanager
def server_process(args: list[str]) -> Iterator[tuple[str, int]]:
    """Run `python *args` in a child process that prints "port N" once it listens on
    127.0.0.1; yields its base URL and pid, and stops it afterwards."""
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- measurement -----------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU of this process, of its reaped children and of its live ones
    (a process pool's workers outlive a round)."""
    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def self_cpu_seconds() -> float:
    """User + system CPU of this process alone (all its threads, no children)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes(pid: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid: str) -> list[str]:
    """Direct children of `pid`, from /proc (cheap: no scan of every process)."""
    found: list[str] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += (task / "children").read_text().split()
    except OSError:
        pass
    return found


def tree_rss() -> int:
    """RSS of this process plus its descendants, in bytes."""
    total, todo = 0, ["self"]
    while todo:
        pid = todo.pop()
        total += _rss_bytes(pid)
        todo += _children(pid)
    return total


@dataclass
class PeakMemory:
    """Samples the RSS of this process plus its children every `interval` s (from /proc,
    so that the sampler's own cost stays small)."""

    interval: float = 0.05
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        self.peak = max(self.peak, tree_rss())


@dataclass
class Measured:
    wall: float = 0.0
    cpu: float = 0.0
    peak_rss_mb: float = 0.0


@contextmanager
def measure() -> Iterator[Measured]:
    """Wall time, CPU seconds (self + children) and peak tree RSS of the block."""
    result = Measured()
    cpu, start = cpu_seconds(), time.perf_counter()
    with PeakMemory() as memory:
        yield result
    result.wall = time.perf_counter() - start
    result.cpu = cpu_seconds() - cpu
    result.peak_rss_mb = memory.peak / 2**20


def max_rss_mb() -> float:
    """ru_maxrss of this process (KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    """nproc, CPU model and RAM, for the record."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    ram = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            ram = int(line.split()[1]) // 2**20
    return f"{os.cpu_count()} CPUs, {model}, {ram} GiB RAM, Python {sys.version.split()[0]}"


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--low", type=float, default=0.05)
    parser.add_argument("--high", type=float, default=0.2)
    args = parser.parse_args()
    serve(args.feeds, args.seed, args.low, args.high)


if __name__ == "__main__":
    _main()
