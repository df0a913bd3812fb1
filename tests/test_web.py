"""The web app over a real store: pages, merged feeds, caching, health and headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import feedparser
import pytest
from flask import Flask
from flask.testing import FlaskClient

from aggregator.models import EntryData, SourceConfig
from aggregator.store import FeedUpdate, Store
from aggregator.web import CONTENT_SECURITY_POLICY

NOW = datetime.now(UTC).replace(microsecond=0)
XSS_TITLE = '<script>alert("x")</script> & \'quotes\''


def _fill(store: Store, count: int) -> None:
    store.sync_sources([SourceConfig(url="https://a.example/feed", title="Feed <A>", tags=("world",))], NOW)
    (feed,) = store.claim_due_feeds("w", NOW, timedelta(minutes=5), 10)
    items = [
        EntryData(
            key=f"k{i}",
            title=XSS_TITLE if i == 0 else f"Headline number {i}",
            link=f"https://a.example/{i}",
            published_at=NOW - timedelta(minutes=i),
            updated_at=None,
            summary=f"Summary {i}",
            content_hash=str(i),
        )
        for i in range(count)
    ]
    store.save_update(feed.id, "w", FeedUpdate(last_fetch_at=NOW), items)


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


def test_index_lists_entries_with_pagination_and_headers(store: Store, client: FlaskClient) -> None:
    _fill(store, 40)
    first = client.get("/")
    html = first.get_data(as_text=True)
    assert first.status_code == 200
    assert first.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert 'href="https://a.example/1"' in html and "Headline number 1<" in html
    assert "Feed &lt;A&gt;" in html
    assert 'rel="next" href="/?page=2"' in html
    assert 'type="application/atom+xml"' in html
    second = client.get("/?page=2").get_data(as_text=True)
    assert "Headline number 39" in second and "Headline number 1<" not in second


def test_titles_are_escaped_in_pages_and_feeds(store: Store, client: FlaskClient) -> None:
    _fill(store, 1)
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;quotes&#39;" in html
    for path in ("/feed.atom", "/feed.rss"):
        parsed = feedparser.parse(client.get(path).data)
        assert parsed.bozo == 0
        assert parsed.entries[0].title == XSS_TITLE


def test_feeds_answer_304_to_their_etag(store: Store, client: FlaskClient) -> None:
    _fill(store, 3)
    first = client.get("/feed.atom")
    assert first.headers["ETag"] and "max-age" in first.headers["Cache-Control"]
    again = client.get("/feed.atom", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    rss = client.get("/feed.rss", headers={"If-None-Match": first.headers["ETag"]})
    assert rss.status_code == 200  # each format has its own validator


def test_feed_self_link_uses_base_url(store: Store, make_app: Callable[..., Flask]) -> None:
    _fill(store, 1)
    app = make_app(BASE_URL="https://news.example.com/")
    parsed = feedparser.parse(app.test_client().get("/feed.atom").data)
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links["self"] == "https://news.example.com/feed.atom"
    assert links["alternate"] == "https://news.example.com/"


def test_healthz_follows_the_worker_heartbeat(store: Store, client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 503
    store.record_tick("w", datetime.now(UTC), 30)
    ok = client.get("/healthz")
    assert ok.status_code == 200 and ok.json["status"] == "ok"
    store.record_tick("w", datetime.now(UTC) - timedelta(seconds=91), 30)
    assert client.get("/healthz").status_code == 503


def test_bad_page_is_404(store: Store, client: FlaskClient) -> None:
    assert client.get("/?page=0").status_code == 404
