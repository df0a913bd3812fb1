"""Tests of aggregator.parsepool: a child process parses exactly as `parse_feed` does."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.exceptions import ParseError
from aggregator.parse import parse_feed
from aggregator.parsepool import ParsePool

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


def test_small_documents_are_parsed_inline() -> None:
    data = (DATA / "world.rss").read_bytes()
    before = set(multiprocessing.active_children())
    with ParsePool(workers=1, inline_max_bytes=len(data)) as pool:
        assert pool.parse(data, FEED_URL, None, FETCHED) == _expected(data)
        assert set(multiprocessing.active_children()) == before  # no child was needed


def test_close_stops_every_child_and_refuses_more_work() -> None:
    before = set(multiprocessing.active_children())
    pool = ParsePool(workers=2, inline_max_bytes=0).start()
    children = set(multiprocessing.active_children()) - before
    assert len(children) == 2
    pool.close()
    assert all(not child.is_alive() for child in children)
    assert all(child.exitcode == 0 for child in children)
    with pytest.raises(RuntimeError, match="closed"):
        pool.parse(b"<rss/>", FEED_URL, None, FETCHED)
    pool.close()  # closing twice is harmless
