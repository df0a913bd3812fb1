"""Benchmark (not a test): serving speed of the web app under gunicorn -w 2.

    python bench/serve.py [--entries 100000] [--stories 5000] [--seconds 10]

Builds a SQLite store with `--entries` entries over 200 feeds and `--stories` stories of
three outlets each (through Store.save_update / save_assignments), serves it with
`gunicorn -w 2 "aggregator.web:create_app()"` on loopback, and loads it with wrk
(/usr/bin/wrk): `/`, `/feed.atom` (200, and 304 with If-None-Match), a story's Atom feed.
Before that it times uncached renders in a warm process (`render_ms`), and the first
request of each page in the served app (which also compiles templates and statements).
For reference it also serves a prebuilt 50-entry Atom document from memory (200 and 304)
with the same gunicorn settings. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator.models import EntryData, SourceConfig, StoryAssignment, StoryLabel
from aggregator.store import FeedUpdate, Store

FEEDS = 200
WORDS = (
    "government minister election council budget report climate energy market court "
    "ruling police city river storm record season league final research study health "
    "school strike rail airport prices bank housing summit border trade company jobs"
).split()
BASELINE_APP = """
import hashlib
BODY = open(__file__.replace("baseline_app.py", "baseline.atom"), "rb").read()
ETAG = '"' + hashlib.sha256(BODY).hexdigest()[:32] + '"'

def app(environ, start_response):
    if environ.get("HTTP_IF_NONE_MATCH") == ETAG:
        start_response("304 Not Modified", [("ETag", ETAG)])
        return [b""]
    start_response("200 OK", [("Content-Type", "application/atom+xml"), ("ETag", ETAG),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]
"""


def title(i: int) -> str:
    return " ".join(WORDS[(i * k + k) % len(WORDS)] for k in (3, 5, 7, 11, 13)).capitalize()


def build_store(url: str, entries: int, stories: int) -> int:
    """Fill the store; returns a story id. Entries are 1 minute apart, newest now."""
    store = Store(url)
    store.upgrade()
    now = datetime.now(UTC).replace(microsecond=0)
    sources = [
        SourceConfig(url=f"https://feed{i}.example/rss", title=f"Outlet {i}", tags=(f"t{i % 5}",))
        for i in range(FEEDS)
    ]
    store.sync_sources(sources, now)
    feeds = store.claim_due_feeds("bench", now, timedelta(hours=1), FEEDS, force=True)
    per_feed = entries // len(feeds)
    ids: list[list[int]] = []
    for f_index, feed in enumerate(feeds):
        items = [
            EntryData(
                key=f"{feed.id}-{n}",
                title=title(n * FEEDS + f_index),
                link=f"https://feed{f_index}.example/a/{n}",
                published_at=now - timedelta(minutes=n * FEEDS + f_index),
                updated_at=None,
                summary="Summary " + title(n + f_index),
                content_html=f"<p>{title(n)}</p>",
                content_hash=hashlib.sha256(f"{feed.id}-{n}".encode()).hexdigest(),
            )
            for n in range(per_feed)
        ]
        state = FeedUpdate(last_fetch_at=now, last_success_at=now, last_status="ok")
        ids.append(list(store.save_update(feed.id, "bench", state, items, now=now).new_ids))
    assignments, labels = [], []
    for s in range(stories):  # entries n of three neighbouring feeds form a story
        n, first = divmod(s * 3, FEEDS - 2)
        members = [ids[first + k][n] for k in range(3)]
        assignments += [StoryAssignment(e, members[0], 0.8, ("market", "prices")) for e in members]
        labels.append(StoryLabel(members[0], title(s), members[0], ("market", "prices")))
    for start in range(0, len(assignments), 3000):
        store.save_assignments(
            assignments[start : start + 3000], labels[start // 3 : (start + 3000) // 3]
        )
    store.close()
    return labels[0].story_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(app: str, env: dict[str, str], chdir: Path) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
        "--chdir", str(chdir), "--log-level", "warning", app,
    ]  # fmt: skip
    process = subprocess.Popen(command, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(
                    base + "/healthz" if "aggregator" in app else base, timeout=1
                )
                break
            except urllib.error.HTTPError:
                break  # 503 before any worker tick: the app answers
            except OSError:
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def wrk(url: str, seconds: int, header: str | None = None) -> tuple[float, str, str, int]:
    """(requests/s, p50, p99, non-2xx/3xx count) from wrk with 2 threads, 16 connections."""
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", url]
    if header:
        command[1:1] = ["-H", header]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, p50, p99, int(errors.group(1)) if errors else 0


def etag_of(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.headers["ETag"])


def first_request_ms(url: str) -> float:
    started = time.perf_counter()
    urllib.request.urlopen(url, timeout=30).read()
    return (time.perf_counter() - started) * 1000


def render_ms(database: str, paths: tuple[str, ...], repeats: int = 9) -> dict[str, float]:
    """Median ms to render each path uncached in a warm process (the app in this process,
    its render cache emptied before each request): what a page costs after every store
    change, without the first request's one-time template and statement compilation.
    """
    from aggregator.web import create_app

    app = create_app({"DATABASE_URL": database, "SITE_TITLE": "Bench"})
    client = app.test_client()
    found = {}
    for path in paths:
        client.get(path)
        times = []
        for _ in range(repeats):
            app.extensions["response_cache"]._items.clear()
            started = time.perf_counter()
            assert client.get(path, buffered=True).status_code == 200
            times.append((time.perf_counter() - started) * 1000)
        found[path] = sorted(times)[repeats // 2]
    app.extensions["store"].close()
    return found


def _rounded(times: dict[str, float]) -> dict[str, float]:
    return {path: round(ms, 1) for path, ms in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--stories", type=int, default=5_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (apt-get install wrk)")
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    database = f"sqlite:///{folder}/aggregator.db"
    started = time.perf_counter()
    story = build_store(database, args.entries, args.stories)
    took = time.perf_counter() - started
    print(f"store: {args.entries} entries, {args.stories} stories in {took:.1f}s")
    paths = ("/", "/?tag=t1", "/feed.atom", f"/stories/{story}/feed.atom")
    warm = render_ms(database, paths)
    print("uncached render, warm process (median of 9, ms):", _rounded(warm))
    rows: list[tuple[str, float, str, str, int]] = []
    env = {"AGGREGATOR_DATABASE_URL": database, "AGGREGATOR_CONFIG": str(folder / "none.toml"),
           "AGGREGATOR_BASE_URL": "http://127.0.0.1:8080/"}  # fmt: skip
    (folder / "none.toml").write_text("[settings]\n", encoding="utf-8")
    with gunicorn("aggregator.web:create_app()", env, folder) as base:
        cold = {
            path: first_request_ms(base + path)
            for path in ("/", "/feed.atom", f"/stories/{story}/feed.atom")
        }
        print("first request (render, ms):", _rounded(cold))
        tag = etag_of(base + "/feed.atom")
        (folder / "baseline.atom").write_bytes(urllib.request.urlopen(base + "/feed.atom").read())
        for name, path, header in (
            ("/", "/", None),
            ("/feed.atom 200", "/feed.atom", None),
            ("/feed.atom 304", "/feed.atom", f"If-None-Match: {tag}"),
            ("/stories/<id>/feed.atom", f"/stories/{story}/feed.atom", None),
        ):
            rows.append((name, *wrk(base + path, args.seconds, header)))
    (folder / "baseline_app.py").write_text(BASELINE_APP, encoding="utf-8")
    with gunicorn("baseline_app:app", {}, folder) as base:
        baseline_tag = etag_of(base)
        rows.append(("reference: prebuilt Atom 200", *wrk(base + "/", args.seconds)))
        rows.append(
            (
                "reference: prebuilt Atom 304",
                *wrk(base + "/", args.seconds, f"If-None-Match: {baseline_tag}"),
            )
        )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"\nmachine: {os.cpu_count()} CPUs, {cpu}; Python {platform.python_version()}")
    print(f"wrk -t2 -c16 -d{args.seconds}s on loopback; gunicorn -w 2 (sync workers)\n")
    print("| request | requests/s | p50 | p99 | errors |")
    print("|---|---:|---:|---:|---:|")
    for name, rate, p50, p99, errors in rows:
        print(f"| {name} | {rate:,.0f} | {p50} | {p99} | {errors} |")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
