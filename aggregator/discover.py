"""Finding the feed behind a URL a user gives `aggregator add`.

The URL itself when it is a feed; else, of a web page, the feeds it advertises with
`<link rel="alternate" type="application/rss+xml" href="...">` (the way browsers and
feed readers discover them), the first that reads as a feed. Every request goes through
`aggregator.fetch`, so the config's address policy, deadline and size cap apply as they
do to polling, and every document through `aggregator.parse`, so what `add` accepts is
what the worker will read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

from lxml import etree

from aggregator.config import without_feed_scheme
from aggregator.exceptions import AggregatorError, ParseError
from aggregator.fetch import fetch_all_sync
from aggregator.models import FetchOptions, FetchRequest, FetchResult, ParsedFeed
from aggregator.parse import parse_feed

FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
        "application/json",  # JSON Feed before it had a type of its own
        "application/rdf+xml",
        "application/xml",
        "text/xml",
    }
)
"""`type`s of an alternate link that name a feed (parameters and case aside)."""

MAX_TRIED = 3
"""Advertised feeds fetched at most before giving up: a page's first feed is its main
one (WordPress lists the posts, then the comments)."""


class DiscoveryError(AggregatorError):
    """No feed was found at, or advertised by, the URL. `unreachable`: no HTTP answer
    came at all (DNS, connection, TLS, deadline)."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Found:
    """A feed found for a URL."""

    url: str  # the feed's URL, after permanent redirects
    title: str | None  # the feed's own title
    entries: int  # entries its document holds now
    page: str | None = None  # the page that advertised it; None: the URL was the feed
    others: tuple[str, ...] = ()  # the page's other advertised feeds
    requested: str = ""  # the URL asked for first (the one given, scheme supplied)

    @property
    def moved(self) -> bool:
        """Whether the feed itself was asked for and answered from a new permanent URL."""
        return self.page is None and self.url != self.requested


def find_feed(url: str, options: FetchOptions, now: datetime | None = None) -> Found:
    """The feed at `url`, or the first readable feed the page at `url` advertises.

    `url` may be written as people write addresses: "example.com/news" (https is
    assumed, then http if no answer comes over https) or "feed://example.com/rss" (the
    old feed: scheme, read as http).

    Raises:
        DiscoveryError: the URL could not be fetched, or is neither a feed nor a page
            advertising a readable one (the message says which).
    """
    now = now or datetime.now(UTC)
    url, page = _fetch_as_written(url, options)
    try:
        feed = _read(page, now)
    except ParseError as e:
        advertised = advertised_feeds(page.body or b"", page.final_url)
        if not advertised:
            raise DiscoveryError(
                f"{url}: {e.message.removeprefix('parse: ')}; and no feed is advertised "
                'there (no <link rel="alternate"> of a feed type)'
            ) from None
        return _first_readable(url, advertised, options, now)
    return Found(page.permanent_url or url, feed.title, len(feed.entries), requested=url)


def as_web_url(url: str) -> str:
    """`url` as an http(s) URL: "feed://host/x" and "feed:https://host/x" name the
    feed at http://host/x and https://host/x; an address without a scheme
    ("example.com/news") is taken as https. Anything else is left as it is."""
    url = url.strip()
    if url.lower().startswith("feed:"):
        return without_feed_scheme(url)
    if url.startswith("//"):  # scheme-relative
        return "https:" + url
    if "://" not in url and not url.lower().startswith(("mailto:", "javascript:", "data:")):
        return "https://" + url
    return url


def advertised_feeds(html: bytes, base: str) -> list[str]:
    """The absolute http(s) URLs of the feeds an HTML page advertises, in page order,
    each once. Relative links resolve against the page's `<base href>`, else `base`."""
    parser = etree.HTMLParser(no_network=True, recover=True)
    try:
        root = etree.fromstring(html, parser)
    except (etree.LxmlError, ValueError):
        return []
    if root is None:
        return []
    for href in root.xpath("//base/@href")[:1]:
        base = urljoin(base, str(href).strip())
    found: dict[str, None] = {}
    for link in root.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").split(";", 1)[0].strip().lower()
        href = (link.get("href") or "").strip()
        if "alternate" in rel and kind in FEED_TYPES and href:
            absolute = urljoin(base, as_web_url(href) if href.startswith("feed:") else href)
            if urlsplit(absolute).scheme in ("http", "https"):
                found[absolute] = None
    return list(found)


def _first_readable(url: str, advertised: list[str], options: FetchOptions, now: datetime) -> Found:
    problems = []
    for candidate in advertised[:MAX_TRIED]:
        try:
            result = _fetch(candidate, options)
            feed = _read(result, now)
        except (DiscoveryError, ParseError) as e:
            problems.append(str(e))
            continue
        others = tuple(other for other in advertised if other != candidate)
        found = result.permanent_url or candidate
        return Found(found, feed.title, len(feed.entries), url, others, requested=url)
    raise DiscoveryError(f"{url}: advertises feeds, none readable: " + "; ".join(problems))


def _fetch_as_written(written: str, options: FetchOptions) -> tuple[str, FetchResult]:
    """The URL `written` stands for (`as_web_url`) and its answer; an address written
    without a scheme is tried over http when https gets no answer at all."""
    url = as_web_url(written)
    try:
        return url, _fetch(url, options)
    except DiscoveryError as e:
        bare = written.strip()
        if not e.unreachable or url != "https://" + bare:
            raise
        plain = "http://" + bare
        try:
            return plain, _fetch(plain, options)
        except DiscoveryError as again:
            raise DiscoveryError(f"{e}; {again}", again.unreachable) from None


def _fetch(url: str, options: FetchOptions) -> FetchResult:
    (result,) = fetch_all_sync([FetchRequest(0, url)], options)
    if result.error is not None:
        raise DiscoveryError(f"{url}: {result.error}", unreachable=result.status == 0)
    if result.status != 200:
        raise DiscoveryError(f"{url}: fetch: HTTP {result.status}")
    return result


def _read(result: FetchResult, now: datetime) -> ParsedFeed:
    return parse_feed(
        result.body or b"", url=result.final_url, content_type=result.content_type, fetched_at=now
    )
