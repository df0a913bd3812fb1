"""Story-grouping benchmark: quality on labelled headlines, and cost at 100k entries.

Quality (default): replays ``stories/dev.tsv`` through ``StoryIndex`` in a fixed
shuffled order (seed 0) with timestamps spread evenly over 48 h in replay order
(the file's own timestamps are not used), takes each entry's story at the end of
the replay (after merges and second looks, as the store keeps it), writes the
predicted clusters and
scores them with the data set's ``score.py`` (B-cubed precision/recall/F1).
It reports the whole file and each half of the stories (split with seed 1):
thresholds are chosen on half A (``--sweep``) and half B is the held-out check.

``--orders N`` also prints the mean over N replay orders (order 0 is the seed-0
shuffle; order k > 0 reshuffles with seed 100 + k), the protocol used to choose
the constants in ``aggregator/group.py``.

Real-world stress test (``--realfeeds``): every entry of ``realfeeds/`` grouped at
once; no labels, so it prints what goes wrong rather than a score (see ``realfeeds``).
With ``--timeline`` the dated entries arrive in the order they were published, at
their published times (stories expire after the window, as in the worker), and every
story of several feeds is printed with its headlines, for reading.

``--embeddings`` (needs the ``embeddings`` extra) adds the optional sentence-embedding
stage, to the quality replay or to ``--realfeeds``.

Cost (``--cost``): groups 100,000 perturbed headlines (word drops and swaps,
time advancing so old stories expire) and prints the time per 1,000 entries at
10k, 50k and 100k entries and the peak memory; ``--runs N`` repeats it and prints
the best figure per checkpoint over the runs.

usage:
  python bench/grouping.py --data /work/shared/data [--sweep] [--cost [--runs N]]
  python bench/grouping.py --data D [--orders N] [--embeddings]
  python bench/grouping.py --data D --realfeeds [--timeline] [--embeddings]
  (or set AGGREGATOR_SHARED_DATA instead of --data)
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator import group  # noqa: E402
from aggregator.group import GroupItem, StoryIndex  # noqa: E402

START = datetime(2026, 11, 1, tzinfo=UTC)
COST_CHECKPOINTS = (10_000, 50_000, 100_000)
REPLAY_SPAN = timedelta(hours=48)


def load_rows(data: Path) -> list[dict[str, str]]:
    """Read dev.tsv rows in the fixed replay order (shuffled with seed 0)."""
    with open(data / "stories" / "dev.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    random.Random(0).shuffle(rows)
    return rows


def halves(rows: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Split the rows by story into halves A (tuning) and B (held out), seed 1."""
    stories = sorted({r["story"] for r in rows})
    random.Random(1).shuffle(stories)
    in_a = set(stories[: len(stories) // 2])
    return [r for r in rows if r["story"] in in_a], [r for r in rows if r["story"] not in in_a]


def replay(rows: Sequence[dict[str, str]], make: Callable[[], StoryIndex]) -> dict[str, int]:
    """Group rows in order; return row id -> story id at the end of the replay.

    The story each entry is in at the end is what the store keeps: a merge re-points
    the absorbed story's entries and the second look moves entries, so the id an
    entry got when it was added can be stale. (Until the fifth round this function
    returned that first id, which scored every merge as a split.) Entries whose
    story expired keep their last id. The replay ends 1 s after the last entry's time
    plus the index's second-look delay, so every entry had its second look.
    """
    index = make()
    step = REPLAY_SPAN / max(1, len(rows))
    out = {}
    for i, row in enumerate(rows):
        item = GroupItem(
            entry_id=int(row["id"]),
            title=row["title"],
            summary="",
            link=row["url"],
            source=row["publisher"],
            published_at=START + i * step,
            language="en",
        )
        out[row["id"]] = index.add(item).story_id
    if index.second_look is not None:
        index.look_again(START + len(rows) * step + index.second_look)
    for row_id in out:
        now = index.story_of(int(row_id))
        if now is not None:
            out[row_id] = now
    return out


def bcubed(gold: Sequence[str], pred: Sequence[object]) -> tuple[float, float, float]:
    """B-cubed precision, recall, F1 (same definition as score.py; for fast sweeps)."""
    from collections import Counter

    joint = Counter(zip(gold, pred, strict=True))
    gsize, psize = Counter(gold), Counter(pred)
    n = len(gold)
    p = sum(c * c / psize[pl] for (_, pl), c in joint.items()) / n
    r = sum(c * c / gsize[gl] for (gl, _), c in joint.items()) / n
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def score_with_script(
    data: Path, rows: Sequence[dict[str, str]], pred: dict[str, int]
) -> dict[str, Any]:
    """Write gold and predictions for ``rows`` and run score.py on them."""
    with tempfile.TemporaryDirectory() as tmp:
        gold_path, pred_path = Path(tmp) / "gold.tsv", Path(tmp) / "pred.tsv"
        with open(gold_path, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["id", "story"])
            w.writerows([r["id"], r["story"]] for r in rows)
        with open(pred_path, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["id", "cluster"])
            w.writerows([r["id"], pred[r["id"]]] for r in rows)
        script = data / "stories" / "score.py"
        cmd = [sys.executable, str(script), str(gold_path), str(pred_path), "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"score.py failed ({done.returncode}): {done.stderr.strip()}")
    scores: dict[str, Any] = json.loads(done.stdout)
    return scores


def quality(data: Path, make: Callable[[], StoryIndex], write: Path | None) -> None:
    """Print B-cubed P/R/F1 for the whole file and both halves."""
    rows = load_rows(data)
    part_a, part_b = halves(rows)
    for name, part in (("whole", rows), ("half A (tuning)", part_a), ("half B (held out)", part_b)):
        pred = replay(part, make)
        s = score_with_script(data, part, pred)
        print(
            f"{name:18} n={s['n_items']:5} gold={s['n_gold_clusters']:3} "
            f"pred={s['n_pred_clusters']:4}  B3 P={s['b3_precision']:.3f} "
            f"R={s['b3_recall']:.3f} F1={s['b3_f1']:.3f}  pairF1={s['pair_f1']:.3f} "
            f"AMI={s['ami']:.3f}"
        )
        if write is not None and name == "whole":
            with open(write, "w", newline="") as f:
                w = csv.writer(f, delimiter="\t")
                w.writerow(["id", "cluster"])
                w.writerows([k, v] for k, v in pred.items())


def mean_over_orders(data: Path, make: Callable[[], StoryIndex], n: int) -> None:
    """Print B-cubed P/R/F1 (whole, half A, half B) averaged over ``n`` replay orders."""
    base = load_rows(data)
    totals: dict[str, list[tuple[float, float, float]]] = {"whole": [], "A": [], "B": []}
    for k in range(n):
        rows = list(base)
        if k:
            random.Random(100 + k).shuffle(rows)
        part_a, part_b = halves(rows)
        for name, part in (("whole", rows), ("A", part_a), ("B", part_b)):
            pred = replay(part, make)
            totals[name].append(bcubed([r["story"] for r in part], [pred[r["id"]] for r in part]))
    for name, got in totals.items():
        p, r, f = (sum(x[i] for x in got) / n for i in range(3))
        print(f"mean of {n} orders, {name:5}: B3 P={p:.3f} R={r:.3f} F1={f:.3f}")


def sweep(data: Path) -> None:
    """Threshold and constant sweeps on half A, with half B and whole for reference."""
    rows = load_rows(data)
    part_a, part_b = halves(rows)

    def run(part: Sequence[dict[str, str]], **kw: float) -> tuple[float, float, float]:
        pred = replay(part, lambda: StoryIndex(**kw))  # type: ignore[arg-type]
        return bcubed([r["story"] for r in part], [pred[r["id"]] for r in part])

    grid = {
        "threshold": [0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.12],
        "size_bonus": [0.0, 0.1, 0.2, 0.3, 0.4],
        "merge_threshold": [0.0, 0.12, 0.15, 0.18, 0.21, 0.25, 0.4],
    }
    for name, values in grid.items():
        for value in values:
            a, b, w = (run(p, **{name: value}) for p in (part_a, part_b, rows))
            print(
                f"{name}={value:<5} A F1={a[2]:.3f} (P={a[0]:.2f} R={a[1]:.2f})  "
                f"B F1={b[2]:.3f}  whole F1={w[2]:.3f} (P={w[0]:.2f} R={w[1]:.2f})",
                flush=True,
            )
    for name, values in {"CHAR_WEIGHT": [0.0, 0.3, 0.5]}.items():
        old = getattr(group, name)
        for value in values:
            setattr(group, name, value)
            a, b, w = (run(p) for p in (part_a, part_b, rows))
            print(f"{name}={value:<5} A F1={a[2]:.3f}  B F1={b[2]:.3f}  whole F1={w[2]:.3f}")
        setattr(group, name, old)


_CIPHERS: dict[int, dict[int, int]] = {}


def _cipher(epoch: int) -> dict[int, int]:
    """A letter and digit substitution table for one pass (seeded by the pass number)."""
    table = _CIPHERS.get(epoch)
    if table is None:
        lower, digits = "abcdefghijklmnopqrstuvwxyz", "0123456789"
        rng = random.Random(10_000 + epoch)
        low = "".join(rng.sample(lower, len(lower)))
        dig = "".join(rng.sample(digits, len(digits)))
        table = str.maketrans(lower + lower.upper() + digits, low + low.upper() + dig)
        _CIPHERS[epoch] = table
    return table


def perturb(title: str, rng: random.Random, epoch: int) -> str:
    """Drop one word and swap two neighbours, so repeats are near, not exact, copies.

    Every word except stopwords goes through a letter substitution of its own
    for each pass over the file, so each pass is a fresh set of events with its
    own vocabulary (and character n-grams as varied as real words), and the
    previous pass's stories go quiet. (An earlier version appended a letter
    tag per pass; the stemmer undid some tags, e.g. "bb" -> "b", so words of
    pass 11 met stories of pass 1, and the tags made n-grams shared by every
    word of a pass.)
    """
    table = _cipher(epoch)
    stop = group._STOPWORDS
    words = [w if w.casefold() in stop else w.translate(table) for w in title.split()]
    if len(words) > 4:
        del words[rng.randrange(len(words))]
    if len(words) > 3:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def cost(data: Path, total: int = 100_000) -> dict[int, float]:
    """Time per 1,000 entries at 10k/50k/100k processed, and peak RSS (ru_maxrss).

    Returns the CPU seconds per 1,000 entries at each checkpoint."""
    rows = load_rows(data)
    rng = random.Random(0)
    index = StoryIndex()
    per_hour = 400  # entries per hour: 100k entries span ~10 days, so the 72 h window turns over
    measured: dict[int, float] = {}
    t_block, c_block = time.perf_counter(), time.process_time()
    for n in range(1, total + 1):
        row = rows[n % len(rows)]
        epoch = n // len(rows)  # each pass over the file is a fresh set of "events"
        when = START + timedelta(hours=n / per_hour)
        item = GroupItem(
            entry_id=n,
            title=perturb(row["title"], rng, epoch),
            summary="",
            link=f"{row['url']}/{epoch}-{n}" if rng.random() < 0.5 else None,
            source=row["publisher"],
            published_at=when,
            language="en",
        )
        index.add(item)
        if n % 1000 == 0:
            index.expire(when)
            if n in COST_CHECKPOINTS:
                elapsed = (time.perf_counter() - t_block) / 5
                cpu = measured[n] = (time.process_time() - c_block) / 5
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(
                    f"after {n:>7} entries: {elapsed:.3f} s per 1,000 (CPU {cpu:.3f} s; "
                    "mean of last 5,000), "
                    f"active stories={index.active_count}, peak RSS={peak:.0f} MiB",
                    flush=True,
                )
        if n % 5000 == 0:
            t_block, c_block = time.perf_counter(), time.process_time()
    return measured


def cost_runs(data: Path, runs: int) -> None:
    """`cost` run `runs` times, then the best (least) CPU time per checkpoint over the
    runs and the flatness ratio (largest / smallest of the three).

    Every run replays the same entries in the same order, each in a new process (its
    peak RSS its own), so the runs differ only by the machine: a 5,000-entry block is
    ~2 s, and on a shared host one block of a run can be 20-50 % slower than the same
    block of another. The best of several runs is the cost of the code, as
    `bench/parse.py` takes the best of its rounds."""
    if runs < 2:
        cost(data)
        return
    results = []
    spawn = multiprocessing.get_context("spawn")
    for run in range(1, runs + 1):
        print(f"run {run} of {runs}", flush=True)
        with ProcessPoolExecutor(1, mp_context=spawn) as fresh:  # a new process per run
            results.append(fresh.submit(cost, data).result())
    best = {n: min(result[n] for result in results) for n in sorted(COST_CHECKPOINTS)}
    figures = " / ".join(f"{best[n]:.3f}" for n in best)
    ratio = max(best.values()) / min(best.values())
    print(
        f"best of {runs} runs: {figures} CPU s per 1,000 at "
        + " / ".join(f"{n // 1000}k" for n in best)
        + f"; largest / smallest {ratio:.2f}x"
    )


def realfeeds(
    data: Path, timeline: bool = False, make: Callable[[], StoryIndex] = StoryIndex
) -> None:
    """Group every entry of the real-world feed corpus (``realfeeds/``, 273 feeds, many
    languages, summaries) as if first seen at once, and print what a reader would see
    go wrong. The corpus has no story labels and spans years, so this is a stress test
    of precision, not a score: the stories of several feeds, the largest ones with
    their labels, the feeds most of whose entries fell into one story, and the stories
    labelled by function words of their entries' languages. With ``timeline``, only
    the dated entries, in the order and at the times they were published (most
    stories then expire before the next feed's entries arrive), and each story of
    several feeds listed with its headlines. ``make`` builds the index (with
    ``--embeddings``: one with the sentence-embedding stage)."""
    from collections import Counter, defaultdict
    from datetime import UTC, datetime

    from aggregator.exceptions import ParseError
    from aggregator.group import function_words as function_words_of
    from aggregator.parse import parse_feed

    root = data / "realfeeds"
    with open(root / "MANIFEST.tsv", newline="") as handle:
        files = [row["file"] for row in csv.DictReader(handle, delimiter="\t")]
    fetched = datetime(2030, 1, 1, tzinfo=UTC)
    index = make()
    items: list[GroupItem] = []
    titles: dict[int, str] = {}
    function_words: dict[int, frozenset[str]] = {}
    texts: dict[int, tuple[str | None, str]] = {}  # declared language, title and lede
    started = time.process_time()
    for name in files:
        try:
            feed = parse_feed((root / name).read_bytes(), url=f"https://{name}", fetched_at=fetched)
        except ParseError:
            continue
        for entry in feed.entries:
            if timeline and entry.published_at is None:
                continue
            number = len(items) + 1
            language = entry.language or feed.language
            when = entry.published_at if timeline and entry.published_at else fetched
            items.append(
                GroupItem(number, entry.title, entry.summary, entry.link, name, when, language)
            )
            titles[number] = entry.title
            texts[number] = (language, " ".join([entry.title, *entry.summary.split()[:30]]))
    if timeline:
        items.sort(key=lambda item: (item.published_at, item.entry_id))
    story_of: dict[int, int] = {}  # entry -> its story at the end (moves and merges)
    for item in items:
        story_of[item.entry_id] = index.add(item).story_id
        function_words[item.entry_id] = function_words_of(item)
        for move in index.drain_moves():
            story_of[move.assignment.entry_id] = move.assignment.story_id
        for survivor, absorbed in index.drain_merges():
            for entry_id in [e for e, s in story_of.items() if s == absorbed]:
                story_of[entry_id] = survivor
    seconds = time.process_time() - started
    source_of = {item.entry_id: item.source for item in items}
    members: dict[int, list[int]] = defaultdict(list)
    for entry_id, story in story_of.items():
        members[story].append(entry_id)
    several = {s: m for s, m in members.items() if len({source_of[e] for e in m}) > 1}
    print(
        f"{len(items)} entries of {len(files)} feeds ({seconds:.1f} CPU s with parsing): "
        f"{len(members)} stories, {len(several)} of several feeds holding "
        f"{sum(len(m) for m in several.values())} entries"
    )
    active = set(index.active_story_ids)
    print("largest stories of several feeds (entries, feeds, key terms or first headline):")
    for story, entries in sorted(several.items(), key=lambda kv: -len(kv[1]))[:10]:
        feeds = len({source_of[e] for e in entries})
        shown = ", ".join(index.label(story).terms) if story in active else titles[min(entries)]
        print(f"  {len(entries):4} {feeds:3}  {shown[:70]}")
    if timeline:
        for entries in sorted(several.values(), key=min):
            print(f"story of {len(entries)} entries:")
            for entry_id in sorted(entries):
                print(f"    {source_of[entry_id].split('/')[-1][:24]:24} {titles[entry_id][:90]}")
    by_feed: dict[str, list[int]] = defaultdict(list)
    for number, name in source_of.items():
        by_feed[name].append(number)
    busy = {name: numbers for name, numbers in by_feed.items() if len(numbers) >= 10}
    collapsed = [
        name
        for name, numbers in busy.items()
        if Counter(story_of[n] for n in numbers).most_common(1)[0][1] > len(numbers) / 2
    ]
    print(f"feeds of 10+ entries with more than half in one story: {len(collapsed)} of {len(busy)}")
    labelled = 0
    for story, entries in several.items():
        words = frozenset().union(*(function_words[e] for e in entries))
        if story not in active:
            continue  # expired (timeline): no label left to read
        terms = index.label(story).terms
        labelled += sum(word in words for term in terms for word in term.split()) >= 2
    print(f"stories of several feeds labelled by their languages' function words: {labelled}")
    mixed_languages(several, texts)


def mixed_languages(
    stories: Mapping[int, Sequence[int]], texts: Mapping[int, tuple[str | None, str]]
) -> None:
    """Print how many of `stories` hold entries of several languages, as a second model
    (py3langid, not the fastText model grouping uses) reads the entries that declare
    none: each entry's declared primary language, else py3langid's when its normalised
    probability is at least 0.99, else none."""
    from collections import Counter

    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        print("mixed languages: not measured (pip install py3langid)")
        return
    judge = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def language(number: int) -> str | None:
        declared, text = texts[number]
        if declared:
            return declared.replace("_", "-").split("-")[0].lower()
        found, probability = judge.classify(text)
        return str(found) if probability >= 0.99 else None

    mixed = odd = 0
    for entries in stories.values():
        counts = Counter(lang for lang in map(language, entries) if lang)
        if len(counts) > 1:
            mixed += 1
            odd += sum(counts.values()) - counts.most_common(1)[0][1]
    print(
        f"stories of several feeds mixing languages (py3langid's reading): {mixed}, "
        f"with {odd} entries in another language than most of their story"
    )


def with_embeddings(data: Path, prime: bool = False) -> Callable[[], StoryIndex]:
    """A maker of indexes with the sentence-embedding stage (the `embeddings` extra);
    with ``prime``, dev.tsv's titles are embedded first (and the time printed)."""
    from aggregator.embed import load_embedder

    embedder = load_embedder()
    if prime:
        started = time.process_time()
        titles = [row["title"] for row in load_rows(data)]
        embedder.prime(titles)
        print(f"embedded {len(titles)} titles in {time.process_time() - started:.1f} CPU s")

    def make() -> StoryIndex:
        return StoryIndex(embedder=embedder)

    return make


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="shared data dir (has stories/)")
    ap.add_argument("--sweep", action="store_true", help="sweep constants on half A")
    ap.add_argument("--cost", action="store_true", help="cost run with 100k entries")
    ap.add_argument("--runs", type=int, default=1, help="cost: runs, best per checkpoint")
    ap.add_argument(
        "--realfeeds", action="store_true", help="stress test on the real-world feed corpus"
    )
    ap.add_argument(
        "--timeline", action="store_true", help="realfeeds: in publication order, with expiry"
    )
    ap.add_argument("--write", type=Path, default=None, help="write whole-file predictions")
    ap.add_argument("--orders", type=int, default=0, help="also average over N replay orders")
    ap.add_argument(
        "--embeddings",
        action="store_true",
        help="add the optional sentence-embedding stage (needs the embeddings extra)",
    )
    a = ap.parse_args(argv)
    data = a.data or (
        Path(os.environ["AGGREGATOR_SHARED_DATA"])
        if os.environ.get("AGGREGATOR_SHARED_DATA")
        else None
    )
    if data is None:
        ap.error("give --data or set AGGREGATOR_SHARED_DATA")
    if a.sweep:
        sweep(data)
    elif a.cost:
        cost_runs(data, a.runs)
    elif a.realfeeds:
        realfeeds(data, a.timeline, with_embeddings(data) if a.embeddings else StoryIndex)
    else:
        make = with_embeddings(data, prime=True) if a.embeddings else StoryIndex
        quality(data, make, a.write)
        if a.orders:
            mean_over_orders(data, make, a.orders)
    return 0


if __name__ == "__main__":
    sys.exit(main())
