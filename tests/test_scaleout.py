"""Several real worker processes sharing one store (RELIABILITY.md R14-R16, R19).

R14: 6 workers x 2,000 due feeds -> exactly 2,000 fetches (PostgreSQL and SQLite).
R15: kill -9 of a worker holding leases -> its feeds are completed by another worker.
R16: a stale worker (paused past its lease) completes -> its write changes nothing.
R19: gunicorn -w 4 -> no scheduler runs in any web worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.store import Store
from tests.conftest import write_config
from tests.feedserver import FeedServer, Response

pytestmark = pytest.mark.slow

RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>Feed {n}</title>
<link>https://example.org/{n}</link>{items}</channel></rss>"""
ITEM = """<item><title>{title}</title><link>https://example.org/{n}/{i}</link>
<guid isPermaLink="false">{n}-{i}</guid>
<pubDate>Mon, 23 Nov 2026 08:{i:02d}:00 GMT</pubDate></item>"""


def _rss(n: int, titles: list[str]) -> bytes:
    items = "".join(ITEM.format(title=t, n=n, i=i) for i, t in enumerate(titles))
    return RSS.format(n=n, items=items).encode()


def _aggregator() -> str:
    return shutil.which("aggregator") or str(Path(sys.executable).with_name("aggregator"))


def _spawn(config: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AGGREGATOR_CONFIG": str(config)}
    return subprocess.Popen(
        [_aggregator(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(processes: list[subprocess.Popen[bytes]]) -> str:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    return "".join(p.communicate(timeout=20)[0].decode(errors="replace") for p in processes)


@pytest.fixture
def many_feeds(tmp_path: Path) -> Iterator[tuple[FeedServer, list[str]]]:
    root = tmp_path / "many"
    root.mkdir()
    for n in range(2000):
        (root / f"f{n}.xml").write_bytes(_rss(n, [f"Story {n} a", f"Story {n} b"]))
    with FeedServer(root=root) as server:
        yield server, [server.url(f"f{n}.xml") for n in range(2000)]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_r14_six_workers_fetch_each_due_feed_exactly_once(
    tmp_path: Path, database_url: str, many_feeds: tuple[FeedServer, list[str]]
) -> None:
    server, urls = many_feeds
    config = write_config(tmp_path / "agg.toml", database_url, urls, extra='lease_seconds = "2m"')
    store = Store(database_url)
    store.upgrade()
    workers = [_spawn(config, "worker") for _ in range(6)]
    try:
        _wait(
            lambda: (
                all(f.last_status == "ok" for f in store.get_feeds())
                and len(store.get_feeds()) == 2000
            ),
            180,
            "all 2,000 feeds to be polled",
        )
        time.sleep(2.5)  # two more ticks: nothing may be fetched again
    finally:
        output = _stop(workers)
    paths = Counter(request.path for request in server.requests)
    assert len(paths) == 2000, output[-2000:]
    assert max(paths.values()) == 1, [p for p, c in paths.items() if c > 1][:5]
    assert store.count_entries() == 4000
    store.close()


def test_r15_killed_workers_feeds_are_completed_by_another(
    tmp_path: Path, database_url: str
) -> None:
    slow = threading.Event()
    slow.set()

    def handler(request: object) -> Response:
        if slow.is_set():
            time.sleep(8)
        return Response(200, {"Content-Type": "application/rss+xml"}, _rss(0, ["Hello"]))

    with FeedServer() as server:
        urls = []
        for n in range(20):
            server.route(f"/f{n}", handler=handler)
            urls.append(server.url(f"f{n}"))
        config = write_config(
            tmp_path / "agg.toml",
            database_url,
            urls,
            extra='lease_seconds = "3s"\nmax_per_host = 32',
        )
        store = Store(database_url)
        store.upgrade()
        victim = _spawn(config, "worker")
        _wait(
            lambda: len(server.requests) == 20, 30, "the first worker to claim and fetch all feeds"
        )
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        slow.clear()
        killed_at = time.monotonic()
        rescuer = _spawn(config, "worker")
        try:
            _wait(
                lambda: all(f.last_status == "ok" for f in store.get_feeds()), 30, "feeds completed"
            )
            elapsed = time.monotonic() - killed_at
        finally:
            _stop([rescuer])
        assert elapsed < 3 + 1 + 8, elapsed  # lease + one tick, plus process start-up
        assert all(f.entry_count == 1 for f in store.get_feeds())
        store.close()


def test_r16_stale_worker_result_is_discarded(tmp_path: Path, database_url: str) -> None:
    responses = [
        Response(200, {"Content-Type": "application/rss+xml"}, _rss(0, ["Old only"]), delay=4.0),
        Response(200, {"Content-Type": "application/rss+xml"}, _rss(0, ["New only"])),
    ]
    with FeedServer() as server:
        server.route("/feed", handler=responses)
        config = write_config(
            tmp_path / "agg.toml",
            database_url,
            [server.url("feed")],
            extra='lease_seconds = "1s"\nrequest_timeout = "20s"',
        )
        store = Store(database_url)
        store.upgrade()
        stale = _spawn(config, "poll")
        _wait(lambda: len(server.requests) == 1, 20, "the stale worker's request")
        stale.send_signal(signal.SIGSTOP)
        time.sleep(1.5)  # its lease expires
        fresh = subprocess.run(
            [_aggregator(), "--config", str(config), "poll"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "1 ok" in fresh.stdout, fresh.stdout + fresh.stderr
        stale.send_signal(signal.SIGCONT)
        output = stale.communicate(timeout=30)[0].decode()
        assert "lease" in output and "lost" in output, output
        titles = [entry.title for entry in store.get_latest()]
        assert titles == ["New only"]
        store.close()


def test_r19_gunicorn_web_workers_run_no_scheduler(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path / "agg.toml", sqlite_url, [])
    Store(sqlite_url).upgrade()
    env = {**os.environ, "AGGREGATOR_CONFIG": str(config)}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    master = subprocess.Popen(
        [gunicorn, "-w", "4", "-b", "127.0.0.1:0", "aggregator.web:create_app()"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(lambda: len(_children(master.pid)) == 4, 30, "4 gunicorn workers")
        time.sleep(2)
        pids = [master.pid, *_children(master.pid)]
        threads = {pid: _thread_names(pid) for pid in pids}
    finally:
        _stop([master])
    assert all("APScheduler" not in names for names in threads.values()), threads
    assert Store(sqlite_url).last_tick() is None  # no tick ever ran


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _thread_names(pid: int) -> list[str]:
    return [(task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()]
