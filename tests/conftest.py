"""Shared fixtures: real SQLite files, a real PostgreSQL schema per test, a real HTTP
server on 127.0.0.1, and config files written to a temporary folder.

PostgreSQL tests skip only when the server is unreachable and
AGGREGATOR_REQUIRE_POSTGRES is not set; `.ci/run` sets it, so in CI they always run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, text

from aggregator.store import Store
from aggregator.web import create_app
from tests.feedserver import FeedServer

DATA = Path(__file__).parent / "data"
POSTGRES_URL = os.environ.get(
    "AGGREGATOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def shared_data() -> Path | None:
    """The folder of ../shared/data, from AGGREGATOR_SHARED_DATA, or None."""
    value = os.environ.get("AGGREGATOR_SHARED_DATA")
    return Path(value) if value else None


def _postgres_available() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as e:  # any failure means "not reachable"
        return str(e).splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_available()
    if problem:
        if os.environ.get("AGGREGATOR_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A database URL whose tables live in a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{postgres_server}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/aggregator.db"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/aggregator.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.upgrade()
    yield store
    store.close()


@pytest.fixture
def feed_dir(tmp_path: Path) -> Path:
    """A folder served by `feed_server`, holding copies of tests/data/world.*."""
    folder = tmp_path / "www"
    folder.mkdir()
    for path in DATA.glob("world.*"):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture
def feed_server(feed_dir: Path) -> Iterator[FeedServer]:
    with FeedServer(root=feed_dir) as server:
        yield server


WORLD_NEWEST = datetime(2026, 11, 24, 12, tzinfo=UTC)
"""The newest date in tests/data/world.*."""
_ISO_DATE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)")
_RFC822_DATE = re.compile(
    rb"[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d (?:GMT|[+-]\d{4})"
)


def moved_dates(data: bytes, delta: timedelta) -> bytes:
    """A feed document with every ISO 8601 and RFC 822 date moved by `delta`, each in
    its own format and zone."""

    def iso(match: re.Match[bytes]) -> bytes:
        moved = datetime.fromisoformat(match[0].decode()) + delta
        return moved.isoformat().replace("+00:00", "Z").encode()

    def rfc822(match: re.Match[bytes]) -> bytes:
        moved = parsedate_to_datetime(match[0].decode()) + delta
        return format_datetime(moved, usegmt=match[0].endswith(b"GMT")).encode()

    return _RFC822_DATE.sub(rfc822, _ISO_DATE.sub(iso, data))


@pytest.fixture
def recent_feed_server(tmp_path: Path) -> Iterator[FeedServer]:
    """Serves tests/data/world.* with their dates moved so that the newest is an hour
    old: news as a worker sees it (grouping leaves out entries already older than its
    window when first seen)."""
    folder = tmp_path / "recent"
    folder.mkdir()
    delta = datetime.now(UTC) - timedelta(hours=1) - WORLD_NEWEST
    for path in DATA.glob("world.*"):
        (folder / path.name).write_bytes(moved_dates(path.read_bytes(), delta))
    with FeedServer(root=folder) as server:
        yield server


@pytest.fixture
def make_app(store: Store) -> Iterator[Callable[..., Flask]]:
    """Build apps on the test store; their engines are closed after the test."""
    apps: list[Flask] = []

    def make(**config: str) -> Flask:
        app = create_app({"DATABASE_URL": store.database_url, "SITE_TITLE": "Test", **config})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["store"].close()


def write_config(path: Path, database_url: str, feed_urls: list[str], extra: str = "") -> Path:
    """Write a config file that allows fetching from 127.0.0.1 only.

    `extra` holds more `[settings]` lines; a key given there replaces the default here.
    """
    defaults = {
        "site_title": '"Test Aggregator"',
        "base_url": '"http://127.0.0.1:8080/"',
        "database_url": f'"{database_url}"',
        "allowed_networks": '["127.0.0.1/32"]',
        "request_timeout": '"5s"',
        "tick_interval": '"1s"',
    }
    overridden = {line.split("=", 1)[0].strip() for line in extra.splitlines() if "=" in line}
    lines = ["[settings]"]
    lines += [f"{key} = {value}" for key, value in defaults.items() if key not in overridden]
    lines.append(extra)
    for url in feed_urls:
        lines += ["", "[[feeds]]", f'url = "{url}"', 'tags = ["world"]']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def slow_feeds(server: FeedServer, count: int, delay: float = 1.0) -> list[str]:
    """URLs of `count` copies of world.rss that `server` answers after `delay` seconds:
    polled two at a time, a poll long enough to be interrupted."""
    body = (DATA / "world.rss").read_bytes()
    for n in range(count):
        headers = {"Content-Type": "application/rss+xml"}
        server.route(f"/slow{n}.rss", body=body, delay=delay, headers=headers)
    return [server.url(f"slow{n}.rss") for n in range(count)]


def wait_until(condition: Callable[[], object], seconds: float = 30.0) -> None:
    """Wait until `condition()` holds; fail when `seconds` run out."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def wait_while_running(
    process: subprocess.Popen[bytes], condition: Callable[[], object], timeout: float = 60.0
) -> None:
    """Wait until `condition()` holds; fail if `process` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the process exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def killed_on_exit(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """`process`, killed when the block ends with it still running (a failed test)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
