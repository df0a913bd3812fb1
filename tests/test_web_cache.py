"""The render cache while the store changes: the previous page is sent for a bounded
time while one request renders the new one, validators always describe the bytes sent,
and one rendering per page runs at a time.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from aggregator.store import Store
from aggregator.web.cache import Rendered, ResponseCache
from tests.test_web import NOW, Filled, entry, fill_store, save_entries


def _get(client: FlaskClient, path: str, **headers: str) -> TestResponse:
    """GET as a WSGI server does it: the whole body sent, then the response closed."""
    return client.get(path, headers=headers, buffered=True)


def _body(response: TestResponse) -> bytes:
    data = response.data
    return gzip.decompress(data) if response.headers.get("Content-Encoding") == "gzip" else data


def _check_validators(response: TestResponse) -> None:
    """The ETag names exactly the bytes sent (the gzip variant with its suffix)."""
    digest = hashlib.sha256(_body(response)).hexdigest()[:32]
    suffix = "-gzip" if response.headers.get("Content-Encoding") == "gzip" else ""
    assert response.headers["ETag"] == f'"{digest}{suffix}"'


def _add_fresh_entry(store: Store, filled: Filled, minutes: int = 1) -> None:
    later = NOW + timedelta(minutes=minutes)
    save_entries(store, filled.feed_ids[0], [entry("alpha-new", "Fresh news", 0)], now=later)


def test_a_changed_page_is_sent_once_as_it_was_then_rendered_again(
    store: Store, make_app: Callable[..., Flask]
) -> None:
    filled = fill_store(store)
    app = make_app(VERSION_TTL=0, STALE_SECONDS=60)
    client, cache = app.test_client(), app.extensions["response_cache"]
    for path in ("/", "/feed.atom"):
        first = _get(client, path)
        assert _get(client, path).data == first.data  # now answered by FastPath
    old = {path: _get(client, path) for path in ("/", "/feed.atom")}
    _add_fresh_entry(store, filled)

    for path in ("/", "/feed.atom"):
        stale = _get(client, path)  # the page as it was; rendered again once it is sent
        assert stale.status_code == 200 and stale.data == old[path].data
        assert b"Fresh news" not in stale.data
        _check_validators(stale)
        fresh = _get(client, path)
        assert fresh.status_code == 200 and b"Fresh news" in fresh.data
        _check_validators(fresh)
    assert cache.stale == 2


def test_a_stale_page_is_never_sent_beyond_the_bound(
    store: Store, make_app: Callable[..., Flask]
) -> None:
    filled = fill_store(store)
    app = make_app(VERSION_TTL=0, STALE_SECONDS=0.3)
    client = app.test_client()
    _get(client, "/")
    _get(client, "/")
    _add_fresh_entry(store, filled)
    time.sleep(0.5)  # longer than the bound since the old page's version was last seen
    response = _get(client, "/")
    assert b"Fresh news" in response.data
    assert app.extensions["response_cache"].stale == 0


def test_304_only_for_the_bytes_being_sent(store: Store, make_app: Callable[..., Flask]) -> None:
    filled = fill_store(store)
    app = make_app(VERSION_TTL=0, STALE_SECONDS=60)
    client: FlaskClient = app.test_client()
    gz = {"Accept-Encoding": "gzip"}
    first = _get(client, "/feed.atom", **gz)
    _get(client, "/feed.atom", **gz)
    _check_validators(first)
    _add_fresh_entry(store, filled)

    # While the old bytes are still what this process sends, they are what a 304 confirms.
    during = _get(client, "/feed.atom", **gz, **{"If-None-Match": first.headers["ETag"]})
    assert during.status_code == 304 and during.headers["ETag"] == first.headers["ETag"]
    # Once rendered again, the old ETag gets the new bytes, under their own ETag.
    after = _get(client, "/feed.atom", **gz, **{"If-None-Match": first.headers["ETag"]})
    assert after.status_code == 200 and b"Fresh news" in _body(after)
    _check_validators(after)
    assert after.headers["ETag"] != first.headers["ETag"]
    plain = _get(client, "/feed.atom", **{"If-None-Match": after.headers["ETag"]})
    assert plain.status_code == 304  # the same bytes, not compressed
    again = _get(client, "/feed.atom", **{"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200 and _body(again) == _body(after)


def _rendered(text: str) -> Rendered:
    return Rendered(text.encode() * 100, "text/plain", datetime.now(UTC))


def test_one_rendering_per_page_at_a_time() -> None:
    cache = ResponseCache(stale_seconds=60)
    cache.version(lambda: 1, ttl=0)
    cache.get_or_render("page", 1, lambda: _rendered("one"))
    cache.version(lambda: 2, ttl=0)  # the store changed
    started, finish = threading.Event(), threading.Event()
    renders: list[str] = []

    def slow() -> Rendered:
        renders.append("two")
        started.set()
        finish.wait(10)
        return _rendered("two")

    results: dict[str, bytes] = {}
    first = threading.Thread(
        target=lambda: results.update(a=cache.get_or_render("page", 2, slow).body)
    )
    first.start()
    assert started.wait(10)
    # Meanwhile another request for the page gets the previous bytes at once ...
    assert cache.get_or_render("page", 2, slow).body == _rendered("one").body
    # ... and a page with no previous rendering waits for the one being made.
    making, gate = threading.Event(), threading.Event()

    def slow_fresh() -> Rendered:
        making.set()
        gate.wait(10)
        return _rendered("fresh")

    maker = threading.Thread(target=lambda: cache.get_or_render("fresh", 2, slow_fresh))
    maker.start()
    assert making.wait(10)
    waiter = threading.Thread(
        target=lambda: results.update(b=cache.get_or_render("fresh", 2, slow).body)
    )
    waiter.start()
    time.sleep(0.1)
    assert "b" not in results
    gate.set()
    maker.join(10)
    waiter.join(10)
    assert results["b"] == _rendered("fresh").body
    finish.set()
    first.join(10)
    assert results["a"] == _rendered("two").body and renders == ["two"]
    assert cache.get_or_render("page", 2, slow).body == _rendered("two").body


def test_no_previous_page_once_its_version_is_older_than_the_bound() -> None:
    cache = ResponseCache(stale_seconds=0.2)
    cache.version(lambda: 1, ttl=0)
    cache.get_or_render("page", 1, lambda: _rendered("one"))
    time.sleep(0.3)
    cache.version(lambda: 2, ttl=0)
    assert cache.previous("page", 2) is None
    assert cache.get_or_render("page", 2, lambda: _rendered("two")).body == _rendered("two").body


def test_by_default_the_previous_page_covers_the_version_reuse(
    store: Store, make_app: Callable[..., Flask]
) -> None:
    """The store version is asked once per VERSION_TTL, so when a change is seen the
    page's version was last confirmed about VERSION_TTL ago: the default bound (twice
    VERSION_TTL) must still let the previous page be sent while it is rendered again.
    """
    filled = fill_store(store)
    app = make_app(VERSION_TTL=1)
    client = app.test_client()
    _get(client, "/")
    time.sleep(1.05)
    old = _get(client, "/")  # asks the store again: the page's version is seen current
    _add_fresh_entry(store, filled)
    time.sleep(1.05)  # the next request asks the store again and sees the change
    assert _get(client, "/").data == old.data
    assert b"Fresh news" in _get(client, "/").data
    assert app.extensions["response_cache"].stale == 1
