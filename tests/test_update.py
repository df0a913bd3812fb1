"""End to end: config → poll over real HTTP → store → merged feeds read back, on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import calendar
import html
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import feedparser
import pytest
from flask import Flask

from aggregator import update as update_module
from aggregator.config import load_config
from aggregator.models import PollSummary, UpdateResult
from aggregator.scheduler import poll_options
from aggregator.store import Store
from aggregator.update import Parsers, PollOptions, poll_due
from tests.conftest import DATA, write_config
from tests.feedserver import FeedServer, RecordedRequest, Response

FILES = ["world.rss", "world.atom", "world.rdf"]


def _source_entries(name: str) -> list[tuple[str, str, datetime]]:
    """(title, link, published) of a test feed, as feedparser reads the file itself."""
    parsed = feedparser.parse((DATA / name).read_bytes())
    found = []
    for entry in parsed.entries:
        stamp = entry.get("published_parsed") or entry.get("updated_parsed")
        # Titles are plain text in our output: an HTML title's entities are decoded.
        found.append(
            (
                html.unescape(entry.title),
                entry.link,
                datetime.fromtimestamp(calendar.timegm(stamp), UTC),
            )
        )
    return found


def _setup(tmp_path: Path, store: Store, server: FeedServer, names: list[str]) -> tuple:
    path = write_config(
        tmp_path / "aggregator.toml", store.database_url, [server.url(n) for n in names]
    )
    config = load_config(path)
    store.sync_sources(config.sources, datetime.now(UTC))
    return config, poll_options(config)


def test_poll_stores_entries_and_merged_feeds_round_trip(
    tmp_path: Path, store: Store, feed_server: FeedServer, make_app: Callable[..., Flask]
) -> None:
    config, options = _setup(tmp_path, store, feed_server, FILES)

    summary = poll_due(store, options, owner="test")

    assert summary.count("ok") == 3, summary
    assert summary.new_entries == 7
    expected = {
        (title, link.split("?")[0], published)
        for name in FILES
        for title, link, published in _source_entries(name)
    }
    client = make_app().test_client()
    for path in ("/feed.atom", "/feed.rss"):
        response = client.get(path)
        assert response.status_code == 200
        parsed = feedparser.parse(response.data)
        assert parsed.bozo == 0, parsed.bozo_exception
        got = {
            (
                e.title,
                e.link,
                datetime.fromtimestamp(calendar.timegm(e.published_parsed), UTC),
            )
            for e in parsed.entries
        }
        assert got == expected, path


def test_html_is_sanitised_and_tracking_removed(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    _, options = _setup(tmp_path, store, feed_server, ["world.rss", "world.atom"])
    poll_due(store, options, owner="test")
    entries = {e.title: e for e in store.get_latest()}
    floods = entries["Flooding forces thousands from homes along the Danube"]
    assert floods.link == "https://harbour.example.net/world/danube-floods"
    assert "<script" not in floods.content_html and "record rain" in floods.content_html
    evac = entries["Danube floods: evacuations widen as levees strain"]
    assert evac.link == "https://meridian.example.org/news/danube-evacuations"
    assert "onerror" not in evac.content_html
    assert "https://meridian.example.org/img/levee.jpg" in evac.content_html
    assert entries["Markets & money: bank rate unchanged"].published_at == datetime(
        2026, 11, 23, 10, 0, tzinfo=UTC
    )


def test_second_poll_is_conditional_and_writes_nothing(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    _, options = _setup(tmp_path, store, feed_server, ["world.rss"])
    poll_due(store, options, owner="test")
    first = store.get_latest()
    feed_server.reset()

    later = datetime.now(UTC) + timedelta(days=2)  # everything is due again
    summary = poll_due(store, options, owner="test", now=later)

    assert [r.status for r in summary.results] == ["not_modified"]
    request = feed_server.requests[0]
    assert request.headers["If-None-Match"]
    assert request.headers["If-Modified-Since"]
    assert store.get_latest() == first
    feed = store.get_feeds()[0]
    assert feed.last_status == "not_modified" and feed.next_check_at > later


def test_a_feed_interval_in_the_config_sets_its_own_next_check(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """`interval = "2h"` on one feed: it is checked next two hours after its fetch, the
    other feed after the default half hour (each within the scheduler's +-10 % jitter)."""
    path = write_config(
        tmp_path / "aggregator.toml",
        store.database_url,
        [feed_server.url("world.rss"), feed_server.url("world.atom")],
    )
    listed = f'url = "{feed_server.url("world.rss")}"'
    path.write_text(path.read_text().replace(listed, f'{listed}\ninterval = "2h"'))
    config = load_config(path)
    store.sync_sources(config.sources, datetime.now(UTC))
    options = poll_options(config)

    summary = poll_due(store, options, owner="test")

    assert summary.count("ok") == 2
    waits = {
        f.url.rsplit("/", 1)[-1]: (f.next_check_at - f.last_fetch_at).total_seconds()
        for f in store.get_feeds()
    }
    assert 7200 * 0.9 - 1 <= waits["world.rss"] <= 7200 * 1.1 + 1, waits
    default = options.default_interval
    assert default == 1800
    assert default * 0.9 - 1 <= waits["world.atom"] <= default * 1.1 + 1, waits


def test_a_failed_fetch_keeps_both_validators_for_the_next_request(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """A 500 between two fetches changes nothing in what the next request sends: the
    ETag and the Last-Modified of the document last read, so an unchanged document
    is a 304 again."""
    body = (DATA / "world.rss").read_bytes()
    validators = {"ETag": '"v1"', "Last-Modified": "Tue, 24 Nov 2026 12:00:00 GMT"}
    feed_server.route(
        "/flaky.rss",
        handler=[Response(200, validators, body), Response(500), Response(304, validators)],
    )
    _, options = _setup(tmp_path, store, feed_server, ["flaky.rss"])
    when = datetime.now(UTC)
    statuses = []
    for _ in range(3):
        summary = poll_due(store, options, owner="test", now=when)
        statuses += [r.status for r in summary.results]
        when += timedelta(days=2)  # due again, whatever the backoff

    assert statuses == ["ok", "error", "not_modified"]
    after_error = feed_server.requests[2].headers
    assert after_error.get("If-None-Match") == '"v1"'
    assert after_error.get("If-Modified-Since") == "Tue, 24 Nov 2026 12:00:00 GMT"


def test_a_304_with_a_new_etag_is_stored_and_sent_next_time(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """A server may answer 304 with a new ETag for the same document (a rebuilt cache):
    the next request sends the new one, which is all that server answers 304 to."""
    body = (DATA / "world.rss").read_bytes()
    feed_server.route(
        "/tagged.rss",
        handler=[
            Response(200, {"ETag": '"v1"'}, body),
            Response(304, {"ETag": '"v2"'}),
            Response(304, {"ETag": '"v2"'}),
        ],
    )
    _, options = _setup(tmp_path, store, feed_server, ["tagged.rss"])
    when = datetime.now(UTC)
    for _ in range(3):
        poll_due(store, options, owner="test", now=when)
        when += timedelta(days=2)

    sent = [r.headers.get("If-None-Match") for r in feed_server.requests]
    assert sent == [None, '"v1"', '"v2"']
    (feed,) = store.get_feeds()
    assert (feed.etag, feed.last_status) == ('"v2"', "not_modified")


def test_the_same_body_again_without_validators_is_unchanged_and_not_parsed(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    """A server without ETag or Last-Modified sends the whole document every time: the
    same bytes as last time are recorded as "unchanged", with nothing parsed or saved
    (so the feed's title, taken from the document, stays as it was)."""
    body = (DATA / "world.rss").read_bytes()
    feed_server.route("/plain.rss", body=body, headers={"Content-Type": "application/rss+xml"})
    _, options = _setup(tmp_path, store, feed_server, ["plain.rss"])
    poll_due(store, options, owner="test")
    (before,) = store.get_feeds()
    first = store.get_latest()

    later = datetime.now(UTC) + timedelta(days=2)
    summary = poll_due(store, options, owner="test", now=later)

    (result,) = summary.results
    assert (result.status, result.new_entries, result.changed_entries) == ("unchanged", 0, 0)
    assert "if-none-match" not in feed_server.requests[1].headers
    (feed,) = store.get_feeds()
    assert (feed.last_status, feed.http_status, feed.error_count) == ("unchanged", 200, 0)
    assert feed.body_hash == before.body_hash and feed.next_check_at > later
    assert store.get_latest() == first


def test_changed_file_yields_only_new_entries(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    _, options = _setup(tmp_path, store, feed_server, ["world.rss"])
    poll_due(store, options, owner="test")
    text = (feed_dir / "world.rss").read_text(encoding="utf-8")
    extra = """<item><title>Ceasefire agreed in border dispute</title>
    <link>https://harbour.example.net/world/ceasefire</link><guid isPermaLink="false">ht-1004</guid>
    <pubDate>Tue, 24 Nov 2026 09:00:00 GMT</pubDate></item>
  </channel>"""
    (feed_dir / "world.rss").write_text(text.replace("</channel>", extra), encoding="utf-8")

    summary = poll_due(store, options, owner="test", now=datetime.now(UTC) + timedelta(days=2))

    assert summary.new_entries == 1 and summary.results[0].changed_entries == 0
    titles = [e.title for e in store.get_latest()]
    assert titles.count("Ceasefire agreed in border dispute") == 1 and len(titles) == 4


def test_an_undated_feed_shows_in_its_own_order_newest_first(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    """Entries without dates all take the time they were first seen: the feed's own
    order (newest first, as feeds list) decides among them, at the first poll and when
    later items arrive on top."""

    def document(titles: list[str]) -> str:
        items = "".join(
            f"<item><title>{t}</title><link>https://undated.example/{t}</link></item>"
            for t in titles
        )
        return f'<rss version="2.0"><channel><title>Undated</title>{items}</channel></rss>'

    (feed_dir / "undated.rss").write_text(document(["three", "two", "one"]), encoding="utf-8")
    _, options = _setup(tmp_path, store, feed_server, ["undated.rss"])
    poll_due(store, options, owner="test")
    assert [e.title for e in store.get_latest()] == ["three", "two", "one"]

    (feed_dir / "undated.rss").write_text(
        document(["five", "four", "three", "two", "one"]), encoding="utf-8"
    )
    poll_due(store, options, owner="test", now=datetime.now(UTC) + timedelta(days=2))
    assert [e.title for e in store.get_latest()] == ["five", "four", "three", "two", "one"]


def test_broken_feeds_are_recorded_and_do_not_stop_others(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    feed_server.route("/broken", status=500)
    feed_server.route(
        "/html", body=b"<html><body>Not a feed</body></html>", headers={"Content-Type": "text/html"}
    )
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)
    urls = ["world.rss", "broken", "html", "world.atom"]
    _, options = _setup(tmp_path, store, feed_server, urls)
    # A port nothing listens on: connection refused.
    store.sync_sources(
        [*load_config(tmp_path / "aggregator.toml").sources, *_refused_source(tmp_path, store)],
        datetime.now(UTC),
    )

    summary = poll_due(store, options, owner="test")

    by_url = {r.url.rsplit("/", 1)[-1]: r for r in summary.results}
    assert by_url["world.rss"].status == "ok" and by_url["world.atom"].status == "ok"
    feeds = {f.url.rsplit("/", 1)[-1]: f for f in store.get_feeds()}
    assert feeds["broken"].error_count == 1 and "500" in feeds["broken"].last_error
    assert feeds["html"].error_count == 1 and feeds["html"].last_error.startswith("parse:")
    assert feeds["refused"].error_count == 1 and feeds["refused"].last_error.startswith("fetch:")
    assert feeds["world.rss"].error_count == 0 and feeds["world.rss"].entry_count == 3


def _refused_source(tmp_path: Path, store: Store) -> list:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = write_config(
        tmp_path / "refused.toml", store.database_url, [f"http://127.0.0.1:{port}/refused"]
    )
    return list(load_config(path).sources)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_poll_respects_next_check(tmp_path: Path, store: Store, feed_server: FeedServer) -> None:
    _, options = _setup(tmp_path, store, feed_server, ["world.rss"])
    poll_due(store, options, owner="test")
    feed_server.reset()
    assert poll_due(store, options, owner="test").results == ()
    assert feed_server.requests == []
    forced = poll_due(store, options, owner="test", force=True)
    assert len(forced.results) == 1


def _poll_at(store: Store, options: object, when: datetime) -> list:
    return list(poll_due(store, options, owner="test", now=when).results)  # type: ignore[arg-type]


def test_r4_permanent_redirect_moves_the_feed_and_flags_duplicates(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    feed_server.route_redirect_chain("/old", [301, 308], target="/world.rss")
    feed_server.route_redirect("/temporary", "/world.atom", status=302)
    _, options = _setup(tmp_path, store, feed_server, ["old", "temporary", "world.rss"])

    poll_due(store, options, owner="test")

    feeds = store.get_feeds()
    moved = next(f for f in feeds if f.url == feed_server.url("world.rss") and f.last_error)
    assert "also subscribed" in moved.last_error
    assert any(f.url == feed_server.url("temporary") for f in feeds)
    # The config still names the old URL; a resync must not add the feed again.
    config = load_config(tmp_path / "aggregator.toml")
    store.sync_sources(config.sources, datetime.now(UTC))
    assert len(store.get_feeds()) == 3


def test_listing_a_moved_feed_at_its_new_url_keeps_the_same_feed(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """The worker followed a 301 (the stored URL moved); the operator then writes the
    new URL into the config in place of the old one: it is the same feed, with its
    entries and history, not a second source polling the same document."""
    feed_server.route_redirect("/old", "/world.rss", status=301)
    _, options = _setup(tmp_path, store, feed_server, ["old"])
    poll_due(store, options, owner="test")
    (before,) = store.get_feeds()
    assert before.url == feed_server.url("world.rss") and before.entry_count == 3

    _setup(tmp_path, store, feed_server, ["world.rss"])  # the config edited, and synced

    (after,) = store.get_feeds()
    assert (after.id, after.in_config, after.entry_count) == (before.id, True, 3)
    assert after.config_url == feed_server.url("world.rss")


def test_r5_gone_feed_is_disabled_and_never_requested_again(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    feed_server.route("/gone", status=410)
    _, options = _setup(tmp_path, store, feed_server, ["gone"])
    start = datetime.now(UTC)
    poll_due(store, options, owner="test", now=start)
    (feed,) = store.get_feeds()
    assert feed.disabled_reason and "410" in feed.disabled_reason
    for hour in range(1, 25):  # a simulated day of ticks
        assert _poll_at(store, options, start + timedelta(hours=hour)) == []
    assert len(feed_server.requests) == 1


def test_r2_retry_after_defers_the_next_request(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    feed_server.route("/busy", status=429, headers={"Retry-After": "3600"})
    _, options = _setup(tmp_path, store, feed_server, ["busy"])
    start = datetime.now(UTC)
    poll_due(store, options, owner="test", now=start)
    (feed,) = store.get_feeds()
    assert feed.next_check_at >= start + timedelta(seconds=3600)
    assert _poll_at(store, options, start + timedelta(seconds=3500)) == []
    assert len(feed_server.requests) == 1
    assert feed.error_count == 1 and feed.disabled_reason is None


def test_r2_a_feed_throttled_again_and_again_is_asked_back_after_each_retry_after(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    """Six 429s in a row, each asking to come back in an hour: each next request comes
    an hour later, not after a backoff that doubles on top of it; the first one after
    the throttling ends gets the document. (The polls run on a simulated clock, so the
    server names the time as an HTTP date rather than in seconds from the real one.)"""
    _, options = _setup(tmp_path, store, feed_server, ["busy"])
    when = datetime.now(UTC).replace(microsecond=0)
    for _ in range(6):
        back = format_datetime(when + timedelta(hours=1), usegmt=True)
        feed_server.route("/busy", status=429, headers={"Retry-After": back})
        poll_due(store, options, owner="test", now=when)
        (feed,) = store.get_feeds()
        assert feed.next_check_at == when + timedelta(hours=1)
        when = feed.next_check_at
    assert feed.error_count == 6 and len(feed_server.requests) == 6
    feed_server.clear_routes()
    (feed_dir / "busy").write_bytes((feed_dir / "world.rss").read_bytes())
    poll_due(store, options, owner="test", now=when)
    (feed,) = store.get_feeds()
    assert (feed.last_status, feed.error_count, feed.entry_count) == ("ok", 0, 3)


@pytest.mark.parametrize("worked", [True, False], ids=["worked", "never-worked"])
def test_r6_a_bare_error_after_a_throttled_spell_starts_its_own_backoff(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path, worked: bool
) -> None:
    """A feed (that worked once, or never did) answers 503 with Retry-After every half
    hour for seven hours (14 errors in a row), then bare 500s: the first is retried after
    min_interval and the next after twice that, as after any first errors; counted with
    the 503s, the first would have waited a day (bench/soak.py lost a fast feed's
    entries so)."""
    _, options = _setup(tmp_path, store, feed_server, ["maintained"])
    when = datetime.now(UTC).replace(microsecond=0)
    if worked:
        (feed_dir / "maintained").write_bytes((feed_dir / "world.rss").read_bytes())
        poll_due(store, options, owner="test", now=when)
        (feed,) = store.get_feeds()
        assert feed.last_status == "ok"
        when = feed.next_check_at or when
    for _ in range(14):
        back = format_datetime(when + timedelta(minutes=30), usegmt=True)
        feed_server.route("/maintained", status=503, headers={"Retry-After": back})
        poll_due(store, options, owner="test", now=when)
        (feed,) = store.get_feeds()
        when = feed.next_check_at or when
    assert (feed.error_count, feed.backoff_count) == (14, 0)
    feed_server.route("/maintained", status=500)
    waits = []
    for _ in range(2):
        poll_due(store, options, owner="test", now=when)
        (feed,) = store.get_feeds()
        assert feed.next_check_at is not None
        waits.append((feed.next_check_at - when).total_seconds())
        when = feed.next_check_at
    assert (feed.error_count, feed.backoff_count) == (16, 2)
    base = options.min_interval
    assert base * 0.8 <= waits[0] <= base * 1.2
    assert 2 * base * 0.8 <= waits[1] <= 2 * base * 1.2
    # a success resets both counts
    (feed_dir / "maintained").write_bytes((feed_dir / "world.rss").read_bytes())
    feed_server.clear_routes()
    poll_due(store, options, owner="test", now=when)
    (feed,) = store.get_feeds()
    assert feed.last_status in ("ok", "not_modified")
    assert (feed.error_count, feed.backoff_count) == (0, 0)


def test_r6_errors_back_off_and_success_resets(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    feed_server.route("/flaky", status=500)
    _, options = _setup(tmp_path, store, feed_server, ["flaky"])
    when = datetime.now(UTC)
    delays = []
    for _ in range(4):
        poll_due(store, options, owner="test", now=when)
        (feed,) = store.get_feeds()
        delays.append((feed.next_check_at - when).total_seconds())
        when = feed.next_check_at
    assert feed.error_count == 4 and feed.disabled_reason is None
    assert all(later > earlier * 1.3 for earlier, later in zip(delays, delays[1:], strict=False))
    feed_server.clear_routes()
    (feed_dir / "flaky").write_bytes((feed_dir / "world.rss").read_bytes())
    poll_due(store, options, owner="test", now=when)
    (feed,) = store.get_feeds()
    assert feed.error_count == 0 and feed.last_status == "ok"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_r7_one_failing_feed_in_a_hundred(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    for n in range(99):
        shutil.copy(feed_dir / "world.rss", feed_dir / f"copy{n}.rss")
    feed_server.route("/bad", body=b"<html>nope</html>", headers={"Content-Type": "text/html"})
    names = [f"copy{n}.rss" for n in range(99)] + ["bad"]
    _, options = _setup(tmp_path, store, feed_server, names)

    summary = poll_due(store, options, owner="test")

    assert summary.count("ok") == 99 and summary.count("error") == 1
    broken = [f for f in store.get_feeds() if f.error_count]
    assert [f.url for f in broken] == [feed_server.url("bad")]


def _rss_with_guids(guids_and_links: list[tuple[str, str]]) -> bytes:
    items = "".join(
        f"<item><title>Story {link}</title><link>https://site.example/{link}</link>"
        f'<guid isPermaLink="false">{guid}</guid></item>'
        for guid, link in guids_and_links
    )
    return f'<rss version="2.0"><channel><title>Churn</title>{items}</channel></rss>'.encode()


def test_feed_with_changing_guids_falls_back_to_links(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    (feed_dir / "churn.xml").write_bytes(_rss_with_guids([("g1", "a"), ("g2", "b"), ("g3", "c")]))
    _, options = _setup(tmp_path, store, feed_server, ["churn.xml"])
    poll_due(store, options, owner="test")
    (feed_dir / "churn.xml").write_bytes(
        _rss_with_guids([("x1", "a"), ("x2", "b"), ("x3", "c"), ("x4", "d")])
    )

    summary = poll_due(store, options, owner="test", now=datetime.now(UTC) + timedelta(days=2))

    assert summary.new_entries == 1  # only "d" is new
    (feed,) = store.get_feeds()
    assert feed.id_rule == "link" and "guids change between fetches" in feed.last_error
    assert sorted(e.link for e in store.get_latest()) == [
        f"https://site.example/{x}" for x in "abcd"
    ]
    (feed_dir / "churn.xml").write_bytes(
        _rss_with_guids([("y1", "a"), ("y2", "b"), ("y3", "c"), ("y4", "d")])
    )
    again = poll_due(store, options, owner="test", now=datetime.now(UTC) + timedelta(days=4))
    assert again.new_entries == 0 and store.count_entries() == 4


def test_feed_repeating_one_guid_falls_back_to_links(
    tmp_path: Path, store: Store, feed_server: FeedServer, feed_dir: Path
) -> None:
    same = [("same", "a"), ("same", "b"), ("same", "c")]
    (feed_dir / "same.xml").write_bytes(_rss_with_guids(same))
    _, options = _setup(tmp_path, store, feed_server, ["same.xml"])
    summary = poll_due(store, options, owner="test")
    assert summary.new_entries == 3
    (feed,) = store.get_feeds()
    assert feed.id_rule == "link" and "same guid" in feed.last_error
    (feed_dir / "same.xml").write_bytes(_rss_with_guids([("same", "c"), *same]))
    again = poll_due(store, options, owner="test", now=datetime.now(UTC) + timedelta(days=2))
    assert again.new_entries == 0 and store.count_entries() == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_forced_poll_visits_every_feed_once_across_claim_batches(
    tmp_path: Path,
    store: Store,
    feed_server: FeedServer,
    feed_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aggregator.update

    monkeypatch.setattr(aggregator.update, "CLAIM_BATCH", 2)  # five feeds: three claims
    for n in range(5):
        shutil.copy(feed_dir / "world.rss", feed_dir / f"f{n}.rss")
    _, options = _setup(tmp_path, store, feed_server, [f"f{n}.rss" for n in range(5)])
    poll_due(store, options, owner="test")
    feed_server.reset()

    forced = poll_due(store, options, owner="test", force=True)

    assert sorted(r.url for r in forced.results) == sorted(
        feed_server.url(f"f{n}.rss") for n in range(5)
    )
    assert len(feed_server.requests) == 5


def test_parser_processes_store_what_a_thread_stores(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    _, options = _setup(tmp_path, store, feed_server, FILES)
    parsers = Parsers(2, min_feeds=1, inline_max_bytes=0)  # every document to a child

    summary = poll_due(store, options, owner="test", parsers=parsers)

    assert summary.count("ok") == 3 and summary.new_entries == 7
    pool = parsers.pool
    assert pool is not None and len(pool.pids) >= 1
    titles = {e.title for e in store.get_latest()}
    assert "Flooding forces thousands from homes along the Danube" in titles
    parsers.close()
    assert pool.exit_codes and all(code == 0 for code in pool.exit_codes)


def test_a_feed_whose_parser_process_crashes_is_recorded_and_the_others_are_stored(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    _, options = _setup(tmp_path, store, feed_server, FILES)
    parsers = Parsers(1, min_feeds=1, inline_max_bytes=0)
    pool = parsers.for_batch(1)
    assert pool is not None
    (pid,) = pool.start().pids
    os.kill(pid, signal.SIGSTOP)  # the first document waits in the child's pipe...
    polled: list[PollSummary] = []
    poll = threading.Thread(
        target=lambda: polled.append(poll_due(store, options, owner="test", parsers=parsers))
    )
    poll.start()
    deadline = time.monotonic() + 30
    while pool.busy_pids != (pid,):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)  # ...and the child dies while holding it
    poll.join(60)

    (summary,) = polled
    crashed = [r for r in summary.results if r.status == "error"]
    assert len(crashed) == 1 and "parser process crashed" in (crashed[0].error or "")
    assert summary.count("ok") == 2
    feeds = {f.url: f for f in store.get_feeds()}
    assert "parser process crashed" in (feeds[crashed[0].url].last_error or "")
    assert all(f.entry_count > 0 for url, f in feeds.items() if url != crashed[0].url)
    # The next poll parses that feed with a new child.
    again = poll_due(store, options, owner="test", now=datetime.now(UTC) + timedelta(days=2))
    statuses = {r.url: r.status for r in again.results}
    assert statuses.pop(crashed[0].url) == "ok"
    assert set(statuses.values()) == {"not_modified"}
    parsers.close()


def test_the_next_batch_is_claimed_while_the_first_is_in_flight_over_the_same_connections(
    tmp_path: Path,
    store: Store,
    feed_server: FeedServer,
    feed_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aggregator.update

    monkeypatch.setattr(aggregator.update, "CLAIM_BATCH", 3)  # eight feeds: three claims
    body = (feed_dir / "world.rss").read_bytes()
    second_claim = threading.Event()

    def held(_request: RecordedRequest) -> Response:
        second_claim.wait(3)  # nothing is answered before the second claim
        return Response(200, {"Content-Type": "application/xml"}, body)

    names = [f"/f{n}.rss" for n in range(8)]
    for name in names:
        feed_server.route(name, handler=held)
    _, options = _setup(tmp_path, store, feed_server, names)
    fetch = replace(options.fetch, max_connections=2, max_per_host=2)
    done: list[UpdateResult] = []
    claims: list[tuple[int, int]] = []  # (feeds claimed, feeds finished by then)

    def on_claim(count: int) -> None:
        claims.append((count, len(done)))
        if len(claims) == 2:
            second_claim.set()

    summary = poll_due(
        store, replace(options, fetch=fetch), owner="test", on_claim=on_claim, progress=done.append
    )

    assert [count for count, _ in claims] == [3, 3, 2]
    assert claims[1][1] == 0  # claimed while the whole first batch was in flight
    assert summary.count("ok") == 8 and len(done) == 8
    requests = feed_server.requests
    assert sorted(r.path for r in requests) == sorted(names)  # each feed fetched once
    assert len({r.client for r in requests}) <= 2  # one connection pool for every batch
    unleased = store.claim_due_feeds("other", datetime.now(UTC), timedelta(minutes=5), 100, True)
    assert len(unleased) == 8  # every lease was handed back


def _copies_one_at_a_time(
    tmp_path: Path, store: Store, server: FeedServer, feed_dir: Path, count: int
) -> tuple[list[str], PollOptions]:
    """`count` copies of world.rss as sources, and poll options fetching one at a time."""
    names = [f"f{n}.rss" for n in range(count)]
    for name in names:
        shutil.copy(feed_dir / "world.rss", feed_dir / name)
    _, options = _setup(tmp_path, store, server, names)
    fetch = replace(options.fetch, max_connections=1, max_per_host=1)
    return names, replace(options, fetch=fetch)


def test_a_failing_progress_callback_stops_claiming_but_saves_what_was_claimed(
    tmp_path: Path,
    store: Store,
    feed_server: FeedServer,
    feed_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(update_module, "CLAIM_BATCH", 2)
    # One connection: the claims cannot run ahead of the first result by more than a batch.
    names, options = _copies_one_at_a_time(tmp_path, store, feed_server, feed_dir, 6)

    def progress(_result: UpdateResult) -> None:
        raise RuntimeError("display broke")

    with pytest.raises(RuntimeError, match="display broke"):
        poll_due(store, options, owner="test", progress=progress)

    fetched = [f for f in store.get_feeds() if f.last_status == "ok"]
    assert 2 <= len(fetched) < 6  # the batches claimed were saved; no more were claimed
    assert len(feed_server.requests) == len(fetched)
    unleased = store.claim_due_feeds("other", datetime.now(UTC), timedelta(minutes=5), 100, True)
    assert len(unleased) == 6  # no lease left behind


def test_a_stopped_poll_saves_what_is_in_flight_and_gives_the_rest_back_at_once(
    tmp_path: Path,
    store: Store,
    feed_server: FeedServer,
    feed_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(update_module, "CLAIM_BATCH", 4)
    names, options = _copies_one_at_a_time(tmp_path, store, feed_server, feed_dir, 10)
    done: list[UpdateResult] = []

    # a SIGTERM arrives while the third feed is fetched
    summary = poll_due(
        store, options, owner="stopping", progress=done.append, stopping=lambda: len(done) >= 2
    )

    assert 2 <= len(summary.results) < 10
    assert all(r.status == "ok" for r in summary.results)  # in flight: saved, not lost
    assert len(feed_server.requests) == len(summary.results)
    assert store.count_entries() == len(summary.results) * 3  # world.rss has 3 items
    # the feeds it claimed and did not fetch are free now, not after the lease
    rest = poll_due(store, options, owner="next")
    assert sorted(r.url for r in (*summary.results, *rest.results)) == sorted(
        feed_server.url(name) for name in names
    )
    assert len(feed_server.requests) == 10  # every feed once


def test_a_parser_pool_still_in_use_by_the_poll_is_not_stopped_as_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aggregator.update

    monkeypatch.setattr(aggregator.update, "POOL_IDLE", timedelta(0))
    parsers = Parsers(1, min_feeds=2)
    pool = parsers.for_batch(5)
    assert pool is not None
    try:
        assert parsers.for_batch(1, in_use=True) is None  # a small batch parses here...
        assert parsers.pool is pool  # ...and the pool parsing the big one keeps running
        assert parsers.for_batch(1) is None
        assert parsers.pool is None  # idle: stopped
    finally:
        parsers.close()


class _StatisticsLog(Store):
    """The real store, counting the poll's calls to refresh the planner's statistics."""

    refreshed = 0

    def refresh_statistics(self) -> bool:
        self.refreshed += 1
        return super().refresh_statistics()


def test_each_saved_batch_may_refresh_the_statistics(
    tmp_path: Path, database_url: str, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first poll fills the entries table batch after batch of saved feeds; after
    each batch the store may refresh the table's statistics (see test_store), so that
    the rest of the poll is planned for the rows already stored."""
    monkeypatch.setattr(update_module, "WRITE_BATCH", 1)
    store = _StatisticsLog(database_url)
    store.upgrade()
    _, options = _setup(tmp_path, store, feed_server, FILES)

    summary = poll_due(store, options, owner="w")

    assert [r.status for r in summary.results] == ["ok"] * 3
    assert store.refreshed == 3  # one feed saved per batch
    store.close()


def test_a_poll_longer_than_the_lease_keeps_its_feeds(
    tmp_path: Path, store: Store, feed_server: FeedServer
) -> None:
    """Six feeds of one host answering after 0.7 s, one connection to it: the poll holds
    them for 4.2 s, twice its 2 s lease. It renews the leases of the feeds still waiting,
    so a second worker polling 2.5 s in takes none of them and none is fetched twice."""
    urls = []
    for number in range(6):
        body = (
            f'<?xml version="1.0"?><rss version="2.0"><channel><title>S{number}</title>'
            f"<item><title>I{number}</title><guid>g{number}</guid></item></channel></rss>"
        ).encode()
        feed_server.route(f"/s{number}.rss", body=body, delay=0.7)
        urls.append(feed_server.url(f"s{number}.rss"))
    path = write_config(
        tmp_path / "agg.toml", store.database_url, urls, 'lease_seconds = "2s"\nmax_per_host = 1'
    )
    config = load_config(path)
    store.sync_sources(config.sources, datetime.now(UTC))
    options = poll_options(config)
    polls: dict[str, PollSummary] = {}

    def poll(owner: str, after: float) -> None:
        time.sleep(after)
        polls[owner] = poll_due(store, options, owner=owner)

    first = threading.Thread(target=poll, args=("first", 0.0))
    second = threading.Thread(target=poll, args=("second", 2.5))
    first.start(), second.start()
    first.join(), second.join()

    assert [r.status for r in polls["first"].results] == ["ok"] * 6
    assert polls["second"].results == ()
    assert sorted(r.path for r in feed_server.requests) == sorted(
        f"/s{number}.rss" for number in range(6)
    )
