"""Tests of aggregator.parsepool: a child process parses exactly as `parse_feed` does."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.exceptions import ParseError
from aggregator.parse import parse_feed
from aggregator.parsepool import ParsePool, _frame, _read_frame
from tests.conftest import wait_until

DATA = Path(__file__).parent / "data"
FETCHED = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
FEED_URL = "https://feeds.example.org/feed"
DOCUMENTS = sorted([*DATA.glob("*.*"), *(DATA / "parse").glob("*")])


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    # inline_max_bytes=0: every document goes through a child, however small.
    with ParsePool(workers=2, inline_max_bytes=0) as pool:
        yield pool


def _expected(data: bytes) -> object:
    try:
        return parse_feed(data, url=FEED_URL, fetched_at=FETCHED)
    except ParseError as exc:
        return ("ParseError", exc.url, exc.message)


def _pooled(pool: ParsePool, data: bytes) -> object:
    try:
        return pool.parse(data, FEED_URL, None, FETCHED)
    except ParseError as exc:
        return ("ParseError", exc.url, exc.message)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_same_result_as_parse_feed(pool: ParsePool, path: Path) -> None:
    data = path.read_bytes()
    assert _pooled(pool, data) == _expected(data)


def test_parse_error_in_child_surfaces_as_parse_error(pool: ParsePool) -> None:
    with pytest.raises(ParseError) as raised:
        pool.parse(b"<html><body>not a feed</body></html>", FEED_URL, "text/html", FETCHED)
    assert raised.value.url == FEED_URL
    assert raised.value.message.startswith("parse: not a feed")


def test_refused_document_surfaces_as_parse_error(pool: ParsePool) -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rss>&a;</rss>'
    with pytest.raises(ParseError, match="declares entities"):
        pool.parse(bomb, FEED_URL, None, FETCHED)


def test_content_type_and_max_entries_reach_the_child(pool: ParsePool) -> None:
    data = (DATA / "parse" / "jsonfeed11.json").read_bytes()
    expected = parse_feed(
        data, url=FEED_URL, content_type="application/feed+json", fetched_at=FETCHED, max_entries=1
    )
    assert pool.parse(data, FEED_URL, "application/feed+json", FETCHED, max_entries=1) == expected


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _parse_in_thread(pool: ParsePool, data: bytes) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_pooled(pool, data)))
    thread.start()
    return thread, outcome


BIG = (DATA / "world.rss").read_bytes()


def test_small_documents_are_parsed_inline() -> None:
    with ParsePool(workers=1, inline_max_bytes=len(BIG)) as pool:
        assert pool.parse(BIG, FEED_URL, None, FETCHED) == _expected(BIG)
        assert pool.pids == ()  # no child was needed


def test_close_stops_every_child_and_refuses_more_work() -> None:
    pool = ParsePool(workers=2, inline_max_bytes=0).start()
    pids = pool.pids
    assert len(pids) == 2
    pool.close()
    assert pool.exit_codes == [0, 0]  # they exited on their own when their stdin closed
    assert all(_gone(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.parse(b"<rss/>", FEED_URL, None, FETCHED)
    pool.close()  # closing twice is harmless


def test_a_child_killed_while_parsing_fails_that_document_only() -> None:
    with ParsePool(workers=1, inline_max_bytes=0).start() as pool:
        (pid,) = pool.pids
        os.kill(pid, signal.SIGSTOP)  # the document will wait in the pipe
        thread, outcome = _parse_in_thread(pool, BIG)
        wait_until(lambda: pool.busy_pids == (pid,))
        os.kill(pid, signal.SIGKILL)
        thread.join(30)
        assert outcome == [
            (
                "ParseError",
                FEED_URL,
                f"parse: the parser process crashed "
                f"(signal {signal.SIGKILL.value}) while parsing this document",
            )
        ]
        # A new child takes the next document.
        assert pool.parse(BIG, FEED_URL, None, FETCHED) == _expected(BIG)
        assert pool.pids != (pid,) and len(pool.pids) == 1


def test_a_stuck_child_is_killed_after_the_timeout() -> None:
    with ParsePool(workers=1, inline_max_bytes=0, timeout=0.5).start() as pool:
        (pid,) = pool.pids
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        assert _pooled(pool, BIG) == (
            "ParseError",
            FEED_URL,
            "parse: gave up after 0.5 s (the parser process was stopped)",
        )
        assert time.monotonic() - started < 10
        assert _gone(pid)
        assert pool.parse(BIG, FEED_URL, None, FETCHED) == _expected(BIG)


def test_a_child_that_died_between_documents_is_replaced_silently() -> None:
    with ParsePool(workers=1, inline_max_bytes=0).start() as pool:
        (pid,) = pool.pids
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: pool.pids == ())
        assert pool.parse(BIG, FEED_URL, None, FETCHED) == _expected(BIG)


def test_messages_are_plain_json_and_raw_bytes() -> None:
    """What crosses the pipes (RELIABILITY S10: no pickle): JSON values, which can hold
    lone surrogates, and the feed's bytes untouched."""
    body = b"\x00\xff<rss/>"
    message = _frame(["k\udc80", None, 3, ["a"]], body)
    assert _read_frame(io.BytesIO(message)) == (["k\udc80", None, 3, ["a"]], body)
    assert _read_frame(io.BytesIO(message[:-1])) is None  # cut short: the child died


@pytest.mark.parametrize("when", ["starting", "answering"])
def test_a_child_whose_parent_is_gone_exits_quietly(when: str) -> None:
    """A worker killed with SIGKILL leaves its parser processes a closed pipe, while they
    start or while they parse: each exits when its answer fails, without a
    BrokenPipeError traceback in the log."""
    import subprocess
    import sys

    from aggregator.parsepool import _CHILD_CODE, _frame

    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_CODE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    if when == "answering":
        child.stdout.read(1)  # the child is ready (its ready message has begun)
    child.stdout.close()  # the parent is gone: nobody reads the answers
    document = (Path(__file__).parent / "data" / "world.rss").read_bytes()
    request = ["https://example.org/feed", None, "2026-12-08T00:00:00+00:00", 500]
    child.stdin.write(_frame(request, document))
    child.stdin.flush()
    assert child.wait(timeout=30) == 0
    errors = child.stderr.read().decode()
    child.stdin.close()
    child.stderr.close()
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
