"""The vocabulary shared by every stage. Frozen dataclasses and the small properties that
read them; of the rest of the package, imports only `wording` (itself a leaf).

Names say where a value comes from: `SourceConfig` from the config file, `FetchRequest`
and `FetchResult` around `fetch`, `ParsedFeed`/`EntryData` out of `parse`+`normalise`,
`FeedState`/`Entry`/`Story` out of `store`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aggregator.wording import counted, truncate_words

_LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")


def language_tag(value: str | None) -> str | None:
    """`value` (a normalised language, "de-at") when it is a well-formed BCP 47 tag of
    a two- or three-letter language, which pages (`lang`) and feeds (`xml:lang`) may
    carry; None for what feeds also declare ("english", "") or none."""
    return value if value and _LANGUAGE_TAG.fullmatch(value) else None


@dataclass(frozen=True)
class SourceConfig:
    """One feed as the config file lists it."""

    url: str
    title: str | None = None
    tags: tuple[str, ...] = ()
    interval: int | None = None  # seconds; None means the global default
    enabled: bool = True
    allow_private_addresses: bool | None = None  # None means the global setting
    line: int | None = None  # line of the source in the config file, for messages


@dataclass(frozen=True)
class FetchOptions:
    """How `fetch` behaves; built from the settings."""

    user_agent: str
    timeout: float = 30.0  # total deadline per request, seconds
    max_body_bytes: int = 10 * 1024 * 1024  # cap on decompressed bytes
    max_redirects: int = 5
    max_connections: int = 64  # requests in flight at once
    max_per_host: int = 2  # requests in flight per host
    allow_private_addresses: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs allowed even when private


@dataclass(frozen=True)
class FetchRequest:
    """One conditional GET to make."""

    feed_id: int
    url: str
    etag: str | None = None
    last_modified: str | None = None
    allow_private_addresses: bool | None = None  # per-source override


@dataclass(frozen=True)
class FetchResult:
    """What one fetch gave. `status` is 0 when no HTTP response arrived."""

    feed_id: int
    url: str  # the URL requested
    final_url: str  # the URL of the last hop
    permanent_url: str | None  # set only when every redirect hop was 301 or 308
    status: int
    fetched_at: datetime
    body: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    retry_after: datetime | None = None  # from Retry-After on 429/503
    cache_seconds: int | None = None  # from Cache-Control max-age / Expires
    error: str | None = None  # why it failed, for the operator

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    @property
    def not_modified(self) -> bool:
        return self.error is None and self.status == 304


@dataclass(frozen=True)
class Retention:
    """How long entries are kept: those published more than `max_age` ago are deleted,
    except each feed's `keep_min` newest (from the config's `retention_*` settings)."""

    max_age: timedelta
    keep_min: int


@dataclass(frozen=True)
class Enclosure:
    url: str
    type: str | None = None
    length: int | None = None


@dataclass(frozen=True)
class EntryData:
    """One normalised entry, ready to store.

    Dates are timezone-aware UTC; `published_at` is None when the source had no usable
    date (the store then uses the first-seen time). Text fields are plain text except
    `content_html`, which is sanitised HTML with absolute http(s)/mailto URLs.
    """

    key: str  # stable id within the feed: guid/id, else link, else a content hash
    title: str
    link: str | None
    published_at: datetime | None
    updated_at: datetime | None
    author: str | None = None
    summary: str = ""
    content_html: str = ""
    image_url: str | None = None
    tags: tuple[str, ...] = ()
    enclosures: tuple[Enclosure, ...] = ()
    language: str | None = None
    content_hash: str = ""  # changes when a reader-visible field changes


CUT_SHORT_WARNING = "document cut short: its last entry is incomplete and was skipped"
"""The warning of a document whose last entry the bytes cut (`parse.last_entry_cut_short`);
the poll does not keep such a document's validators."""


@dataclass(frozen=True)
class ParsedFeed:
    """A parsed and normalised feed document."""

    format: str  # feedparser's version ("rss20", "atom10", ...) or "json11" ...
    title: str | None
    link: str | None
    language: str | None
    entries: tuple[EntryData, ...]
    ttl_seconds: int | None = None  # from RSS <ttl> or sy:updatePeriod/updateFrequency
    warning: str | None = None  # survivable problem (bozo), for the feed's status
    dropped: int = 0  # entries skipped (no id, link or title at all; over the cap)
    repeated_guids: int = 0  # entries whose guid an earlier entry with another link had


@dataclass(frozen=True)
class FeedState:
    """A feed as the store knows it, with its fetch state."""

    id: int
    url: str
    title: str | None  # from the config
    feed_title: str | None  # from the document
    site_link: str | None
    tags: tuple[str, ...]
    enabled: bool
    in_config: bool
    interval: int | None
    allow_private_addresses: bool | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    next_check_at: datetime | None
    last_fetch_at: datetime | None
    last_success_at: datetime | None
    last_status: str | None  # "ok", "not_modified", "unchanged", "error", "gone"
    http_status: int | None
    last_error: str | None
    error_count: int
    disabled_reason: str | None
    id_rule: str | None = None  # None: guid/id first; "link": guids proved unstable
    entry_count: int = 0
    entries_per_day: float = 0.0
    created_at: datetime | None = None  # when the config first listed it
    backoff_count: int = 0  # consecutive errors not answered with Retry-After
    config_url: str = ""  # the URL as the config lists it (`url` follows redirects)
    language: str | None = None  # as the document declares it

    @property
    def language_tag(self) -> str | None:
        """The feed's language as feeds mark it (see `language_tag`)."""
        return language_tag(self.language)

    @property
    def display_title(self) -> str:
        return self.title or self.feed_title or self.url

    @property
    def failing(self) -> bool:
        """Whether the source needs the operator's eye: its last fetch failed, errors
        are counting, or it was disabled (a 410 sets the reason); a note on a fetch that
        worked does not count, nor a source removed from the config (no longer polled)."""
        problem = self.error_count or self.disabled_reason or self.last_status == "error"
        return self.in_config and bool(problem)

    @property
    def polled(self) -> bool:
        """Whether the worker checks this source: listed and enabled in the config, and
        not disabled by the publisher (HTTP 410)."""
        return self.in_config and self.enabled and not self.disabled_reason

    @property
    def last_error_is_note(self) -> bool:
        """Whether `last_error` is a note on a fetch that worked (a document recovered
        from a defect, a switch of the feed's id rule) rather than a failure's message."""
        worked = self.last_status in ("ok", "not_modified", "unchanged")
        return worked and not self.error_count and not self.disabled_reason

    @property
    def advice(self) -> str | None:
        """What the operator can do about the feed's failure (see `error_advice`); none
        for a feed disabled (its reason says it) or no longer listed."""
        if self.disabled_reason or not self.error_count or not self.in_config:
            return None
        return error_advice(self.last_error)


REFUSED_ADDRESS = "refused address"
"""The phrase of the address policy's refusals (`netpolicy`, `fetch`): a feed added as
given at such an address would only fail, so `add` advises the setting, not --no-check."""

_ADVICE = (
    (
        REFUSED_ADDRESS,
        "private, loopback and link-local addresses are refused: allow them with "
        "allow_private_addresses = true (in [settings], or in this feed's table) or "
        "allowed_networks",
    ),
    ("cannot resolve host", "check the host name for a typo"),
    (
        "HTTP 404",
        "check the URL: `aggregator add` with the site's address finds the feed it advertises now",
    ),
    (
        "parse: not a feed",
        "a web page rather than a feed? `aggregator add` with its URL finds the feed the "
        "page advertises",
    ),
    ("HTTP 401", "the feed needs a login: private feeds are not supported"),
    ("HTTP 403", "the server refuses the service: it may block robots; try the URL in a browser"),
    ("TLS error", "the server's certificate is not valid for this host"),
)
"""(a phrase of our own error messages, what to do about it), first match wins."""


def error_advice(error: str | None) -> str | None:
    """What an operator can do about a fetch or parse error the service recorded, when
    there is something to do (a 5xx or a timeout only asks for patience: backoff)."""
    if not error:
        return None
    return next((advice for phrase, advice in _ADVICE if phrase in error), None)


HEADING_MAX_CHARS = 80
"""Longest heading made for an entry that has no title (a micro-post): the start of
its text, cut at a word boundary, as feed readers list such posts."""
UNTITLED = "(untitled)"


@dataclass(frozen=True)
class Entry:
    """A stored entry, as the web and the renderers see it."""

    id: int
    feed_id: int
    key: str
    title: str
    link: str | None
    published_at: datetime  # never None once stored (falls back to first seen)
    updated_at: datetime
    first_seen_at: datetime
    author: str | None
    summary: str
    content_html: str
    image_url: str | None
    tags: tuple[str, ...]
    enclosures: tuple[Enclosure, ...]
    language: str | None
    feed_title: str
    feed_url: str
    feed_link: str | None
    story_id: int | None = None
    story_sources: int = 0  # how many sources its story covers (0: not grouped)
    also_in: tuple[str, ...] = field(default=())  # other sources carrying the same article
    group_score: float | None = None  # similarity with its story when it joined
    group_terms: tuple[str, ...] = ()  # key terms it shared with its story
    duplicate_of: int | None = None  # the entry (of another feed) this one repeats
    catalogue: bool = False  # undated back catalogue of a new source (`is_backlog`)

    @property
    def language_tag(self) -> str | None:
        """The entry's language as pages and feeds mark it (see `language_tag`)."""
        return language_tag(self.language)

    @property
    def heading(self) -> str:
        """What lists and feeds show as the entry's title: its title; for an entry
        without one (micro-posts: Scripting News, micro.blog), the start of its text,
        else its link without the scheme, else "(untitled)". The stored title stays
        empty: identity, duplicates and grouping read the feed's own title."""
        if self.title:
            return self.title
        if self.summary:
            return truncate_words(self.summary, HEADING_MAX_CHARS)
        if self.link:
            return truncate_words(self.link.split("://", 1)[-1], HEADING_MAX_CHARS)
        return UNTITLED


@dataclass(frozen=True)
class EntryText:
    """What story grouping reads of a stored entry: its text and where it comes from,
    without its content (grouping reads tens of thousands after a first poll)."""

    id: int
    feed_id: int
    title: str
    summary: str
    link: str | None
    first_seen_at: datetime
    published_at: datetime
    language: str | None
    story_id: int | None = None
    group_score: float | None = None  # the score of its grouping decision (if grouped)
    catalogue: bool = False  # undated back catalogue of a new source (`is_backlog`)


COVERED_SOURCES = 2
"""Sources a story needs to show as coverage (pages, feeds, /metrics): one source's
entries alone are single entries."""


@dataclass(frozen=True)
class Story:
    """Coverage of one event by several entries, as the store keeps it.

    `id` is the id of the entry that founded the story, so it never changes as the
    story grows. `headline` is the representative headline (see `group.py`).
    """

    id: int
    headline: str
    headline_entry_id: int | None
    terms: tuple[str, ...]
    language: str | None
    first_seen_at: datetime
    last_updated_at: datetime
    entry_count: int
    source_count: int
    sources: tuple[str, ...] = ()  # display titles of the feeds covering it

    @property
    def language_tag(self) -> str | None:
        """The story's language as pages and feeds mark it (see `language_tag`)."""
        return language_tag(self.language)


@dataclass(frozen=True)
class StoryAssignment:
    """What grouping decided for one entry, to store."""

    entry_id: int
    story_id: int
    score: float
    shared_terms: tuple[str, ...]
    duplicate_of: int | None = None
    language: str | None = None  # read off the text, for an entry that declares none


@dataclass(frozen=True)
class StoryLabel:
    """A story's label as grouping computes it."""

    story_id: int
    headline: str
    headline_entry_id: int | None
    terms: tuple[str, ...]
    language: str | None = None


@dataclass(frozen=True)
class UpdateResult:
    """The outcome of updating one feed. A per-feed failure is data, not an exception."""

    feed_id: int
    url: str
    status: str  # "ok", "not_modified", "unchanged", "error", "gone", "stale"
    new_entries: int = 0
    changed_entries: int = 0
    error: str | None = None


@dataclass(frozen=True)
class PollSummary:
    results: tuple[UpdateResult, ...]

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def new_entries(self) -> int:
        return sum(r.new_entries for r in self.results)

    def line(self) -> str:
        return (
            f"{counted(len(self.results), 'feed')}: {self.count('ok')} ok, "
            f"{self.count('not_modified') + self.count('unchanged')} not modified, "
            f"{self.count('error') + self.count('gone')} failed; "
            f"{counted(self.new_entries, 'new entry', 'new entries')}"
        )


HEARTBEAT_TICKS = 3
"""A worker is alive while its last heartbeat is at most this many of its tick intervals
old: `/healthz` is unhealthy past it, `/metrics` counts only live workers."""


@dataclass(frozen=True)
class WorkerBeat:
    """A worker's last heartbeat, with its last poll's duration and feed count."""

    name: str
    last_tick_at: datetime
    tick_seconds: float
    poll_seconds: float | None
    poll_feeds: int | None

    def alive(self, now: datetime) -> bool:
        return heartbeat_is_fresh(self.last_tick_at, self.tick_seconds, now)


def is_backlog(entry: EntryText | Entry, window: timedelta) -> bool:
    """Whether `entry` was published more than `window` before it was first seen: the
    back catalogue of a feed just added, or an old item a feed re-published.

    Grouping goes by when entries were first seen, so such an entry would count as
    news of today: a three-week-old article would join (and revive) today's story of
    the same subject, and a new feed's whole archive would pile into the current
    stories. It is kept out of the index instead, a story of its own (shown as a
    single entry, never as coverage), which also spares grouping the bulk of a first
    poll's work. So is an undated entry of a new source's first poll beyond its newest
    few (`catalogue`: its date is only when it was first seen).
    """
    return entry.catalogue or entry.published_at < entry.first_seen_at - window


def backlog_reason(entry: Entry, window: timedelta) -> str | None:
    """Why `entry` was kept out of grouping as old news (`is_backlog`), in words ("published
    40 days before it was first seen"); None when it was not."""
    if entry.catalogue:
        return "undated, from its source's first poll (back catalogue)"
    if not is_backlog(entry, window):
        return None
    days = counted((entry.first_seen_at - entry.published_at).days, "day")
    return f"published {days} before it was first seen"


def own_reports(entries: Sequence[Entry]) -> list[Entry]:
    """The entries, in order, that are not a copy at the same link of another of them
    (`Entry.duplicate_of`): a page that several feeds carry once, as a story counts its
    sources (`store.stories.own_report`); the first feed's entry names the others in
    `also_in`. Wire copy at each outlet's own address stays, one report per outlet."""
    links = {entry.id: entry.link for entry in entries}
    return [
        entry
        for entry in entries
        if entry.duplicate_of not in links or links[entry.duplicate_of] != entry.link
    ]


def heartbeat_is_fresh(last_tick_at: datetime, tick_seconds: float, now: datetime) -> bool:
    """Whether a heartbeat at `last_tick_at` of a worker ticking every `tick_seconds` is
    at most `HEARTBEAT_TICKS` ticks old at `now`."""
    return now - last_tick_at <= timedelta(seconds=HEARTBEAT_TICKS * tick_seconds)
