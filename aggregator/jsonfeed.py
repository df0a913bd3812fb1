"""JSON Feed 1.0 and 1.1 reader (https://jsonfeed.org/version/1.1).

This module owns turning a JSON Feed document into `RawEntry` values and feed-level
metadata; feedparser cannot read JSON Feed. Normalisation is `normalise`'s job; the
entry cap and the `ParsedFeed` assembly are `parse`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aggregator.normalise import RawEntry, parse_date_text

VERSION_PREFIX = "https://jsonfeed.org/version/"
"""Every JSON Feed declares its version as a URL with this prefix (1.0 used http://)."""

FORMAT_BY_VERSION = {"1": "json10", "1.0": "json10", "1.1": "json11"}
"""`ParsedFeed.format` for each declared version."""


class JsonFeedError(ValueError):
    """The JSON document is not a JSON Feed."""


@dataclass
class JsonFeed:
    """A JSON Feed as read, before normalisation."""

    format: str
    title: str | None
    link: str | None
    language: str | None
    items: list[RawEntry]


def read_json_feed(data: bytes) -> JsonFeed:
    """Read a JSON Feed document.

    Args:
        data: The document's bytes (UTF-8, with or without BOM; UTF-16/32 detected).

    Returns:
        The feed-level fields and one `RawEntry` per item, in document order.

    Raises:
        JsonFeedError: The bytes are not JSON, or the JSON is not a JSON Feed.
    """
    try:
        doc = json.loads(data)  # detects UTF-8 (with BOM), UTF-16 and UTF-32
    except (ValueError, RecursionError) as exc:
        raise JsonFeedError(f"not JSON ({type(exc).__name__})") from exc
    if not isinstance(doc, dict):
        raise JsonFeedError("JSON document is not an object")
    fmt = _format(doc)
    items = doc.get("items")
    if not isinstance(items, list):
        raise JsonFeedError("JSON Feed without an items list")
    return JsonFeed(
        format=fmt,
        title=_str(doc.get("title")),
        link=_str(doc.get("home_page_url")),
        language=_str(doc.get("language")),
        items=[
            _item(i, _author(doc), _str(doc.get("home_page_url")))
            for i in items
            if isinstance(i, dict)
        ],
    )


def _format(doc: dict[str, Any]) -> str:
    version = _str(doc.get("version")) or ""
    for prefix in (VERSION_PREFIX, VERSION_PREFIX.replace("https:", "http:")):
        if version.startswith(prefix):
            number = version[len(prefix) :].strip("/")
            if number in FORMAT_BY_VERSION:
                return FORMAT_BY_VERSION[number]
    if "items" in doc and ("title" in doc or "home_page_url" in doc):
        return "json"  # unversioned but clearly meant as a JSON Feed
    raise JsonFeedError("JSON document is not a JSON Feed (no version)")


def _str(value: object) -> str | None:
    """A scalar as a string (ids may be numbers); None for anything else or empty."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


def _item(item: dict[str, Any], feed_author: str | None, home_page: str | None) -> RawEntry:
    """One item; its author falls back to the feed's, as the specification says, and
    relative URLs in its HTML are read against the item's page (else the home page)."""
    content_html = _str(item.get("content_html"))
    content_text = _str(item.get("content_text"))
    return RawEntry(
        id=_str(item.get("id")),
        link=_str(item.get("url")) or _str(item.get("external_url")),
        title=_str(item.get("title")),
        published=parse_date_text(_str(item.get("date_published"))),
        updated=parse_date_text(_str(item.get("date_modified"))),
        author=_author(item) or feed_author,
        summary=_str(item.get("summary")),  # plain text by the spec; often HTML in fact
        content=content_html or content_text,
        content_is_text=content_html is None and content_text is not None,
        base=_str(item.get("url")) or home_page,  # relative URLs in content_html
        images=[u for u in (_str(item.get("image")), _str(item.get("banner_image"))) if u],
        tags=[t for t in (_str(x) for x in _list(item.get("tags"))) if t],
        enclosures=[_attachment(a) for a in _list(item.get("attachments")) if _url_of(a)],
        language=_str(item.get("language")),
    )


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _author(item: dict[str, Any]) -> str | None:
    """`authors` (1.1) names joined by commas, else the 1.0 `author` name."""
    authors = [a for a in _list(item.get("authors")) if isinstance(a, dict)]
    single = item.get("author")
    if not authors and isinstance(single, dict):
        authors = [single]
    names = [n for n in (_str(a.get("name")) for a in authors) if n]
    return ", ".join(names) or None


def _url_of(attachment: object) -> str | None:
    return _str(attachment.get("url")) if isinstance(attachment, dict) else None


def _attachment(attachment: dict[str, Any]) -> tuple[str, str | None, str | int | None]:
    size = attachment.get("size_in_bytes")
    length: str | int | None = (
        size if isinstance(size, int) and not isinstance(size, bool) else None
    )
    return (_url_of(attachment) or "", _str(attachment.get("mime_type")), length)
