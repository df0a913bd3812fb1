"""Merged feed output: stored entries → Atom 1.0 and RSS 2.0 bytes (feedgen). Pure: no
database, no web framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from feedgen.feed import FeedGenerator  # type: ignore[import-untyped]

from aggregator.models import Entry


@dataclass(frozen=True)
class FeedMeta:
    """What describes a merged feed."""

    title: str
    feed_id: str  # a stable URI identifying this feed (Atom id)
    self_url: str  # where this feed is served
    site_url: str  # the matching HTML page
    subtitle: str = "Merged news feed"
    updated: datetime | None = None


def render_atom(meta: FeedMeta, entries: Sequence[Entry]) -> bytes:
    """An Atom 1.0 document with `entries` (newest first)."""
    return _build(meta, entries).atom_str(pretty=True)  # type: ignore[no-any-return]


def render_rss(meta: FeedMeta, entries: Sequence[Entry]) -> bytes:
    """An RSS 2.0 document with `entries` (newest first)."""
    return _build(meta, entries).rss_str(pretty=True)  # type: ignore[no-any-return]


def entry_uri(entry: Entry) -> str:
    """A stable, globally unique id for an entry of a merged feed."""
    return f"tag:aggregator,2026:entry/{entry.id}"


def _build(meta: FeedMeta, entries: Sequence[Entry]) -> FeedGenerator:
    generator = FeedGenerator()
    generator.id(meta.feed_id)
    generator.title(meta.title)
    generator.subtitle(meta.subtitle)
    generator.link(href=meta.site_url, rel="alternate")
    generator.link(href=meta.self_url, rel="self")
    generator.language("en")
    generator.updated(meta.updated or _newest(entries))
    # feedgen prepends each added entry; add oldest first so the output is newest first.
    for entry in reversed(entries):
        _add_entry(generator, entry)
    return generator


def _newest(entries: Sequence[Entry]) -> datetime:
    return max((e.updated_at for e in entries), default=datetime(2000, 1, 1, tzinfo=UTC))


def _add_entry(generator: FeedGenerator, entry: Entry) -> None:
    item = generator.add_entry()
    item.id(entry_uri(entry))
    item.guid(entry_uri(entry), permalink=False)
    item.title(entry.title or "(untitled)")
    if entry.link:
        item.link(href=entry.link, rel="alternate")
    item.published(entry.published_at)
    item.updated(max(entry.updated_at, entry.published_at))
    if entry.author:
        item.author(name=entry.author)
    item.source(title=entry.feed_title, url=entry.feed_url)
    if entry.summary:
        item.summary(entry.summary)
    if entry.content_html:
        item.content(entry.content_html, type="html")
    for tag in entry.tags:
        item.category(term=tag)
    for enclosure in entry.enclosures[:1]:  # RSS allows one enclosure per item
        item.enclosure(enclosure.url, str(enclosure.length or 0), enclosure.type or "")
