"""Normalisation of parsed entries: the pure functions shared by every parse path.

This module owns what an entry looks like once it leaves the parser: its stable key,
canonical link (absolute, tracking parameters removed), UTC dates clamped to the fetch
time, sanitised HTML with absolute http(s)/mailto URLs, plain-text title/summary/author,
tags, enclosures, lead image, language and the content hash that detects edits.

The parsers (feedparser path in `parse`, JSON Feed in `jsonfeed`, lxml in `fastparse`)
fill a `RawEntry` with what the document says; `normalise_entry` turns it into a
`models.EntryData`. Nothing here does I/O or keeps state.
"""

from __future__ import annotations

import calendar
import codecs
import functools
import hashlib
import html
import mimetypes
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3

from aggregator.models import Enclosure, EntryData, ParsedFeed
from aggregator.wording import ELLIPSIS, truncate_words

FEED_TITLE_MAX_CHARS = 300
MAX_FUTURE_SKEW = timedelta(minutes=10)
"""Clock skew we tolerate between a publisher and us; later dates are clamped to the
fetch time so a feed cannot pin its entries to the top of every list (R13)."""

MIN_PLAUSIBLE_DATE = datetime(1995, 1, 1, tzinfo=UTC)
"""No web feed predates 1995; earlier dates are epoch-0 or year-0 junk, treated as
unparseable (the store then uses the first-seen time)."""

SUMMARY_MAX_CHARS = 400
"""Length of the plain-text summary shown in lists and used for grouping."""

TITLE_MAX_CHARS = 1000
"""Bound on a title; real titles are far shorter, hostile ones may be megabytes."""

AUTHOR_MAX_CHARS = 200
"""Bound on an author name (RSS puts "email (name)" here; still short)."""
_EMAIL = r"[^\s@()<>]+@[^\s@()<>]+\.[^\s@()<>]+"
_AUTHOR_WITH_EMAIL = re.compile(
    rf"(?:{_EMAIL}\s*\((?P<after>[^()]+)\)|(?P<before>[^()<>]+?)\s*[(<]\s*{_EMAIL}\s*[)>])"
)
""""email (Name)" (RSS's author), "Name (email)" (feedparser's reading of an Atom author
with both) and "Name <email>"."""

TAG_MAX_CHARS = 100
"""Bound on one tag."""

MAX_TAGS = 50
"""Bound on the number of tags per entry; spam feeds list hundreds."""

PLACEHOLDER_TAGS = frozenset(
    {"uncategorized", "uncategorised", "non classé", "sin categoría", "senza categoria"}
    | {"sem categoria", "geen categorie", "bez kategorii", "okategoriserade", "без рубрики"}
    | {"ukategorisert", "ukategoriseret", "unkategorisiert"}
)
"""Case-folded names of the category WordPress gives a post filed under none (in the
languages it ships), left out of an entry's tags: they say nothing about the entry (75
entries of the real-world corpus carried "Uncategorized")."""

TAG_CACHE_SIZE = 4096
"""Tags whose plain text is cached (see `_tag_text`)."""

MAX_ENCLOSURES = 20
"""Bound on the number of enclosures per entry."""

KEY_MAX_CHARS = 512
"""Longer guids are hashed so the key fits an indexed column."""

SECONDS_PER_UPDATE_PERIOD = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 7 * 86400,
    "monthly": 30 * 86400,
    "yearly": 365 * 86400,
}
"""sy:updatePeriod values (RSS 1.0 syndication module) in seconds."""


TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "ref_src",
        "ref_url",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "yclid",
        "twclid",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "__s",
        "s_cid",
        "cmpid",
        "ncid",
        "ito",
        "spm",
        # web analytics of European and US publishers' feeds, seen in the real-world
        # corpus: Webtrekk/Mapp (heise), AT Internet (Le Monde), comScore (Daily Mail,
        # BBC), the New York Times' share and newsletter tags, MSN, Yahoo
        "wt_mc",
        "wt_zmc",
        "xtor",
        "at_medium",
        "at_campaign",
        "ns_mchannel",
        "ns_source",
        "ns_campaign",
        "ns_linkname",
        "ns_fee",
        "smid",
        "mwrsm",
        "emc",
        "ocid",
        "soc_src",
        "soc_trk",
        "sr_share",
    }
)
"""Query parameters that only identify a campaign or a click, never the article: removed
from links so that the same article has one canonical URL."""

TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")
"""Prefixes of tracking parameter families (Google Analytics, Piwik/Matomo)."""

_TRACKING_HINT = re.compile(
    "|".join(re.escape(name) for name in sorted((*TRACKING_PARAMS, *TRACKING_PREFIXES)))
)
"""Any tracking name anywhere in a lower-cased query: without one (and without `%`
escapes) no parameter can be a tracking one, so `strip_tracking` skips parsing."""

URL_SCHEMES = frozenset({"http", "https", "mailto"})
"""The only URL schemes that may appear in stored HTML (S6)."""

LINK_SCHEMES = frozenset({"http", "https"})
"""Schemes allowed for entry links, images and enclosures."""

LINK_REL = "noopener noreferrer nofollow"
"""rel added to every link in stored HTML: no opener access, no referrer, no SEO juice."""

ALLOWED_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "mark",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "time",
        "tr",
        "u",
        "ul",
        "var",
    }
)
"""Article markup we keep; everything else (script, iframe, form, base, meta, object,
embed, svg, math, style, ...) is dropped, keeping only its text."""

ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title", "hreflang"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "del": {"datetime"},
    "ins": {"datetime"},
    "time": {"datetime"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
}
"""Attributes we keep, per tag: no style, class, id or event handlers anywhere; no
`cite` either (nh3 checks the scheme of href and src only, and readers never see it)."""

CLEAN_CONTENT_TAGS = frozenset({"script", "style", "noscript", "template", "textarea"})
"""Tags dropped together with their text: what they contain is not prose."""

HTML_CLEANER_CACHE_SIZE = 1024
"""nh3 cleaners are cached per base URL (building one costs ~20 µs, a third of a
typical clean); a feed has one base or a handful (xml:base per entry)."""

MAX_NESTING = 1000
"""Elements open at once beyond which HTML is not given to nh3: its parse costs the
square of the nesting (1,000 nested divs 5 ms, 10,000 0.5 s, 100,000 over a minute of
CPU in a 500 KB feed), so such content is kept as its text instead. Real articles nest
a few dozen deep."""
NESTING_CHECK_TAGS = 2000
"""The nesting is estimated only in HTML with more `<` than this (too few tags to nest
deeper than `MAX_NESTING` otherwise)."""
NESTING_CHUNK_CHARS = 1024
"""The estimate counts tags in C per chunk of this many characters (`_may_nest_deeper`);
only when it exceeds `MAX_NESTING` are the tags read one by one (`nesting_depth`), a
Python step per tag: 45 ms for the six largest articles of the real-world corpus."""

SUMMARY_PREFIX_FACTOR = 8
"""`summary_of_html` reads this many times `SUMMARY_MAX_CHARS` of HTML: article markup
rarely has more than 8 characters of markup per character of text at its start; when
it does, the summary is merely shorter."""

SUMMARY_HEAD_CHARS = 3 * SUMMARY_MAX_CHARS
"""`summarise` and `summary_of_html` read this much of a longer value first: over the
real-world corpus the head decides 434 of the 1,179 summaries of HTML (the text cleaner
then reads a third of their prefix) and 327 of the 796 longer sanitised values."""

_TABLE_OR_TEMPLATE = re.compile("<(?:table|template)", re.IGNORECASE)
"""Start tags after which an HTML parser may place later text before earlier text."""
_WHITESPACE = re.compile(r"\s+")
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1b\x7f\ufdd0-\ufdef\ufffe\uffff]")
"""Removed from text: controls that are not whitespace (\\t \\n \\f \\r \\x1c-\\x1f are
`\\s`) and the noncharacters of the Basic Multilingual Plane, which pages must not hold."""
_NEEDS_CLEANER = re.compile("[<&\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Characters nh3 does more with than escape `>` and U+00A0: markup, references, CR
(newlines are normalised) and controls. Over the real-world corpus 4,972 of 8,452
sanitised values have none of them; skipping nh3 for those saves its fixed cost."""
_TEXT_NEEDS_CLEANER = re.compile("[\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""What nh3 changes in escaped plain text besides `&nbsp;`: CR and controls."""
_START_OR_END_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)[^>]*?(/?)>")
_ANY_TAG = re.compile(r"<[^>]*>")
_SELF_CLOSING = frozenset(
    "area base br col embed hr img input link meta param source track wbr "  # void
    "p li dt dd tr td th option optgroup rt rp tbody thead tfoot colgroup".split()
)  # and elements a sibling closes: they do not deepen the nesting the way a div does
_PARTIAL_TAIL = re.compile(r"<[^>]*\Z|&[#\w]*\Z")
_TAG = re.compile(r'<[^>"]*(?:"[^"]*"[^>"]*)*>')  # a tag of nh3's output (quoted attrs)
BLOCK_TAGS = frozenset(
    {"blockquote", "br", "caption", "dd", "details", "div", "dl", "dt", "figcaption"}
    | {"figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p", "pre"}
    | {"summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"}
)
"""Tags of `ALLOWED_TAGS` that start a block or break a line. Plain text reads a space
at each of them ("<p>One.</p><p>Two</p>": "One. Two") and nothing at the others
("<a>socialist</a>.": "socialist.")."""
_BLOCK_TAG = re.compile(
    "</?(?:" + "|".join(sorted(BLOCK_TAGS, key=len, reverse=True)) + r")\b[^>]*>"
)  # in nh3's output tags are lower case and `>` is escaped in attribute values
URL_ATTRIBUTES = frozenset({"href", "src"})
"""Attributes of `ALLOWED_ATTRIBUTES` that hold a URL."""

_EMPTY_VALUE = re.compile(r"""=(?<=[cCfF\s]=)\s*(?:(["'])\s*\1|(?=[\s>]))""")
"""An empty attribute value (`=""`, `=''`, `= >`) after a name that may be `src` or
`href` (its last letter, or a space, before the `=`); the name is checked separately:
a pattern starting with the literal `=` is scanned for that character, while the former
case-insensitive `href|src` alternation tried every position (0.28 s → 0.017 s over the
real-world corpus's 14 MB of HTML). The look-behind skips `alt=""`, `class=""` and the
like: 942 matches to check over the corpus instead of 4,262 (0.0102 → 0.0082 s)."""
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_PLAIN_HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:[/?#]|\Z)", re.IGNORECASE)
_IMG_SRC = re.compile(r'<img\b[^>]*?\ssrc="([^"]+)"')


@dataclass
class RawEntry:
    """What a parser read for one entry, before normalisation.

    Dates are aware datetimes (any zone) or None. HTML fields are untrusted HTML;
    `*_is_text` says a field is plain text (e.g. Atom type="text", JSON content_text).
    URLs (id, link, images, enclosures) are as the document gives them with xml:base
    applied; whatever is still relative is resolved against the feed URL. `base` is the
    xml:base in effect for the content (itself possibly relative to the feed URL).
    """

    id: str | None = None
    link: str | None = None
    title: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    author: str | None = None
    summary: str | None = None
    summary_is_text: bool = False
    content: str | None = None
    content_is_text: bool = False
    base: str | None = None  # xml:base in effect for the entry's content
    images: list[str] = field(default_factory=list)  # media:*, JSON image, in priority
    tags: list[str] = field(default_factory=list)
    enclosures: list[tuple[str, str | None, str | int | None]] = field(default_factory=list)
    language: str | None = None


def normalise_entry(
    raw: RawEntry, *, feed_url: str, feed_language: str | None, fetched_at: datetime
) -> EntryData | None:
    """Turn a parser's raw entry into a stored `EntryData`.

    Args:
        raw: What the parser read.
        feed_url: The URL the document came from; the last base for relative URLs.
        feed_language: The feed-level language, used when the entry declares none.
        fetched_at: When the document was fetched (aware); dates after it plus
            `MAX_FUTURE_SKEW` are clamped to it.

    Returns:
        The normalised entry, or None when the entry has no id, link or title at all.
    """
    if raw.summary and SYNDICATION_FOOTER in raw.summary:
        raw = replace(raw, summary=without_syndication_footer(raw.summary, raw.summary_is_text))
    base = absolute_url(raw.base, feed_url) or feed_url
    link = canonical_link(raw.link, feed_url)
    title = repaired_text(plain_title(raw.title, TITLE_MAX_CHARS))
    guid = (raw.id or "").strip()
    if not guid and link is None and not title:
        return None
    # dates as the feed gives them identify the entry and detect edits; the stored ones
    # are clamped to the fetch time (a date clamped at first sight stays first seen: the
    # store never moves a published date, and the hash does not change with the clock)
    published_given, updated_given = plausible_date(raw.published), plausible_date(raw.updated)
    published = clamp_date(published_given, fetched_at)
    updated = clamp_date(updated_given, fetched_at)
    content_html = _sanitised(raw.content, raw.content_is_text, base)
    if content_html and raw.summary:
        summary = _summary_beside_content(raw, content_html)
    else:
        if not content_html:  # the summary is all the content there is
            content_html = _sanitised(raw.summary, raw.summary_is_text, base)
        summary = summary_of_html(content_html)
    fields: dict[str, Any] = {
        "key": entry_key(guid, link, title, published_given or updated_given, content_html),
        "title": title,
        "link": link,
        "published_at": published or updated,
        "updated_at": updated or published,
        "author": author_name(repaired_text(plain_text(raw.author, AUTHOR_MAX_CHARS))) or None,
        "summary": repaired_text(summary),
        "content_html": content_html,
        "image_url": lead_image(raw, content_html, feed_url),
        "tags": normalise_tags(raw.tags),
        "enclosures": normalise_enclosures(raw.enclosures, feed_url),
        "language": normalise_language(raw.language) or normalise_language(feed_language),
    }
    hashed = fields
    if published is not published_given or updated is not updated_given:  # clamped
        hashed = {
            **fields,
            "published_at": published_given or updated_given,
            "updated_at": updated_given or published_given,
        }
    return EntryData(**fields, content_hash=_hash_fields(hashed))


CONTINUATION_CHARS = frozenset(
    "".join(map(chr, range(0x80, 0xA0)))
    + "".join(map(chr, range(0xA1, 0xC0)))
    + "\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014"
    + "\u2018\u2019\u201a\u201c\u201d\u201e\u2020\u2021\u2022\u2026\u2030\u2039\u203a"
    + "\u20ac\u2122"
)
"""A byte 0x80-0xBF (a UTF-8 continuation byte) read as cp1252 or Latin-1, but 0xA0 (a
no-break space, which legitimate text is full of)."""
_LEAD_PAIR = re.compile(
    "[\u00c2-\u00f4][" + re.escape("\u00a0" + "".join(sorted(CONTINUATION_CHARS))) + "]"
)


def encoded_twice(text: str) -> bool:
    """Whether `text` holds UTF-8 read as cp1252 or Latin-1 ("â€™" for "’", "Ã©" for "é",
    "Ð¯Ð½" for "Ян"): the character of a lead byte followed by those of as many
    continuation bytes as it needs ("café…" and "Klášterec" have one too few). The
    pair is found by one character-class search; the rest is read only at a pair."""
    for match in _LEAD_PAIR.finditer(text):
        lead, first = match[0][0], match[0][1]
        if first == ELLIPSIS and match.end() == len(text):
            continue  # the mark of a cut text: "groß…" is German
        if first == "\xa0":  # "Â\xa0" (a no-break space), "Ã\xa0" ("à")
            if lead in "\u00c2\u00c3":
                return True
            continue
        more = 0 if lead <= "\u00df" else 1 if lead <= "\u00ef" else 2
        rest = text[match.end() : match.end() + more]
        if len(rest) == more and all(char in CONTINUATION_CHARS for char in rest):
            return True
    return False


def _c1_as_bytes(error: UnicodeError) -> tuple[bytes, int]:
    """Encoding error handler: C1 controls (U+0080-U+009F) as their Latin-1 bytes, the
    bytes cp1252 lacks (0x81, 0x8D, 0x8F, 0x90, 0x9D) that a Latin-1 reading kept."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    chunk = error.object[error.start : error.end]
    if not all("\x80" <= char <= "\x9f" for char in chunk):
        raise error
    return chunk.encode("latin-1"), error.end


_LEAD_SPACE = re.compile("([\u00c2\u00c3\u00ce\u00d0]) ")


def _with_no_break_spaces(text: str) -> str:
    """Mojibake whose no-break spaces collapsing whitespace made spaces: "Â\xa0" (a
    no-break space, C2 A0), "Î\xa0" ("Π", CE A0) and "Ð\xa0" ("Р", D0 A0) had become
    "Â ", "Î ", "Ð "; "Ã\xa0" ("à") too, mostly followed by a space it merged with.
    Only these leads: "É " ends French words in capitals ("CAFÉ OK")."""
    return _LEAD_SPACE.sub(lambda m: m[1] + ("\xa0 " if m[1] == "\u00c3" else "\xa0"), text)


C1_AS_BYTES = "aggregator.c1-as-bytes"
codecs.register_error(C1_AS_BYTES, _c1_as_bytes)


def author_name(author: str) -> str:
    """The name of an author field that also gives an email address ("Anthony
    (noreply@blogger.com)", "redaktion@derStandard.at (derStandard.at Redaktion)"), the
    field as given otherwise (a bare address is all there is to show)."""
    match = _AUTHOR_WITH_EMAIL.fullmatch(author)
    if match is None:
        return author
    return (match["after"] or match["before"]).strip() or author


def repaired_text(text: str) -> str:
    """Plain text with UTF-8 mojibake repaired by ftfy, which changes only what it is
    sure was mis-decoded. A publisher that encodes its UTF-8 text twice shows "Razerâ€™s"
    for "Razer’s" (28 feeds of the real-world corpus, all saved by one project, 182
    entries); 1 feed in Cyrillic ("Ð¯Ð½Ð´ÐµÐºÑ\x81" for "Яндекс", with C1 controls for
    the bytes cp1252 lacks). A clean text costs an ASCII check, or one search for a lead
    character followed by a continuation one. A text that is mojibake through and
    through is undone by encoding it back (what ftfy gives, for all of the corpus's
    such texts, 120 times faster); the rest goes to ftfy, imported on first use."""
    if text.isascii() or not encoded_twice(text):
        return text
    # the whole text encoded twice (but the ellipsis of a cut summary, and the part of a
    # character before the cut): undone in C
    cut = text.endswith(ELLIPSIS)
    body, tail = (text[:-1], ELLIPSIS) if cut else (text, "")
    for candidate in (body, _with_no_break_spaces(body)):  # no-break spaces only if needed
        repaired = _undone(candidate, cut)
        if repaired is not None:
            return repaired + tail
    from ftfy import fix_encoding  # mixed with clean text: ftfy decides

    return fix_encoding(text)


CUT_EVIDENCE = 3
"""Characters a cut text must have repaired before the cut for the part of a character
at the cut to be dropped: "Ð" at the end of a cut Russian text is half of a letter;
"é" at the end of "Ã© café" is a letter."""


def _undone(text: str, cut: bool) -> str | None:
    """`text` encoded as cp1252 (C1 controls as their bytes) and decoded as UTF-8; of a
    `cut` text, the part of a character at its end dropped when what comes before is
    clearly text encoded twice; None when it does not decode."""
    try:
        data = text.encode("cp1252", C1_AS_BYTES)
    except UnicodeError:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        if not cut or error.reason != "unexpected end of data":
            return None
        head = data[: error.start].decode("utf-8")
        repaired = sum(1 for char in head if not char.isascii())
        return head if repaired >= CUT_EVIDENCE else None


SYNDICATION_FOOTER = "appeared first on"
_FOOTER_HTML = re.compile(
    r"(?:<p>\s*)?The post <a\b[^>]*>[^<]*</a> appeared first on <a\b[^>]*>[^<]*</a>\.?"
    r"\s*(?:</p>)?\s*\Z"
)
_FOOTER_TEXT = re.compile(
    r"\s*The post (?:(?!The post ).){1,300}? appeared first on [^.]{1,200}\.?\s*\Z"
)
FOOTER_SEARCH_CHARS = 2000
"""How far from the end of a summary the footer is looked for."""


def without_syndication_footer(value: str, is_text: bool) -> str:
    """`value` without the "The post <title> appeared first on <site>." line that
    WordPress (the Yoast SEO plugin) appends to every item's description. In a summary
    it is noise, and since it names the site it gave all of a blog's entries a shared
    word for story grouping."""
    head = max(0, len(value) - FOOTER_SEARCH_CHARS)
    match = (_FOOTER_TEXT if is_text else _FOOTER_HTML).search(value, head)
    return value[: match.start()].rstrip() if match else value


def _summary_beside_content(raw: RawEntry, content_html: str) -> str:
    """The plain-text summary of an entry with content: `summarise` of its summary.

    When the summary is the content itself (both parse paths copy the content to a
    missing summary) and no longer than the prefix `summarise` reads, its text is read
    off the sanitised content instead of cleaning the HTML a second time: nh3's
    text-only cleaner and the full cleaner give the same `text_of_markup` (both unwrap
    what they do not keep and drop the same elements with their content; tested over
    random HTML)."""
    summary = raw.summary or ""
    if (
        summary == raw.content
        and not raw.summary_is_text
        and not raw.content_is_text
        and "<" in summary
        and len(summary) <= SUMMARY_MAX_CHARS * SUMMARY_PREFIX_FACTOR
    ):
        text = html.unescape(text_of_markup(content_html))
        return collapse_and_truncate(text, SUMMARY_MAX_CHARS)
    return summarise(summary, is_text=raw.summary_is_text)


def entry_key(
    guid: str | None, link: str | None, title: str, date: datetime | None, content: str
) -> str:
    """The stable key of an entry within its feed.

    The guid/id when the feed gives one (hashed to `sha256:<hex>` beyond
    `KEY_MAX_CHARS`), else the canonical link, else `sha256:<hex>` of the title, the
    date (ISO 8601 UTC, or empty) and the sanitised content, joined by NUL bytes.
    """
    guid = (guid or "").strip()
    if guid:
        return guid if len(guid) <= KEY_MAX_CHARS else _sha256_key(guid)
    if link:
        return link if len(link) <= KEY_MAX_CHARS else _sha256_key(link)
    stamp = date.isoformat() if date else ""
    return _sha256_key("\0".join((title, stamp, content)))


def _sha256_key(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def content_hash(entry: EntryData) -> str:
    """sha256 over the reader-visible fields, so an edited entry is detected. (An
    entry's stored hash takes a date clamped to the fetch time as the feed gave it.)"""
    return _hash_fields({name: getattr(entry, name) for name in EntryData.__dataclass_fields__})


def _hash_fields(fields: Mapping[str, Any]) -> str:
    """sha256 of the reader-visible fields as UTF-8, joined by NUL bytes (NUL cannot
    occur in XML text, so it separates them unambiguously)."""
    published, updated = fields["published_at"], fields["updated_at"]
    enclosures: tuple[Enclosure, ...] = fields["enclosures"]
    published_text = published.isoformat() if published else ""
    # `normalise_entry` gives both fields one object when the entry has one date
    if updated is published:
        updated_text = published_text
    else:
        updated_text = updated.isoformat() if updated else ""
    # the content, by far the largest part, is hashed on its own (joining it to the
    # rest would copy it, and widen the whole text to its widest character); the small
    # fields before and after it are joined, each side one encode and one update
    head = "\0".join((fields["title"], fields["link"] or "", fields["summary"], ""))
    tail = "\0".join(
        (
            "",
            published_text,
            updated_text,
            fields["author"] or "",
            fields["image_url"] or "",
            "\x1f".join(fields["tags"]),
            _enclosures_text(enclosures) if enclosures else "",
        )
    )
    digest = hashlib.sha256(head.encode("utf-8", "surrogatepass"))
    digest.update(fields["content_html"].encode("utf-8", "surrogatepass"))
    digest.update(tail.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _enclosures_text(enclosures: tuple[Enclosure, ...]) -> str:
    return "\x1f".join(f"{e.url} {e.type or ''} {e.length or ''}" for e in enclosures)


def _rekey_by_content(entry: EntryData) -> EntryData:  # rare: a shared link
    date = entry.published_at or entry.updated_at
    return replace(entry, key=entry_key(None, None, entry.title, date, entry.content_html))


# --- dates -------------------------------------------------------------------------


def struct_to_datetime(value: time.struct_time | None) -> datetime | None:
    """A feedparser `*_parsed` value (a UTC struct_time) as an aware UTC datetime."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def parse_date_text(text: str | None) -> datetime | None:
    """Parse an RFC 3339 / ISO 8601 or RFC 822 date; None when it cannot be read.

    A date without a zone is taken as UTC, as feedparser does.
    """
    if not text or not text.strip():
        return None
    text = text.strip()
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def clamp_date(value: datetime | None, fetched_at: datetime) -> datetime | None:
    """A `plausible_date`, or `fetched_at` when it is more than `MAX_FUTURE_SKEW` after it."""
    if value is not None and value > fetched_at + MAX_FUTURE_SKEW:
        return fetched_at.astimezone(UTC)
    return value


def plausible_date(value: datetime | None) -> datetime | None:
    """Aware UTC date (naive ones taken as UTC); None for junk and dates before
    `MIN_PLAUSIBLE_DATE`."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    if value < MIN_PLAUSIBLE_DATE:
        return None
    return value


# --- URLs ----------------------------------------------------------------------------


def absolute_url(
    url: str | None, base: str | None, schemes: Iterable[str] = LINK_SCHEMES
) -> str | None:
    """`url` resolved against `base`; None when empty, malformed or of another scheme."""
    if not url:
        return None
    url = url.strip()
    if not url:
        return None
    if _PLAIN_HTTP_URL.match(url) and not _UNSAFE_URL_CHARS.search(url):
        return url  # the common case, without urlsplit's cost
    try:
        absolute = url.startswith(("http://", "https://")) and not _UNSAFE_URL_CHARS.search(url)
        resolved = urljoin(base, url) if base and not absolute else url
        parts = urlsplit(resolved)
    except ValueError:
        return None
    if parts.scheme.lower() not in schemes:
        return None
    if parts.scheme.lower() in LINK_SCHEMES and not parts.netloc:
        return None
    return resolved


def strip_tracking(url: str) -> str:
    """`url` without tracking query parameters (`TRACKING_PARAMS`, `TRACKING_PREFIXES`)."""
    query = url.partition("?")[2]
    if not query:
        return url
    if "%" not in query and not _TRACKING_HINT.search(query.lower()):
        return url  # no key could decode to a tracking parameter
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not _is_tracking(k)]
    if len(kept) == len(pairs):
        return url
    return urlunsplit(parts._replace(query=urlencode(kept)))


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def canonical_link(url: str | None, base: str | None) -> str | None:
    """The entry link made absolute (http/https only) and stripped of tracking."""
    resolved = absolute_url(url, base)
    return strip_tracking(resolved) if resolved else None


# --- text and HTML -------------------------------------------------------------------


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (including newlines) as single spaces, trimmed; control
    characters (which XML output could not carry) removed, as lxml's recovering
    parser removes them (`isprintable` spares most titles that pass)."""
    if not text.isprintable():  # also for every newline or tab
        if "\x0b" not in text:  # the one control character that is also whitespace
            joined = " ".join(text.split())
            if joined.isprintable():  # so no control character: nothing to remove
                return joined
        text = _CONTROL_CHARS.sub("", text)
    # str.split() and the pattern `\s` share one whitespace class (str.isspace), so
    # this equals `_WHITESPACE.sub(" ", text).strip()` (checked over every code point
    # in tests), at a third of the cost
    return " ".join(text.split())


def _text_of_html(value: str) -> str:
    """The text of HTML, entities decoded (what `plain_text` reads of markup)."""
    return html.unescape(text_of_markup(_TEXT_CLEANER.clean(value)))


def plain_text(value: str | None, limit: int | None = None) -> str:
    """Plain text of an HTML-ish string: entities decoded, tags stripped, whitespace
    collapsed; cut to `limit` characters at a word boundary when given."""
    if not value:
        return ""
    if "<" in value:
        value = _text_of_html(value)
    elif "&" in value:
        value = html.unescape(value)  # entities only: what nh3 would decode
    return collapse_and_truncate(value, limit) if limit else collapse_whitespace(value)


def plain_title(value: str | None, limit: int) -> str:
    """`plain_text` of a title that is markup (`looks_like_markup`); of any other title,
    the text as written. A title is plain text in Atom (`type="text"`, the default),
    JSON Feed and most RSS, where "Vec<T> in Rust" or "Using the <details> element"
    mean what they say; feeds that do send HTML titles close their elements
    ("<i>Legend</i>", "1930ft<sup>2</sup>"). Entities are decoded (titles escaped twice,
    "AT&amp;amp;T", are common); what they decode to is text ("&lt;pre&gt;" shows
    "<pre>"), unless it would run or load something (`runs_or_loads`): then its tags go,
    as no stored title holds such markup."""
    if not value:
        return ""
    if "<" in value and looks_like_markup(value):
        text = _text_of_html(value)
        if "<" in text and runs_or_loads(text):  # an escaped "&lt;script&gt;" in it
            text = _text_of_html(text)
    else:
        text = html.unescape(value) if "&" in value else value
        if "<" in text and runs_or_loads(text):  # "&lt;script&gt;": never stored as is
            text = _text_of_html(text)
    return collapse_and_truncate(text, limit)


_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)")
_TITLE_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)([^<>]*)>")
HTML_ELEMENTS = (
    ALLOWED_TAGS
    | frozenset(nh3.ALLOWED_TAGS)
    | frozenset(
        "big blink body center font head html label main marquee nobr option picture section "
        "title".split()
    )
)
"""Element names that make a title HTML when closed, self-closed or given attributes."""
ACTIVE_ELEMENTS = frozenset(
    "applet audio base button dialog embed form frame frameset iframe image img input "
    "isindex keygen link math meta noembed noscript object plaintext script select "
    "source style svg template textarea video xmp".split()
)
"""Element names that make a title HTML wherever they appear: a title is never stored
with them (a reader that renders titles as HTML would run or load them)."""
VOID_ELEMENTS = frozenset({"br", "hr", "wbr"})


def looks_like_markup(text: str) -> bool:
    """Whether text holding "<" is HTML: it names an active element (script, img, svg,
    ...), opens a comment or declaration ("<!"), has a tag of any name with an
    attribute value ("<x onfocus=...>"), or a tag of an HTML element that is closed,
    self-closed, void or given attributes ("<i>Legend</i>", "30ft<sup>2</sup>", "<br/>",
    "<p class>"). A start tag alone is text ("Using the <details> element"), as is an
    unknown name ("<T>", "<T extends Base>")."""
    if runs_or_loads(text):
        return True
    for closing, name, rest in _TITLE_TAG.findall(text):
        name = name.lower()
        if name in HTML_ELEMENTS and (closing or rest.strip() or name in VOID_ELEMENTS):
            return True
    return False


def runs_or_loads(text: str) -> bool:
    """Whether text holding "<" has markup a reader rendering it as HTML would run, load
    or be disturbed by: an active element, a comment or declaration, a tag of any name
    with an attribute value (an event handler). No stored title holds any."""
    if "<!" in text:
        return True
    if not ACTIVE_ELEMENTS.isdisjoint(name.lower() for name in _TAG_NAME.findall(text)):
        return True
    return any("=" in rest for _, _, rest in _TITLE_TAG.findall(text))


def collapse_and_truncate(text: str, limit: int) -> str:
    """`truncate_words(collapse_whitespace(text), limit)`, collapsing only the first
    `2 * limit` characters when they give more than `limit`: collapsing a prefix gives
    a prefix of the whole result, and past `limit` the cut reads only its start."""
    if len(text) > 2 * limit:
        head = collapse_whitespace(text[: 2 * limit])
        if len(head) > limit:
            return truncate_words(head, limit)
    return truncate_words(collapse_whitespace(text), limit)


def summarise(value: str | None, *, is_text: bool = False) -> str:
    """Plain-text summary bounded to `SUMMARY_MAX_CHARS`.

    Only a prefix of `value` is read (see `SUMMARY_PREFIX_FACTOR`): a summary field can
    hold a whole article, and the cost of stripping it would be wasted. Of a longer
    prefix, a head is read first (see `_summary_of_head`)."""
    if not value:
        return ""
    value = value[: SUMMARY_MAX_CHARS * SUMMARY_PREFIX_FACTOR]
    if len(value) > SUMMARY_HEAD_CHARS:
        summary = _summary_of_head(value, is_text)
        if summary is not None:
            return summary
    if is_text:
        return collapse_and_truncate(value, SUMMARY_MAX_CHARS)
    return plain_text(value, SUMMARY_MAX_CHARS)


def _summary_of_head(value: str, is_text: bool) -> str | None:
    """`summarise`'s result from the head of `value` up to its last space within
    `SUMMARY_HEAD_CHARS`, or None when the head cannot decide it.

    The head's plain text is a prefix of the whole value's: a space ends any reference
    (for `html.unescape` and the HTML parser alike), and an HTML parser keeps text in
    document order, except that text may be moved before an open table (foster
    parenting) or aside into a template: heads holding either are not used. Text read
    after the head can only extend the head's last word, so when more than
    `SUMMARY_MAX_CHARS` characters precede that word, the summary is the same.
    """
    end = value.rfind(" ", 0, SUMMARY_HEAD_CHARS) + 1
    if not end:
        return None
    head = value[:end]
    if is_text:  # `summarise`'s three ways, each as it would read the whole value
        text = head
    elif "<" in value:
        if _TABLE_OR_TEMPLATE.search(head):
            return None
        text = _text_of_html(head)
    else:
        text = html.unescape(head) if "&" in head else head
    return _summary_if_decided(collapse_whitespace(text))


def _summary_if_decided(head_text: str) -> str | None:
    """The summary of a head's collapsed text when what follows the head cannot change
    it: more than `SUMMARY_MAX_CHARS` characters precede the head's last word (the only
    word later text could extend); None otherwise."""
    if head_text.rfind(" ") <= SUMMARY_MAX_CHARS:
        return None
    return truncate_words(head_text, SUMMARY_MAX_CHARS)


def _sanitised(value: str | None, is_text: bool, base: str) -> str:
    """`sanitise_html` of an entry's field, escaped first when it is plain text.

    Escaped text without CR or controls is what nh3 would output (plus U+00A0 as
    `&nbsp;`): nh3 decodes the escaped `&`, `<` and `>` and escapes them again
    (checked in tests for every code point)."""
    if not value or not value.strip():
        return ""
    if not is_text:
        return sanitise_html(value, base)
    escaped = html.escape(value, quote=False)
    if _TEXT_NEEDS_CLEANER.search(value):
        return sanitise_html(escaped, base)
    return escaped.replace("\xa0", "&nbsp;").strip()


def sanitise_html(value: str, base: str) -> str:
    """Sanitised HTML: allow-listed tags and attributes, URLs resolved against `base`
    and limited to http/https/mailto, `rel` forced on links, no style or handlers.

    nh3 resolves relative URLs against `base` (WHATWG rules) and then checks the scheme
    of the result; when `base` is not an absolute URL, relative URLs are dropped.
    """
    if not value or not value.strip():
        return ""
    if not _NEEDS_CLEANER.search(value):  # plain text: what nh3 would output
        return value.replace(">", "&gt;").replace("\xa0", "&nbsp;").strip()
    if value.count("<") > NESTING_CHECK_TAGS and _too_deep(value):
        return text_only(value)
    # the attribute filter costs a Python call per attribute: only when it may matter
    cleaner = _html_cleaner(base, _has_empty_url(value))
    cleaned: str = cleaner.clean(value).strip()
    return cleaned


def _too_deep(value: str) -> bool:
    return _may_nest_deeper(value, MAX_NESTING) and nesting_depth(value) > MAX_NESTING


def _may_nest_deeper(value: str, limit: int) -> bool:
    """Whether the tags opened and not yet closed at some chunk's end (`NESTING_CHUNK_CHARS`)
    exceed `limit`: an over-estimate (void elements and unclosed paragraphs count as
    open), so False is sure and True is checked by `nesting_depth`; a peak between two
    chunk ends is under-counted by at most a chunk's worth of start tags."""
    depth = 0
    for start in range(0, len(value), NESTING_CHUNK_CHARS):
        chunk = value[start : start + NESTING_CHUNK_CHARS]
        depth += chunk.count("<") - 2 * chunk.count("</") - chunk.count("/>")
        if depth > limit:
            return True
    return False


def nesting_depth(value: str) -> int:
    """How many elements the HTML holds open at most: start tags less end tags, leaving
    out void elements and those a sibling closes (`_SELF_CLOSING`); an estimate that
    errs deep on badly closed markup, which is what `MAX_NESTING` guards against."""
    depth = deepest = 0
    for match in _START_OR_END_TAG.finditer(value):
        closing, name, self_closing = match.groups()
        if self_closing or name.lower() in _SELF_CLOSING:
            continue
        if closing:
            depth = max(0, depth - 1)
        else:
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def text_only(value: str) -> str:
    """HTML reduced to its escaped text, each tag a space: the safe form of markup too
    deeply nested to sanitise (see `MAX_NESTING`)."""
    return html.escape(collapse_whitespace(html.unescape(_ANY_TAG.sub(" ", value))), quote=False)


def _has_empty_url(value: str, empty_value: re.Pattern[str] = _EMPTY_VALUE) -> bool:
    """Whether `value` may hold an empty href or src (then the attribute filter runs):
    an ``empty_value`` match after a name ending in "src" or equal to "href"."""
    for match in empty_value.finditer(value):
        end = match.start()
        while end and value[end - 1].isspace():
            end -= 1
        name = value[max(0, end - 4) : end].lower()
        if name.endswith("src") or name == "href":
            return True
    return False


def summary_of_html(sanitised: str) -> str:
    """The plain-text summary of HTML that `sanitise_html` produced.

    Cheaper than `summarise`: nh3's output is regular (tags closed, attributes
    double-quoted), so a pattern strips the tags; and only a prefix long enough for
    `SUMMARY_MAX_CHARS` of text is read, minus any tag or entity the cut splits. Of a
    longer value, a head is read first (see `_summary_of_sanitised_head`).
    """
    if len(sanitised) > SUMMARY_HEAD_CHARS:
        summary = _summary_of_sanitised_head(sanitised)
        if summary is not None:
            return summary
    head = sanitised[: SUMMARY_MAX_CHARS * SUMMARY_PREFIX_FACTOR]
    if len(head) < len(sanitised):
        head = cut_partial_tail(head)
    return collapse_and_truncate(html.unescape(text_of_markup(head)), SUMMARY_MAX_CHARS)


def _summary_of_sanitised_head(sanitised: str) -> str | None:
    """`summary_of_html`'s result from the head of `sanitised` up to its last `>` within
    `SUMMARY_HEAD_CHARS`, or None when the head cannot decide it.

    In nh3's output `<`, `>` and `&` are escaped in text and attribute values alike,
    and a reference is always complete, so a head ending at a `>` ends at the end of a
    tag: its stripped text is a prefix of the longer prefix's (whose text may extend
    only its last word). (Should a `>` be left in an attribute value, a head ending
    there would leave a `<` behind, and not be used.)
    """
    end = sanitised.rfind(">", 0, SUMMARY_HEAD_CHARS) + 1
    if not end:
        return None
    stripped = text_of_markup(sanitised[:end])
    if "<" in stripped:
        return None
    return _summary_if_decided(collapse_whitespace(html.unescape(stripped)))


def cut_partial_tail(head: str) -> str:
    """`head` without a tag or reference that the end cuts short: what
    `_PARTIAL_TAIL.sub("", head)` gives, found from the end instead of by trying the
    pattern at every `<` and `&` of the head."""
    lt = head.rfind("<")
    if lt != -1 and head.find(">", lt) == -1:  # an unclosed tag: cut at the first
        return head[: head.find("<", head.rfind(">") + 1)]  # `<` after the last `>`
    amp = head.rfind("&")
    if amp == -1:
        return head
    rest = head[amp + 1 :].replace("#", "").replace("_", "")
    # `\w` of a str pattern is str.isalnum() or "_"
    return head[:amp] if not rest or rest.isalnum() else head


def _drop_empty_urls(tag: str, attribute: str, value: str) -> str | None:
    """An empty href/src would be resolved to the base (the feed, not the article) and
    an empty <img src> would become the lead image: drop them.

    nh3 calls this before it resolves relative URLs; it must never raise (nh3 would
    report the error through `sys.unraisablehook` and drop the attribute).
    """
    return None if attribute in URL_ATTRIBUTES and not value.strip() else value


def _cleaner(base: str | None, drop_empty: bool) -> nh3.Cleaner:
    """A cleaner resolving relative URLs against `base`, or dropping them (None)."""
    common: dict[str, Any] = {
        "tags": set(ALLOWED_TAGS),
        "clean_content_tags": set(CLEAN_CONTENT_TAGS),
        "attributes": ALLOWED_ATTRIBUTES,
        "link_rel": LINK_REL,
        "url_schemes": set(URL_SCHEMES),
    }
    if drop_empty:
        common["attribute_filter"] = _drop_empty_urls
    if base is None:
        return nh3.Cleaner(**common, url_relative="deny")
    return nh3.Cleaner(**common, url_relative=("rewrite_with_base", base))


@functools.lru_cache(maxsize=HTML_CLEANER_CACHE_SIZE)
def _html_cleaner(base: str, drop_empty: bool) -> nh3.Cleaner:
    if absolute_url(base, None) is not None:
        try:
            return _cleaner(base, drop_empty)
        except ValueError:
            pass
    return _cleaner(None, True)  # no usable base: relative URLs are dropped


_TEXT_CLEANER = nh3.Cleaner(
    tags=set(BLOCK_TAGS), attributes={}, clean_content_tags=set(CLEAN_CONTENT_TAGS)
)
"""Reads HTML for its text: keeps only the block tags, which `text_of_markup` turns into
spaces; nh3 parses as the full cleaner does, so the text is the same as the sanitised
HTML's (tested)."""


def text_of_markup(cleaned: str) -> str:
    """The text of nh3's output, references not yet decoded: a space for each block tag
    (`BLOCK_TAGS`), nothing for the others."""
    return _TAG.sub("", _BLOCK_TAG.sub(" ", cleaned))


# --- images, tags, enclosures, language ---------------------------------------------


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")
"""File endings that make a Media RSS `media:content` an image when it names neither a
medium nor a type (The Guardian's feeds give only a URL and a width)."""


def is_image_media(url: str, medium: str | None, mime: str | None) -> bool:
    """Whether a `media:content` element is a picture: by its medium or type, or, when
    it gives neither, by the ending of its URL's path."""
    if medium or mime:
        return medium == "image" or (mime or "").lower().startswith("image/")
    path = url.split("?", 1)[0].split("#", 1)[0]
    return path.lower().endswith(IMAGE_EXTENSIONS)


def lead_image(raw: RawEntry, content_html: str, base: str) -> str | None:
    """The entry's picture: media/JSON image, an image enclosure, else the first <img>."""
    for candidate in raw.images:
        url = absolute_url(candidate, base)
        if url:
            return url
    for url, mime, _length in raw.enclosures:
        if mime and mime.lower().startswith("image/"):
            resolved = absolute_url(url, base)
            if resolved:
                return resolved
    match = _IMG_SRC.search(content_html)
    if match:
        return absolute_url(html.unescape(match.group(1)), base)
    return None


def normalise_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Categories as plain text, stripped, deduplicated case-insensitively, bounded."""
    if not tags:
        return ()
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        text, folded = _tag_text(tag)
        if text and folded not in seen and folded not in PLACEHOLDER_TAGS:
            seen.add(folded)
            out.append(text)
            if len(out) >= MAX_TAGS:
                break
    return tuple(out)


@functools.lru_cache(maxsize=TAG_CACHE_SIZE)
def _tag_text(tag: str) -> tuple[str, str]:
    """A tag's plain text and its case-folded form, cached: a feed repeats its tags
    from entry to entry (12,032 tags over the corpus, 2,489 distinct)."""
    text = plain_text(tag, TAG_MAX_CHARS)
    return text, text.casefold()


def _length(value: str | int | None) -> int | None:
    if isinstance(value, int):
        return value if value >= 0 else None
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() and len(text) < 19 else None


def normalise_enclosures(
    items: Sequence[tuple[str, str | None, str | int | None]], base: str
) -> tuple[Enclosure, ...]:
    """Enclosures with absolute http(s) URLs, lower-cased type (guessed from the URL when
    the feed gives none, or something that is not a media type), int length or None."""
    seen: set[str] = set()
    out: list[Enclosure] = []
    for url, mime, length in items:
        resolved = absolute_url(url, base)
        if not resolved or resolved in seen:
            continue
        seen.add(resolved)
        given = mime.split(";", 1)[0].strip().lower() if mime else ""  # no parameters
        kind = given if _MEDIA_TYPE.fullmatch(given) else _guessed_type(resolved)
        out.append(Enclosure(url=resolved, type=kind, length=_length(length)))
        if len(out) >= MAX_ENCLOSURES:
            break
    return tuple(out)


_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
"""A media type, type/subtype (RFC 6838 names), without parameters."""


EXTRA_MEDIA_TYPES = (
    ("audio/mp4", ".m4a"),  # podcasts' AAC episodes
    ("audio/ogg", ".ogg"),
    ("audio/ogg", ".oga"),
    ("audio/flac", ".flac"),
    ("video/mp4", ".m4v"),
    ("image/webp", ".webp"),
)
"""Enclosure file endings missing from Python's own media-type table."""


def _media_types() -> mimetypes.MimeTypes:
    """Python's own table only (the same on every machine, unlike the system's files),
    with `EXTRA_MEDIA_TYPES`."""
    table = mimetypes.MimeTypes()
    for kind, extension in EXTRA_MEDIA_TYPES:
        table.add_type(kind, extension)
    return table


_MIME_TYPES = _media_types()


def _guessed_type(url: str) -> str | None:
    """The media type an enclosure's file name says, for an enclosure that gives none
    ("image.jpg": image/jpeg, "episode.mp3": audio/mpeg): podcast clients and feed
    readers decide by it whether an enclosure is an episode to download or a picture."""
    kind, _ = _MIME_TYPES.guess_type(urlsplit(url).path)
    return kind


def normalise_language(value: str | None) -> str | None:
    """A language tag lower-cased with `-` separators ("en_US" → "en-us"); None if empty."""
    if not value:
        return None
    text = value.strip().replace("_", "-").lower()
    return text[:35] or None


def ttl_seconds(feed: Mapping[str, Any]) -> int | None:
    """RSS <ttl> (minutes), else sy:updatePeriod / sy:updateFrequency, in seconds."""
    ttl = _positive_int(feed.get("ttl"))
    if ttl is not None:
        return ttl * 60
    period = str(feed.get("sy_updateperiod") or "").strip().lower()
    if period not in SECONDS_PER_UPDATE_PERIOD:
        return None
    frequency = _positive_int(feed.get("sy_updatefrequency")) or 1
    return max(1, SECONDS_PER_UPDATE_PERIOD[period] // frequency)


def _positive_int(value: object) -> int | None:
    text = str(value).strip() if value is not None else ""
    if not text.isdigit() or len(text) > 9:
        return None
    number = int(text)
    return number if number > 0 else None


@dataclass(frozen=True)
class NormalisedEntries:
    entries: tuple[EntryData, ...]
    dropped: int  # not kept: no id, link or title; a repeated entry; over the cap
    repeated_guids: int  # kept under their link: their guid was an earlier entry's


def normalise_entries(
    raws: Iterable[RawEntry],
    *,
    feed_url: str,
    feed_language: str | None,
    fetched_at: datetime,
    max_entries: int,
) -> NormalisedEntries:
    """Normalise a document's entries in order, keeping at most `max_entries`.

    Entries with no id, link or title, entries repeating an earlier entry (same key and
    link: the store upserts by key, the first occurrence wins) and entries beyond the
    cap are counted, not kept; beyond the cap they are not even normalised. An entry
    whose guid an earlier entry with another link already used is kept, keyed by its
    link, and counted in `repeated_guids` (the feed then identifies entries by link,
    see `identity.py`). An entry without a guid whose link an earlier entry already
    uses (some feeds point every item at one news page) is keyed by its content hash
    instead, as if it had no link.
    """
    kept: list[EntryData] = []
    links_by_key: dict[str, str | None] = {}
    dropped = repeated = 0
    for raw in raws:
        if len(kept) >= max_entries:
            dropped += 1
            continue
        entry = normalise_entry(
            raw, feed_url=feed_url, feed_language=feed_language, fetched_at=fetched_at
        )
        if entry is not None and entry.key in links_by_key:
            if not (raw.id or "").strip():
                entry = _rekey_by_content(entry)
            elif entry.link and entry.link != links_by_key[entry.key]:
                entry = replace(entry, key=entry_key(None, entry.link, "", None, ""))
                repeated += 1
        if entry is None or entry.key in links_by_key:
            dropped += 1
            continue
        links_by_key[entry.key] = entry.link
        kept.append(entry)
    return NormalisedEntries(tuple(kept), dropped, repeated)


def normalised_feed(
    raws: Iterable[RawEntry],
    *,
    format: str,
    title: str | None,
    link: str | None,
    language: str | None,
    feed_url: str,
    fetched_at: datetime,
    max_entries: int,
    ttl_seconds: int | None = None,
    warning: str | None = None,
    skipped: int = 0,
) -> ParsedFeed:
    """A document's `ParsedFeed`, whichever reader (lxml, feedparser, JSON) got its raw
    values: the feed's title as bounded plain text, its link absolute, its language
    normalised, its entries normalised; `skipped` entries were cut before reading."""
    feed_language = normalise_language(language)
    normalised = normalise_entries(
        raws,
        feed_url=feed_url,
        feed_language=feed_language,
        fetched_at=fetched_at,
        max_entries=max_entries,
    )
    return ParsedFeed(
        format=format,
        title=repaired_text(plain_title(title, FEED_TITLE_MAX_CHARS)) or None,
        link=absolute_url(link, feed_url),
        language=feed_language,
        entries=normalised.entries,
        repeated_guids=normalised.repeated_guids,
        ttl_seconds=ttl_seconds,
        warning=warning,
        dropped=normalised.dropped + skipped,
    )
