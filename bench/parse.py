"""Parse-path benchmark over $AGGREGATOR_SHARED_DATA/realfeeds (a benchmark, not a test).

Prints entries/s and MB/s for: feedparser with its defaults, our feedparser path
(DTD guard + feedparser without its sanitiser + normalise), our full path (lxml fast
path first) and lxml's bare parse (the floor); the same split by documents the fast
path takes and documents it leaves to feedparser; then how well the fast path agrees
with the feedparser path on ids, titles, links and dates (and on whole entries).
Last, the full path through `aggregator.parsepool` with 2 child processes, driven as
the service drives it (parse threads calling `ParsePool.parse`, small documents parsed
inline): that figure is wall-clock time on both cores, not CPU time.

Times are CPU seconds of this process (`time.process_time`): the machine is shared,
and CPU time is what parsing costs the service. Entries are those read (kept + dropped).
The first table is the best of ROUNDS rounds over the whole corpus, the modes
interleaved by round (comparable with earlier sessions' figures). The second pairs the
modes per document: each document is parsed by every mode back to back (the order
reversed every other round), and each mode's time for it is its best of ROUNDS, summed
over the documents. A host whose speed drifts over seconds (these hosts drift by up to a
quarter within minutes) then drifts under every mode alike, where a round of feedparser
(10-20 s) and a round of ours (1-2 s) can land on different speeds; the split by
documents the fast path takes and leaves comes from the same measurements.

    AGGREGATOR_SHARED_DATA=/work/shared/data /work/venv/bin/python bench/parse.py [-v]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import feedparser
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.exceptions import ParseError  # noqa: E402
from aggregator.fastparse import parse_fast, refusal  # noqa: E402
from aggregator.models import EntryData  # noqa: E402
from aggregator.parse import parse_feed  # noqa: E402
from aggregator.parsepool import ParsePool  # noqa: E402

FETCHED = datetime(2030, 1, 1, tzinfo=UTC)  # after every snapshot: no clamping
FEED_URL = "https://feeds.example.net/feed"
ROUNDS = 5  # best of five per mode, modes interleaved: the machine is shared
AGREEMENT_FIELDS = ("key", "title", "link", "published_at", "updated_at")
POOL_WORKERS = 2  # the service's default: one child per core
POOL_THREADS = 2 * POOL_WORKERS  # parse threads feeding the pool, as bench/poll.py does


@dataclass(frozen=True)
class Doc:
    name: str
    data: bytes


def load(root: Path) -> list[Doc]:
    """Every XML document of the corpus (JSON Feed is not feedparser's, so not timed)."""
    with open(root / "MANIFEST.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        Doc(r["file"], (root / r["file"]).read_bytes())
        for r in rows
        if not r["format"].startswith("jsonfeed")
    ]


Mode = tuple[str, Callable[[bytes], int]]


def timed(docs: list[Doc], modes: list[Mode]) -> dict[str, tuple[float, int]]:
    """Best CPU time and entry count per mode, over ROUNDS interleaved rounds."""
    best: dict[str, tuple[float, int]] = {}
    for _ in range(ROUNDS):
        for label, run in modes:
            start = time.process_time()
            entries = sum(run(doc.data) for doc in docs)
            seconds = time.process_time() - start
            if label not in best or seconds < best[label][0]:
                best[label] = (seconds, entries)
    return best


def report(title: str, docs: list[Doc], modes: list[Mode]) -> dict[str, tuple[float, int]]:
    megabytes = sum(len(d.data) for d in docs) / 1e6
    print(f"\n{title}: {len(docs)} documents, {megabytes:.1f} MB")
    results = timed(docs, modes)
    print_rates(results, megabytes, "  ")
    return results


def print_rates(results: dict[str, tuple[float, int]], megabytes: float, indent: str) -> None:
    """One line per mode: CPU seconds, entries/s, MB/s and the speed-up over the first."""
    baseline = 0.0
    for label, (seconds, entries) in results.items():
        rate = entries / seconds
        baseline = baseline or rate
        speedup = f"{rate / baseline:5.1f}x" if entries else ""
        print(
            f"{indent}{label:<{24 - len(indent)}}{seconds:7.2f} s {rate:8.0f} entries/s "
            f"{megabytes / seconds:7.1f} MB/s {speedup}"
        )


PerDocument = dict[str, dict[str, tuple[float, int]]]  # mode -> document -> (s, entries)


def paired(docs: list[Doc], modes: list[Mode]) -> PerDocument:
    """Each mode's best CPU time and entry count per document, the modes run back to
    back on each document (in reverse order every other round)."""
    best: PerDocument = {label: {} for label, _ in modes}
    for round_number in range(ROUNDS):
        order = modes if round_number % 2 == 0 else modes[::-1]
        for doc in docs:
            for label, run in order:
                start = time.process_time()
                entries = run(doc.data)
                seconds = time.process_time() - start
                known = best[label].get(doc.name)
                if known is None or seconds < known[0]:
                    best[label][doc.name] = (seconds, entries)
    return best


def report_paired(title: str, docs: list[Doc], per_document: PerDocument) -> None:
    megabytes = sum(len(d.data) for d in docs) / 1e6
    print(f"  {title}: {len(docs)} documents, {megabytes:.1f} MB")
    totals = {
        label: (sum(times[d.name][0] for d in docs), sum(times[d.name][1] for d in docs))
        for label, times in per_document.items()
    }
    print_rates(totals, megabytes, "    ")


def pooled(docs: list[Doc], cpu: dict[str, tuple[float, int]]) -> None:
    """Wall-clock entries/s of the full path through a ParsePool of 2 processes, with
    the single-process full path's wall-clock time in interleaved rounds (the machine
    is shared: only figures taken under the same load compare)."""
    megabytes = sum(len(d.data) for d in docs) / 1e6
    single_run = ours(fast=True)

    with ParsePool(POOL_WORKERS).start() as pool, ThreadPoolExecutor(POOL_THREADS) as threads:

        def one(doc: Doc) -> int:
            try:
                feed = pool.parse(doc.data, FEED_URL, None, FETCHED)
            except ParseError:
                return 0
            return len(feed.entries) + feed.dropped

        def in_process() -> int:
            return sum(single_run(d.data) for d in docs)

        def in_pool() -> int:
            return sum(threads.map(one, docs))

        in_pool()  # warms the children up
        best: dict[str, tuple[float, int]] = {}
        for _ in range(ROUNDS):
            for label, run in (("1 process (wall)", in_process), ("pool of 2 (wall)", in_pool)):
                start = time.perf_counter()
                entries = run()
                seconds = time.perf_counter() - start
                if label not in best or seconds < best[label][0]:
                    best[label] = (seconds, entries)
    print(
        f"\nfull path, WALL-CLOCK on {os.cpu_count()} cores, best of {ROUNDS}: one process, "
        f"and aggregator.parsepool with {POOL_WORKERS} processes (IPC included)"
    )
    for label, (seconds, entries) in best.items():
        print(
            f"  {label:<22}{seconds:7.2f} s {entries / seconds:8.0f} entries/s "
            f"{megabytes / seconds:7.1f} MB/s"
        )
    seconds, entries = best["pool of 2 (wall)"]
    rate = entries / seconds
    single = cpu["our full path"][1] / cpu["our full path"][0]
    single_wall = best["1 process (wall)"][1] / best["1 process (wall)"][0]
    feedparser_rate = cpu["feedparser defaults"][1] / cpu["feedparser defaults"][0]
    print(
        f"  pool of 2 (wall) = {rate / single_wall:.2f}x one process (wall), "
        f"{rate / single:.2f}x our full path single-process CPU ({single:.0f} entries/s), "
        f"{rate / feedparser_rate:.1f}x feedparser defaults single-process CPU "
        f"({feedparser_rate:.0f} entries/s)"
    )


def feedparser_defaults(data: bytes) -> int:
    return len(feedparser.parse(data).entries)


def ours(fast: bool) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        try:
            feed = parse_feed(data, url=FEED_URL, fetched_at=FETCHED, fast=fast)
        except ParseError:
            return 0
        return len(feed.entries) + feed.dropped

    return run


def lxml_bare(data: bytes) -> int:
    try:
        etree.fromstring(data.lstrip(), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        pass
    return 0


def agreement(docs: list[Doc], verbose: bool) -> None:
    fast_docs = fast_entries = agree = whole = total = 0
    for doc in docs:
        slow = parse_feed(doc.data, url=FEED_URL, fetched_at=FETCHED, fast=False)
        total += len(slow.entries)
        fast = parse_fast(doc.data, url=FEED_URL, fetched_at=FETCHED)
        if fast is None:
            agree += len(slow.entries)
            whole += len(slow.entries)
            continue
        fast_docs += 1
        fast_entries += len(slow.entries)
        if len(fast.entries) != len(slow.entries) and verbose:
            print(f"  count {doc.name}: fast {len(fast.entries)} slow {len(slow.entries)}")
        for a, b in zip(fast.entries, slow.entries, strict=False):
            same = _same(a, b)
            agree += same
            whole += a == b
            if verbose and not same:
                print(f"  differs {doc.name}: {_diff(a, b)}")
            elif verbose > 1 and a != b:
                print(f"  detail {doc.name}: {_diff(a, b, all_fields=True)}")
    print(
        f"fast path took {fast_docs}/{len(docs)} documents, "
        f"{fast_entries}/{total} entries ({fast_entries / max(total, 1):.1%})"
    )
    print(
        f"agreement (ids, titles, links, dates): {agree}/{total} = {agree / max(total, 1):.2%}; "
        f"whole entries identical: {whole}/{total} = {whole / max(total, 1):.2%}"
    )


def _same(a: EntryData, b: EntryData) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in AGREEMENT_FIELDS)


def _diff(a: EntryData, b: EntryData, all_fields: bool = False) -> str:
    names = EntryData.__dataclass_fields__ if all_fields else AGREEMENT_FIELDS
    return "; ".join(
        f"{n}: fast={getattr(a, n)!r:.80} slow={getattr(b, n)!r:.80}"
        for n in names
        if getattr(a, n) != getattr(b, n) and n != "content_hash"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args()
    shared = os.environ.get("AGGREGATOR_SHARED_DATA")
    if not shared:
        sys.exit("set AGGREGATOR_SHARED_DATA (e.g. /work/shared/data)")
    docs = load(Path(shared) / "realfeeds")
    print(f"CPU seconds, best of {ROUNDS} interleaved rounds; {_load_average()}")
    modes: list[Mode] = [
        ("feedparser defaults", feedparser_defaults),
        ("our feedparser path", ours(fast=False)),
        ("our full path", ours(fast=True)),
        ("lxml bare parse", lxml_bare),
    ]
    everything = report("all XML documents", docs, modes)
    # split by what the fast path really does with the whole document (every entry)
    fast = {d.name for d in docs if parse_fast(d.data, url=FEED_URL, fetched_at=FETCHED)}
    taken = [d for d in docs if d.name in fast]
    left = [d for d in docs if d.name not in fast]
    per_document = paired(docs, modes)
    print(f"\npaired per document (each mode's best of {ROUNDS} per document, summed):")
    report_paired("all XML documents", docs, per_document)
    report_paired("documents the fast path takes", taken, per_document)
    report_paired("documents left to feedparser", left, per_document)
    pooled(docs, everything)
    print()
    agreement(docs, args.verbose)
    if args.verbose:
        reasons = Counter(refusal(d.data) for d in left)
        for reason, count in reasons.most_common():
            print(f"  left to feedparser: {count:3} {reason}")
    print(_load_average())


def _load_average() -> str:
    """The machine is shared: the load average says how far to trust the timings."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
