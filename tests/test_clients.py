"""Real feed readers against the app served on a real port: every Atom and RSS feed is
read by `newsboat` and by `sfeed` (Debian packages) with every entry's title, link and
date intact, and by feedparser with bozo == 0. Neither newsboat 2.21 nor sfeed reads
JSON Feed (newsboat issue #426), so every JSON Feed is checked against the JSON Feed 1.1
spec's required fields and types, and read back by the project's own JSON Feed parser.

The readers skip when missing, unless AGGREGATOR_REQUIRE_CLIENTS=1 (CI) makes that a
failure.
"""

from __future__ import annotations

import calendar
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from werkzeug.serving import make_server

from aggregator.models import Story
from aggregator.parse import parse_feed
from aggregator.store import Store
from aggregator.store.pages import EntryQuery
from aggregator.web import create_app
from tests.test_web import Filled, add_feed, entry, fill_store, save_entries

TRICKY_TITLE = "Café & \"Bar\" — 東京 'quoted' 1 < 2"
FORMATS = ("atom", "rss")


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if os.environ.get("AGGREGATOR_REQUIRE_CLIENTS") == "1":
            pytest.fail(f"{program} is required (AGGREGATOR_REQUIRE_CLIENTS=1) but missing")
        pytest.skip(f"{program} is not installed")
    return path


@dataclass(frozen=True)
class Served:
    url: str
    store: Store
    filled: Filled

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:  # noqa: S310
            body: bytes = response.read()
            return body

    def feed_paths(self) -> list[str]:
        story, feed = self.filled.big_story, self.filled.feed_ids[0]
        return [
            "/feed",
            "/tags/world/feed",
            f"/sources/{feed}/feed",
            f"/stories/{story}/feed",
            "/stories/feed",
        ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app on 127.0.0.1:<free port> (werkzeug, threaded) over a filled SQLite store."""
    folder = tmp_path_factory.mktemp("clients")
    store = Store(f"sqlite:///{folder}/aggregator.db")
    store.upgrade()
    filled = fill_store(store)
    odd = add_feed(store, "https://odd.example/feed", "Odd & <Co>", ["world"])
    save_entries(
        store, odd, [entry("odd-1", TRICKY_TITLE, 2, link="https://odd.example/a?b=1&c=2")]
    )
    app = create_app({"DATABASE_URL": store.database_url, "SITE_TITLE": "Clients & Co"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = url + "/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Served(url, store, filled)
    server.shutdown()
    thread.join(5)
    app.extensions["store"].close()
    store.close()


def expected_items(served: Served, path: str) -> list[tuple[str, str, int]]:
    """(title, link, published Unix time) of each item the feed at `path` must carry."""
    store = served.store
    if path == "/stories/feed":
        return [_story_row(served, story) for story in store.get_stories_page(50)]
    scope: dict[str, Any] = {}
    parts = path.strip("/").split("/")
    if parts[0] == "tags":
        scope["tag"] = parts[1]
    elif parts[0] == "sources":
        scope["feed_id"] = int(parts[1])
    elif parts[0] == "stories":
        scope["story_id"] = int(parts[1])
    entries = store.get_entries_page(EntryQuery(50, **scope))
    return [(e.title, e.link or "", int(e.published_at.timestamp())) for e in entries]


def _story_row(served: Served, story: Story) -> tuple[str, str, int]:
    return (
        story.headline,
        f"{served.url}/stories/{story.id}",
        int(story.first_seen_at.timestamp()),
    )


def _newsboat(newsboat: str, url: str, folder: Path) -> list[tuple[str, str, int]]:
    """newsboat's reading of one feed, from its cache (one cache per feed: newsboat keys
    items by guid across feeds)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "urls").write_text(url + "\n", encoding="utf-8")
    (folder / "config").write_text("", encoding="utf-8")
    cache = folder / "cache.db"
    command = [newsboat, "-x", "reload", "-u", "urls", "-C", "config", "-c", str(cache)]
    env = {**os.environ, "HOME": str(folder)}
    subprocess.run(command, cwd=folder, env=env, check=True, timeout=60, capture_output=True)
    printed = subprocess.run(
        [newsboat, "-x", "print-unread", "-u", "urls", "-C", "config", "-c", str(cache)],
        cwd=folder,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    with sqlite3.connect(cache) as db:
        rows = db.execute(
            "SELECT title, url, pubDate FROM rss_item ORDER BY pubDate DESC, id"
        ).fetchall()
    assert printed.stdout.split()[0] == str(len(rows))
    return [(title, link, int(date)) for title, link, date in rows]


def _sfeed(sfeed: str, document: bytes) -> list[tuple[str, str, int]]:
    """sfeed's TSV reading: timestamp, title, link, content, content-type, id, ..."""
    out = subprocess.run([sfeed], input=document, check=True, timeout=30, capture_output=True)
    rows = []
    for line in out.stdout.decode("utf-8").splitlines():
        fields = line.split("\t")
        rows.append((_sfeed_unescape(fields[1]), fields[2], int(fields[0])))
    return rows


def _sfeed_unescape(value: str) -> str:
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("\\\\", "\\")


def _by_link(rows: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return sorted(rows, key=lambda row: (row[1], row[0]))


@pytest.mark.slow
def test_newsboat_reads_every_feed_intact(served: Served, tmp_path: Path) -> None:
    newsboat = require("newsboat")
    for path in served.feed_paths():
        expected = _by_link(expected_items(served, path))
        assert expected, path
        for fmt in FORMATS:
            folder = tmp_path / f"{path.strip('/').replace('/', '_')}.{fmt}"
            read = _newsboat(newsboat, f"{served.url}{path}.{fmt}", folder)
            assert _by_link(read) == expected, f"{path}.{fmt}"


@pytest.mark.slow
def test_sfeed_reads_every_feed_intact(served: Served) -> None:
    sfeed = require("sfeed")
    for path in served.feed_paths():
        expected = _by_link(expected_items(served, path))
        for fmt in FORMATS:
            read = _sfeed(sfeed, served.get(f"{path}.{fmt}"))
            assert _by_link(read) == expected, f"{path}.{fmt}"


def test_feedparser_reads_every_feed_without_bozo(served: Served) -> None:
    for path in served.feed_paths():
        expected = _by_link(expected_items(served, path))
        for fmt in FORMATS:
            parsed = feedparser.parse(served.get(f"{path}.{fmt}"))
            assert parsed.bozo == 0, (path, fmt, parsed.get("bozo_exception"))
            read = [(e.title, e.link, calendar.timegm(e.published_parsed)) for e in parsed.entries]
            assert _by_link(read) == expected, f"{path}.{fmt}"
            links = {link.rel: link.href for link in parsed.feed.links}
            assert links["self"] == f"{served.url}{path}.{fmt}"


# JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)

OPTIONAL_STRINGS = ("home_page_url", "feed_url", "description", "user_comment", "next_url", "icon",
                    "favicon", "language")  # fmt: skip
ITEM_STRINGS = ("url", "external_url", "title", "content_html", "content_text", "summary",
                "image", "banner_image", "date_published", "date_modified", "language")  # fmt: skip


def check_json_feed(document: dict[str, Any]) -> None:
    """Assert `document` follows JSON Feed 1.1: required fields, types, RFC 3339 dates."""
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(document["title"], str) and document["title"]
    assert isinstance(document["items"], list)
    for key in OPTIONAL_STRINGS:
        assert isinstance(document.get(key, ""), str), key
    for url_key in ("home_page_url", "feed_url", "next_url"):
        if url_key in document:
            assert document[url_key].startswith(("http://", "https://")), url_key
    _check_authors(document.get("authors", []))
    for item in document["items"]:
        _check_item(item)


def _check_item(item: dict[str, Any]) -> None:
    assert isinstance(item["id"], str) and item["id"]
    assert isinstance(item.get("content_html"), str) or isinstance(item.get("content_text"), str)
    for key in ITEM_STRINGS:
        assert isinstance(item.get(key, ""), str), key
    for key in ("date_published", "date_modified"):
        if key in item:
            assert datetime.fromisoformat(item[key].replace("Z", "+00:00")).tzinfo is not None
    assert all(isinstance(tag, str) for tag in item.get("tags", []))
    _check_authors(item.get("authors", []))
    for attachment in item.get("attachments", []):
        assert isinstance(attachment["url"], str) and isinstance(attachment["mime_type"], str)
        assert isinstance(attachment.get("size_in_bytes", 0), int)
        assert isinstance(attachment.get("title", ""), str)
    known = {*ITEM_STRINGS, "id", "tags", "authors", "attachments"}
    assert all(key in known or key.startswith("_") for key in item)


def _check_authors(authors: list[dict[str, Any]]) -> None:
    assert isinstance(authors, list)
    for author in authors:
        assert any(key in author for key in ("name", "url", "avatar"))
        assert all(isinstance(value, str) for value in author.values())


def test_json_feeds_follow_the_spec_and_read_back(served: Served) -> None:
    for path in served.feed_paths():
        body = served.get(f"{path}.json")
        document = json.loads(body)
        check_json_feed(document)
        expected = _by_link(expected_items(served, path))
        read = [
            (
                item["title"],
                item["url"],
                int(datetime.fromisoformat(item["date_published"]).timestamp()),
            )
            for item in document["items"]
        ]
        assert _by_link(read) == expected, path
        parsed = parse_feed(body, url=f"{served.url}{path}.json", fetched_at=datetime.now(UTC))
        assert parsed.format.startswith("json") and len(parsed.entries) == len(expected)
        assert sorted(e.title for e in parsed.entries) == sorted(row[0] for row in expected)


def test_json_feed_paging_has_next_url(served: Served) -> None:
    document = json.loads(served.get("/feed.json?limit=5"))
    check_json_feed(document)
    assert document["next_url"].startswith(f"{served.url}/feed.json?limit=5&before=")
    older = json.loads(served.get(document["next_url"].removeprefix(served.url)))
    assert older["items"][0]["id"] != document["items"][-1]["id"]
