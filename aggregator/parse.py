"""Feed document parsing: bytes in, a normalised `ParsedFeed` out.

This module owns the order of the parse step (DESIGN "One feed update", step 4):

1. the DTD guard refuses documents that declare entities (XXE, billion laughs,
   quadratic blowup, in any encoding) before any parser sees the bytes;
2. JSON Feed goes to `jsonfeed`;
3. XML goes to the lxml fast path (`fastparse`) and, whenever that path is in doubt,
   to feedparser — always given bytes, never a URL or a path, with its own
   sanitiser and URL resolution off (`normalise` does both). feedparser is not told
   the feed URL (no Content-Location): it would resolve RSS guids against it, making
   entry keys change when a feed moves; `normalise` resolves links against it instead;
4. entries are normalised and capped (`normalise.normalise_entries`).

Refused documents and documents that are not feeds raise `ParseError("parse: ...")`;
survivable problems (not well-formed XML, wrong charset) become `ParsedFeed.warning`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import partial
from typing import Any
from xml.sax import SAXException, SAXParseException
from xml.sax.handler import ContentHandler

import feedparser
from defusedxml import DefusedXmlException
from defusedxml.expatreader import DefusedExpatParser

from aggregator.exceptions import ParseError
from aggregator.fastparse import (
    ENTRY_END,
    RECOVERED_WARNING,
    last_entry_cut_short,
    parse_fast,
)
from aggregator.jsonfeed import JsonFeedError, read_json_feed
from aggregator.models import CUT_SHORT_WARNING, ParsedFeed
from aggregator.normalise import (
    RawEntry,
    absolute_url,
    is_image_media,
    normalised_feed,
    struct_to_datetime,
    ttl_seconds,
)

GUARD_CHUNK_BYTES = 64 * 1024
"""The DTD guard feeds expat this much at a time and stops at the root element, so it
reads only the prolog of a large document."""

WARNING_MAX_CHARS = 200
"""Bound on `ParsedFeed.warning`: it is shown in the feed's status line."""


IGNORED_BOZO: tuple[type[Exception], ...] = (feedparser.NonXMLContentType,)
"""Bozo reasons that are not worth a warning: feeds served as text/html or text/plain,
or without a Content-Type at all, are common and read fine."""

_ENTITY_DECLARATION = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_JSON_START = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*\{")


def parse_feed(
    data: bytes,
    *,
    url: str,
    content_type: str | None = None,
    fetched_at: datetime,
    max_entries: int = 500,
    fast: bool = True,
) -> ParsedFeed:
    """Parse and normalise a feed document.

    Args:
        data: The response body (decompressed).
        url: The URL the body came from: the base of relative links, never fetched.
        content_type: The response's Content-Type, if any.
        fetched_at: When the body was fetched (aware); later dates are clamped to it.
        max_entries: Entries kept at most, in document order; the rest count as dropped.
        fast: Try the lxml fast path first (off only to compare with feedparser).

    Returns:
        The feed with its normalised entries.

    Raises:
        ParseError: The document declares entities, or is not a feed (HTML page,
            empty body, JSON that is not a JSON Feed, ...).
    """
    if not data or data.isspace():  # `not data.strip()` without copying the document
        raise ParseError(url, "parse: empty document")
    if _looks_like_json(data, content_type):
        return _parse_json(data, url=url, fetched_at=fetched_at, max_entries=max_entries)
    if fast:  # it calls the guard itself, only on a document that has a DOCTYPE
        parsed = parse_fast(
            data,
            url=url,
            content_type=content_type,
            fetched_at=fetched_at,
            max_entries=max_entries,
            guard=partial(guard_entities, url=url),
        )
        if parsed is not None:
            return parsed
    guard_entities(data, url=url)
    return _parse_feedparser(
        data, url=url, content_type=content_type, fetched_at=fetched_at, max_entries=max_entries
    )


# --- DTD guard -----------------------------------------------------------------------


class _RootReached(Exception):
    """Raised by the guard's handler at the first element: the prolog is clean."""


class _StopAtRoot(ContentHandler):
    def startElement(self, name: str, attrs: Any) -> None:  # noqa: N802 (SAX API)
        raise _RootReached

    def startElementNS(self, name: Any, qname: Any, attrs: Any) -> None:  # noqa: N802
        raise _RootReached


def guard_entities(data: bytes, *, url: str) -> None:
    """Refuse a document that declares entities or references external ones.

    Expat (through defusedxml) reads the prolog and stops at the root element; plain
    DOCTYPEs pass. When expat cannot reach the root (the document is not well-formed
    there, or in an encoding expat does not know), a bytes-level search for
    `<!ENTITY` — NUL bytes removed so UTF-16/32 are covered, case-insensitive because
    feedparser's loose parser is — decides instead.

    Raises:
        ParseError: The document declares or references entities.
    """
    if _expat_reaches_root(data, url=url):
        return
    if _ENTITY_DECLARATION.search(data.replace(b"\x00", b"")):
        raise ParseError(url, "parse: refused: document declares entities")


class _GuardParser(DefusedExpatParser):  # type: ignore[misc]
    """defusedxml's expat reader that lets a DOCTYPE name an external DTD.

    Expat reports the external DTD subset of `<!DOCTYPE rss PUBLIC "..." "http://...">`
    as an external entity reference with no context. Nothing ever loads it (not expat
    here, not feedparser), so it is skipped; any other external reference — and any
    entity declaration at all — is still refused.
    """

    def defused_external_entity_ref_handler(
        self, context: str | None, base: str | None, sysid: str | None, pubid: str | None
    ) -> int:
        if context is None:
            return 1  # the external DTD subset: skipped, never fetched
        return int(super().defused_external_entity_ref_handler(context, base, sysid, pubid))


def _expat_reaches_root(data: bytes, *, url: str) -> bool:
    parser = _GuardParser(forbid_dtd=False, forbid_entities=True, forbid_external=True)
    parser.setContentHandler(_StopAtRoot())
    try:
        for start in range(0, len(data), GUARD_CHUNK_BYTES):
            parser.feed(data[start : start + GUARD_CHUNK_BYTES])
    except _RootReached:
        return True
    except DefusedXmlException as exc:
        raise ParseError(
            url, f"parse: refused: document declares entities ({type(exc).__name__})"
        ) from exc
    except (SAXException, LookupError, ValueError):
        return False
    return False


# --- JSON Feed -----------------------------------------------------------------------


def _looks_like_json(data: bytes, content_type: str | None) -> bool:
    if content_type and "json" in content_type.lower():
        return True
    return _JSON_START.match(data) is not None


def _parse_json(data: bytes, *, url: str, fetched_at: datetime, max_entries: int) -> ParsedFeed:
    try:
        doc = read_json_feed(data)
    except JsonFeedError as exc:
        raise ParseError(url, f"parse: {exc}") from exc
    return normalised_feed(
        doc.items,
        format=doc.format,
        title=doc.title,
        link=doc.link,
        language=doc.language,
        feed_url=url,
        fetched_at=fetched_at,
        max_entries=max_entries,
    )


# --- feedparser ----------------------------------------------------------------------


def _parse_feedparser(
    data: bytes,
    *,
    url: str,
    content_type: str | None,
    fetched_at: datetime,
    max_entries: int,
) -> ParsedFeed:
    data, skipped = cap_document(data, max_entries)
    headers = {"content-type": content_type} if content_type else {}
    try:
        result = feedparser.parse(
            data, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
        )
    except Exception as exc:  # feedparser on hostile input: one feed's problem only
        raise ParseError(url, f"parse: feedparser failed ({type(exc).__name__})") from exc
    feed = result.get("feed", {})
    raw_entries = result.get("entries", [])
    if not result.get("version") and not raw_entries:
        raise ParseError(url, "parse: not a feed" + _bozo_suffix(result))
    warning = bozo_warning(result)
    if warning and raw_entries and last_entry_cut_short(data):
        raw_entries, skipped = raw_entries[:-1], skipped + 1
        warning = f"{CUT_SHORT_WARNING}; {warning}"[:WARNING_MAX_CHARS]
    return normalised_feed(
        (_raw_from_feedparser(e) for e in raw_entries),
        format=result.get("version") or "unknown",
        title=feed.get("title"),
        link=feed.get("link"),
        language=feed.get("language") or _detail_language(feed, "title"),
        feed_url=url,
        fetched_at=fetched_at,
        max_entries=max_entries,
        ttl_seconds=ttl_seconds(feed),
        warning=warning,
        skipped=skipped,
    )


def cap_document(data: bytes, max_entries: int) -> tuple[bytes, int]:
    """Cut entries beyond `max_entries` out of the bytes before feedparser reads them.

    feedparser reads ~5,000 tiny items a second, so a 100k-item document would hold a
    worker for 20 s (R12). The entries between the `max_entries`-th closing
    `</item>`/`</entry>` and the last one are removed, keeping the document's tail
    (`</channel></rss>`, `</feed>`) so it stays well-formed. The closing tags are found
    by a byte pattern, so the count of skipped entries is approximate when a tag name
    appears literally inside CDATA; documents in UTF-16/32 are not cut.

    Returns:
        The (possibly) shortened document and the number of entries cut out.
    """
    ends = [m.end() for m in ENTRY_END.finditer(data)]
    if max_entries <= 0 or len(ends) <= max_entries:
        return data, 0
    return data[: ends[max_entries - 1]] + data[ends[-1] :], len(ends) - max_entries


def _bozo_suffix(result: Mapping[str, Any]) -> str:
    warning = bozo_warning(result)
    return f" ({warning})" if warning else ""


def bozo_warning(result: Mapping[str, Any]) -> str | None:
    """A short description of feedparser's bozo exception, or None: worded as the fast
    path words the same defects (the operator reads it in the feed's status), with the
    exception's name only for a kind not known here."""
    exc = result.get("bozo_exception")
    if not result.get("bozo") or isinstance(exc, IGNORED_BOZO):
        return None
    if isinstance(exc, SAXParseException):
        where = f"line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
        text = f"{RECOVERED_WARNING}: {exc.getMessage()}, {where}"
    elif isinstance(exc, feedparser.CharacterEncodingOverride):
        text = f"wrong encoding, recovered: {' '.join(str(exc).split())}"
    else:
        name = type(exc).__name__ if exc is not None else "bozo"
        detail = " ".join(str(exc).split()) if exc is not None else ""
        text = f"{name}: {detail}" if detail else name
    return text[:WARNING_MAX_CHARS]


def _detail_language(node: Mapping[str, Any], name: str) -> str | None:
    detail = node.get(f"{name}_detail")
    return detail.get("language") if detail else None


def _is_text(detail: Mapping[str, Any] | None) -> bool:
    return bool(detail) and detail.get("type") == "text/plain"  # type: ignore[union-attr]


def _raw_from_feedparser(entry: Mapping[str, Any]) -> RawEntry:
    contents = entry.get("content") or []
    content = contents[0] if contents else None
    summary_detail = entry.get("summary_detail")
    base = (content or summary_detail or {}).get("base")
    return RawEntry(
        id=entry.get("id"),
        link=_link(entry),
        title=entry.get("title"),
        published=struct_to_datetime(_struct(entry, "published_parsed")),
        updated=struct_to_datetime(_struct(entry, "updated_parsed")),
        author=entry.get("author"),
        summary=entry.get("summary"),
        summary_is_text=_is_text(summary_detail),
        content=content.get("value") if content else None,
        content_is_text=_is_text(content),
        base=base,
        images=list(_media_images(entry)),
        tags=[t.get("term") or t.get("label") or "" for t in entry.get("tags") or []],
        enclosures=[
            (e.get("href") or "", e.get("type"), e.get("length"))
            for e in entry.get("enclosures") or []
        ],
        language=_detail_language(entry, "title") or _detail_language(entry, "summary"),
    )


def _link(entry: Mapping[str, Any]) -> str | None:
    """The entry link; a link feedparser took from an RSS guid only if it is a URL."""
    link = entry.get("link")
    if link and entry.get("guidislink") and link == entry.get("id"):
        return link if absolute_url(link, None) else None
    return link if isinstance(link, str) else None


def _struct(entry: Mapping[str, Any], key: str) -> time.struct_time | None:
    # dict.get bypasses FeedParserDict's deprecated updated→published fallback
    value = dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)
    return value if isinstance(value, time.struct_time) else None


def _media_images(entry: Mapping[str, Any]) -> Iterator[str]:
    for thumb in entry.get("media_thumbnail") or []:
        if thumb.get("url"):
            yield thumb["url"]
    for media in entry.get("media_content") or []:
        url = media.get("url")
        if url and is_image_media(url, media.get("medium"), media.get("type")):
            yield url
    image = entry.get("image")  # itunes:image (feedparser sets no other entry image)
    if image and image.get("href"):
        yield image["href"]
