"""Finding the feed behind a URL (`aggregator add`), against a real local HTTP server:
a feed URL, a web page advertising feeds, pages that advertise none or only broken ones,
and the address policy on every request it makes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator.cli import cli
from aggregator.discover import DiscoveryError, advertised_feeds, as_web_url, find_feed
from aggregator.models import FetchOptions
from tests.conftest import DATA, write_config
from tests.feedserver import FeedServer

LOOPBACK_ONLY = FetchOptions(user_agent="test", timeout=5, allowed_networks=("127.0.0.1/32",))

PAGE = b"""<!doctype html>
<html><head><title>Harbour Times</title>
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="text/html" hreflang="fr" href="/fr/">
<link rel="Alternate" type="application/rss+xml; charset=utf-8" title="World" href="../world.rss">
<link rel="alternate" type="application/atom+xml" title="Comments" href="/comments.atom">
<link rel="alternate" type="application/rss+xml" href="/world.rss">
</head><body><p>News</p></body></html>"""


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as server:
        server.route("/world.rss", body=(DATA / "world.rss").read_bytes())
        server.route("/news/", body=PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
        yield server


def test_a_feed_url_is_the_feed(site: FeedServer) -> None:
    found = find_feed(site.url("/world.rss"), LOOPBACK_ONLY)
    assert found.url == site.url("/world.rss") and found.page is None
    assert found.title == "Harbour Times — World" and found.entries == 3
    site.route_redirect("/old.rss", site.url("/world.rss"), status=301)
    site.route_redirect("/today.rss", site.url("/world.rss"), status=302)
    moved = find_feed(site.url("/old.rss"), LOOPBACK_ONLY)
    assert moved.url == site.url("/world.rss") and moved.moved
    today = find_feed(site.url("/today.rss"), LOOPBACK_ONLY)
    assert today.url == site.url("/today.rss") and not today.moved


def test_a_page_gives_the_first_feed_it_advertises(site: FeedServer) -> None:
    """Relative to the page, type parameters and the rel's case aside; an alternate
    that is no feed (a translation) is not taken, each feed is listed once."""
    found = find_feed(site.url("/news/"), LOOPBACK_ONLY)
    assert found.url == site.url("/world.rss")  # "../world.rss" of /news/
    assert found.page == site.url("/news/")
    assert found.others == (site.url("/comments.atom"),)


def test_a_base_element_and_broken_advertised_feeds(site: FeedServer) -> None:
    page = PAGE.replace(b"<head>", b'<head><base href="/feeds/deep/">')
    site.route("/base/", body=page, headers={"Content-Type": "text/html"})
    site.route("/feeds/world.rss", status=404)
    site.route("/comments.atom", body=(DATA / "world.atom").read_bytes())
    found = find_feed(site.url("/base/"), LOOPBACK_ONLY)
    # the first (resolved against <base>) answers 404: the next readable one is taken
    assert [r.path for r in site.requests][-2:] == ["/feeds/world.rss", "/comments.atom"]
    assert found.url == site.url("/comments.atom")
    assert found.others == (site.url("/feeds/world.rss"), site.url("/world.rss"))


def test_a_page_without_feeds_is_refused_with_the_reason(site: FeedServer) -> None:
    site.route("/plain/", body=b"<html><head><title>x</title></head><body>hi</body></html>")
    with pytest.raises(DiscoveryError, match=r"not a feed.*; and no feed is advertised there"):
        find_feed(site.url("/plain/"), LOOPBACK_ONLY)
    site.route("/gone", status=404)
    with pytest.raises(DiscoveryError, match="HTTP 404"):
        find_feed(site.url("/gone"), LOOPBACK_ONLY)
    only_broken = PAGE.replace(b"/world.rss", b"/missing.rss").replace(b"/comments.atom", b"/x")
    site.route("/broken/", body=only_broken, headers={"Content-Type": "text/html"})
    with pytest.raises(DiscoveryError, match="none readable.*HTTP 404"):
        find_feed(site.url("/broken/"), LOOPBACK_ONLY)


def test_the_address_policy_holds_for_the_page_and_what_it_advertises(
    site: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing leaves for a refused address: not the page (default policy refuses
    loopback), not a feed it advertises on another loopback address."""
    connected: list[object] = []
    real_connect = socket.socket.connect

    def spy(self: socket.socket, address: object) -> None:
        connected.append(address)
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", spy)
    with pytest.raises(DiscoveryError, match=r"fetch: .*127\.0\.0\.1"):
        find_feed(site.url("/news/"), FetchOptions(user_agent="test", timeout=5))
    assert site.requests == []
    elsewhere = f'<link rel="alternate" type="application/rss+xml" href="http://127.0.0.2:{site.port}/world.rss">'
    site.route("/far/", body=elsewhere.encode(), headers={"Content-Type": "text/html"})
    with pytest.raises(DiscoveryError, match=r"127\.0\.0\.2"):
        find_feed(site.url("/far/"), LOOPBACK_ONLY)
    assert [r.path for r in site.requests] == ["/far/"]
    assert all(address[0] != "127.0.0.2" for address in connected)  # type: ignore[index]


def test_addresses_as_people_write_them() -> None:
    assert as_web_url("example.com/news") == "https://example.com/news"
    assert as_web_url(" feed://example.com/rss ") == "http://example.com/rss"
    assert as_web_url("feed:https://example.com/rss") == "https://example.com/rss"
    assert as_web_url("http://example.com/x") == "http://example.com/x"
    assert as_web_url("//example.com/x") == "https://example.com/x"
    assert as_web_url("javascript:alert(1)") == "javascript:alert(1)"  # refused by fetch
    page = b'<link rel="alternate" type="application/rss+xml" href="feed://b.example/rss">'
    assert advertised_feeds(page, "https://a.example/") == ["http://b.example/rss"]


def test_advertised_feeds_of_odd_pages() -> None:
    assert advertised_feeds(b"", "https://a.example/") == []
    assert advertised_feeds(b"\x00\xff not html", "https://a.example/") == []
    page = b'<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">'
    assert advertised_feeds(page, "https://a.example/") == []  # only http(s)
    page = b'<link rel="alternate feed" type="application/feed+json" href="//b.example/f.json">'
    assert advertised_feeds(page, "https://a.example/x") == ["https://b.example/f.json"]


def test_cli_add_writes_the_discovered_feed(
    tmp_path: Path, sqlite_url: str, site: FeedServer
) -> None:
    path = write_config(tmp_path / "agg.toml", sqlite_url, [])
    result = CliRunner().invoke(cli, ["--config", str(path), "add", site.url("/news/")])
    assert result.exit_code == 0, result.output
    assert "is a web page; the feed it advertises" in result.output
    assert "Harbour Times — World, 3 entries" in result.output
    assert "it also advertises " + site.url("/comments.atom") in result.output
    text = path.read_text()
    assert site.url("/news/") not in text and "world.rss" in text

    again = CliRunner().invoke(cli, ["--config", str(path), "add", site.url("/world.rss")])
    assert again.exit_code != 0 and "already" in again.output
    assert "feed: Harbour Times — World, 3 entries" in again.output  # not "moved"

    # written without its scheme, as people write addresses: https is tried first, and
    # as this server speaks only http (no answer over TLS), http next
    site.route("/other.rss", body=(DATA / "world.atom").read_bytes())
    bare = site.url("/other.rss").removeprefix("http://")
    assumed = CliRunner().invoke(cli, ["--config", str(path), "add", bare])
    assert assumed.exit_code == 0, assumed.output
    assert "moved" not in assumed.output and "feed: Meridian" in assumed.output
    assert f'url = "http://{bare}"' in path.read_text()
    missing = site.url("/missing.rss").removeprefix("http://")  # an answer over http: 404
    refused = CliRunner().invoke(cli, ["--config", str(path), "add", missing])
    assert refused.exit_code != 0 and f"https://{missing}" in refused.output
    assert "HTTP 404" in refused.output

    refused = CliRunner().invoke(cli, ["--config", str(path), "add", site.url("/nothing")])
    assert (
        refused.exit_code != 0 and "HTTP 404" in refused.output and "--no-check" in refused.output
    )
    assert "/nothing" not in path.read_text()  # nothing written
