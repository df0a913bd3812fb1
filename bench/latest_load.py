"""R20: the `/` page under load, with and without a writer committing to the same SQLite.

The app runs as in production (gunicorn -w 2, `aggregator.web:create_app()`) on a SQLite
file prefilled with --prefill entries. wrk (8 connections, 2 threads) loads `/` for
--duration seconds twice: alone, then while a writer process commits --batch-entry
batches every --interval seconds through `Store.save_update` (as the worker does).
Printed: requests/s, p50/p95/p99, errors (socket errors and non-2xx), "database is
locked" seen in the app's or the writer's output, and the p95 ratio. Criterion (R20):
0 errors, p95 with the writer <= 1.5x p95 without, no "database is locked".

With --rounds N the two phases alternate N times (--duration / N seconds each, a fresh
writer each time), so a change in the machine's other load hits both phases alike; each
round's ratio is printed and the verdict uses the median round. The load average
(1 min) is printed before and after each phase: the machine may be shared.

Run: python bench/latest_load.py [--duration 60] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import WORDS, machine  # noqa: E402

WRK = "/usr/bin/wrk"
LOCKED = "database is locked"
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %f, "p50": %f, "p95": %f, "p99": %f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""
FEEDS = 50


# --- the writer (a subprocess) --------------------------------------------------------------


def _entries(start: int, count: int, now: datetime) -> tuple[Any, ...]:
    from aggregator.models import EntryData

    return tuple(
        EntryData(
            key=f"w-{i}",
            title=" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(8)).capitalize(),
            link=f"https://news.example.org/w/{i}",
            published_at=now - timedelta(seconds=i % 3600),
            updated_at=now,
            summary=" ".join(WORDS[(i + k) % len(WORDS)] for k in range(40)),
            content_html="<p>" + " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(120)),
            content_hash=f"h-{i}",
        )
        for i in range(start, start + count)
    )


def run_writer(args: argparse.Namespace) -> None:
    """Commit a batch of new entries every `interval` s until SIGTERM; print a summary."""
    from aggregator.exceptions import StoreError
    from aggregator.scheduler import lower_priority
    from aggregator.store import FeedUpdate, Store

    lower_priority(args.writer_nice)  # what `aggregator worker` does at start
    store = Store(args.database_url)
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    commits = errors = locked = 0
    slowest = 0.0
    next_key = 10_000_000
    while not stop:
        started = time.perf_counter()
        now = datetime.now(UTC)
        try:
            (feed,) = store.claim_due_feeds("bench-writer", now, timedelta(0), 1, force=True)
            state = FeedUpdate(last_fetch_at=now, last_status="ok", last_success_at=now)
            store.save_update(feed.id, "bench-writer", state, _entries(next_key, args.batch, now))
            commits += 1
            next_key += args.batch
        except StoreError as exc:
            errors += 1
            locked += LOCKED in str(exc)
            print(f"writer error: {exc}", file=sys.stderr, flush=True)
        elapsed = time.perf_counter() - started
        slowest = max(slowest, elapsed)
        time.sleep(max(0.0, args.interval - elapsed))
    summary = {"commits": commits, "errors": errors, "locked": locked, "slowest_s": slowest}
    print("RESULT " + json.dumps(summary), flush=True)


# --- set-up -------------------------------------------------------------------------------


def _prefill(database_url: str, entries: int) -> None:
    from aggregator.models import SourceConfig
    from aggregator.store import FeedUpdate, Store

    store = Store(database_url)
    store.upgrade()
    now = datetime.now(UTC)
    urls = [f"https://news{n}.example.org/feed.xml" for n in range(FEEDS)]
    store.sync_sources([SourceConfig(url=u, tags=("world",)) for u in urls], now)
    per_feed = entries // FEEDS
    for n, feed in enumerate(store.claim_due_feeds("prefill", now, timedelta(hours=1), FEEDS)):
        state = FeedUpdate(last_fetch_at=now, last_status="ok", last_success_at=now)
        store.save_update(feed.id, "prefill", state, _entries(n * per_feed, per_feed, now), now)
    store.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(folder: Path, database_url: str) -> Path:
    path = folder / "aggregator.toml"
    path.write_text(
        f'[settings]\ndatabase_url = "{database_url}"\nsite_title = "Load"\n', encoding="utf-8"
    )
    return path


def _start_app(config: Path, port: int, log: Path, overrides: str) -> subprocess.Popen[bytes]:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    env = {**os.environ, "AGGREGATOR_CONFIG": str(config)}
    factory = f"aggregator.web:create_app({overrides})"
    command = [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", factory]
    with log.open("wb") as out:
        app = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                if response.status == 200:
                    return app
        except OSError:
            time.sleep(0.2)
    app.terminate()
    raise RuntimeError(f"the app did not start:\n{log.read_text()[-3000:]}")


def _wrk(port: int, duration: int, script: Path) -> dict[str, Any]:
    command = [WRK, "-t2", "-c8", f"-d{duration}s", "--timeout", "10s", "-s", str(script)]
    load_before = os.getloadavg()[0]
    done = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["rps"] = result["requests"] / result["seconds"]
    result["load"] = (load_before, os.getloadavg()[0])
    return result


# --- the run --------------------------------------------------------------------------------


def _phase(name: str, result: dict[str, Any]) -> str:
    load = f"load {result['load'][0]:.1f}->{result['load'][1]:.1f}"
    return (
        f"{name:<12} {load}  {result['rps']:7.1f} req/s  p50 {result['p50']:6.1f} ms  "
        f"p95 {result['p95']:6.1f} ms  p99 {result['p99']:6.1f} ms  errors {result['errors']} "
        f"(non-2xx {result['status']}, timeouts {result['timeout']})"
    )


def _stop_writer(writer: subprocess.Popen[str]) -> dict[str, Any]:
    writer.send_signal(signal.SIGTERM)
    out, err = writer.communicate(timeout=30)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    summary: dict[str, Any] = json.loads(line[len("RESULT ") :])
    summary["stderr"] = err
    return summary


def run(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    seconds = max(1, args.duration // args.rounds)
    rounds: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        database_url = f"sqlite:///{folder}/load.db"
        _prefill(database_url, args.prefill)
        script = folder / "report.lua"
        script.write_text(WRK_SCRIPT, encoding="utf-8")
        port, log = _free_port(), folder / "gunicorn.log"
        app = _start_app(_config(folder, database_url), port, log, args.app_config)
        try:
            for _ in range(args.rounds):
                alone = _wrk(port, seconds, script)
                command = [sys.executable, __file__, "writer", "--database-url", database_url]
                command += ["--batch", str(args.batch), "--interval", str(args.interval)]
                command += ["--writer-nice", str(args.writer_nice)]
                writer = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                time.sleep(1)
                loaded = _wrk(port, seconds, script)
                rounds.append((alone, loaded, _stop_writer(writer)))
        finally:
            app.terminate()
            app.wait(timeout=30)
        app_log = log.read_text(errors="replace")
    _report(args, seconds, rounds, app_log)


def _report(
    args: argparse.Namespace,
    seconds: int,
    rounds: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]],
    app_log: str,
) -> None:
    print(
        f"/ with {args.prefill} entries, gunicorn -w 2, wrk -t2 -c8 -d{seconds}s per phase, "
        f"{args.rounds} round(s); writer: {args.batch}-entry batches every "
        f"{args.interval * 1000:.0f} ms"
    )
    ratios = []
    errors = locked = 0
    for number, (alone, loaded, written) in enumerate(rounds, 1):
        if args.rounds > 1:
            print(f"round {number}")
        print(_phase("no writer", alone))
        print(_phase("with writer", loaded))
        print(
            f"writer: {written['commits']} commits ({written['commits'] * args.batch} entries), "
            f"{written['errors']} errors, slowest commit {written['slowest_s'] * 1000:.0f} ms"
        )
        ratios.append(loaded["p95"] / alone["p95"])
        if args.rounds > 1:
            print(f"p95 ratio: {ratios[-1]:.2f}x")
        errors += alone["errors"] + loaded["errors"]
        locked += written["stderr"].count(LOCKED)
    locked += app_log.count(LOCKED)
    app_errors = app_log.count("Traceback")
    ratio = statistics.median(ratios)
    print(f"'{LOCKED}': {locked}; tracebacks in the app log: {app_errors}")
    which = "median round, " if args.rounds > 1 else ""
    print(f"p95 ratio with/without writer ({which}criterion <= 1.5x): {ratio:.2f}x")
    passed = ratio <= 1.5 and not (errors or locked or app_errors)
    print("R20:", "PASS" if passed else "FAIL")


def main() -> None:
    from aggregator.config import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "writer"])
    parser.add_argument("--duration", type=int, default=60, help="seconds per phase")
    parser.add_argument("--prefill", type=int, default=20_000, help="entries before the run")
    parser.add_argument("--batch", type=int, default=200, help="entries per writer commit")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between commits")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the phases N times")
    parser.add_argument(
        "--app-config",
        default="",
        help="create_app overrides as a Python dict literal, e.g. \"{'VERSION_TTL': 3600}\" "
        "(no re-render while the writer runs: what the writer costs by itself)",
    )
    parser.add_argument("--database-url", help="writer: the store")
    parser.add_argument(
        "--writer-nice",
        type=int,
        default=Settings().worker_nice,
        help="the writer lowers its priority by this, as `aggregator worker` does with the "
        "worker_nice setting (default: that setting's default; 0: as before)",
    )
    args = parser.parse_args()
    run_writer(args) if args.command == "writer" else run(args)


if __name__ == "__main__":
    main()
