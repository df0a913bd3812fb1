"""The lxml fast path of `parse`: well-formed RSS 0.9x/2.0, Atom 1.0 and RSS 1.0 only.

This module owns reading those documents with lxml into the same `RawEntry` values the
feedparser path produces, many times faster. It follows feedparser 6's rules for the
fields we keep (which element wins, xml:base, guid-as-link, the UTF-8 and cp1252
repairs, date parsing) and returns None — "let feedparser do it" — whenever in doubt:
not well-formed, another format, a charset the HTTP header contradicts, an element in
an entry that feedparser maps onto one of our fields but this module does not model,
markup where text was expected, base64 content, an item outside its channel, ...

Element names are compared the way feedparser sees them: lower-cased, prefixed with
feedparser's prefix for known namespace URIs (`dc_creator`, `content_encoded`) or the
document's own prefix for unknown ones, bare for the RSS/Atom namespaces. Whether
feedparser has a handler for a name is asked of feedparser itself, so an element it
would read and we do not is always a reason to fall back.

feedparser's URL-joining and date helpers are reused (they are what makes the two
paths agree); if a feedparser upgrade removes them, the fast path switches itself off.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import Message
from html import escape, unescape
from typing import Any

from lxml import etree

from aggregator.models import CUT_SHORT_WARNING, ParsedFeed
from aggregator.normalise import (
    RawEntry,
    absolute_url,
    is_image_media,
    normalised_feed,
    struct_to_datetime,
    ttl_seconds,
)

try:  # feedparser internals, pinned by feedparser<7 in pyproject
    from feedparser.api import StrictFeedParser as _FeedparserClass
    from feedparser.datetimes import _parse_date as _feedparser_date
    from feedparser.datetimes.rfc822 import timezone_names as _RFC822_ZONES
    from feedparser.html import _cp1252 as _CP1252
    from feedparser.mixin import _FeedParserMixin as _Mixin
    from feedparser.urls import _urljoin as _feedparser_urljoin
    from feedparser.urls import make_safe_absolute_uri as _feedparser_safe_uri

    from aggregator import dates

    dates.register()  # localised RFC 822 dates, for both paths (feedparser's own parse too)
    _NAMESPACE_PREFIXES: dict[str, str] = {k.lower(): v for k, v in _Mixin.namespaces.items()}
    _looks_like_html: Callable[[str], bool] = _Mixin.looks_like_html
    AVAILABLE = True
except (ImportError, AttributeError):  # pragma: no cover - depends on feedparser
    AVAILABLE = False

"""Bound on a feed's title (same as `parse`)."""

ATOM = "http://www.w3.org/2005/Atom"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RSS10 = "http://purl.org/rss/1.0/"
RSS090 = "http://my.netscape.com/rdf/simple/0.9/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
XHTML = "http://www.w3.org/1999/xhtml"
XML_BASE = f"{{{XML_NS}}}base"
XML_LANG = f"{{{XML_NS}}}lang"

RSS09X_VERSIONS = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
"""feedparser's names for RSS 0.9x, which it reads with the RSS 2.0 element rules (only
Atom is read differently); a Netscape DOCTYPE, which it reports as rss091n, is left to
it."""

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain"}) | HTML_TYPES
"""Content types feedparser keeps as text; anything else it may base64-decode."""

PUBLISHED_NAMES = frozenset({"pubdate", "published", "issued", "dcterms_issued"})
UPDATED_NAMES = frozenset({"updated", "modified", "dc_date", "dcterms_modified"})
SUMMARY_NAMES = frozenset({"description", "summary", "itunes_summary"})
CONTENT_NAMES = frozenset({"content", "content_encoded"})
AUTHOR_TEXT_NAMES = frozenset({"dc_creator", "dc_author", "itunes_author"})
TITLE_NAMES = frozenset({"title", "dc_title"})
CATEGORY_NAMES = frozenset({"category", "dc_subject", "media_category"})
IGNORED_NAMES = frozenset(
    {
        "comments",
        "itunes_explicit",
        "itunes_subtitle",
        "itunes_block",
        "itunes_duration",
        "rights",
        "dc_rights",
        "dc_publisher",
        "copyright",
        "media_rating",
        "media_restriction",
        "media_license",
        "media_player",
        "media_credit",
        "media_text",
        "georss_point",
        "georss_line",
        "georss_polygon",
        "georss_box",
        "georss_where",
        "georss_elev",
        "georss_featurename",
        "georss_featuretypetag",
        "georss_relationshiptag",
        "psc_chapters",
        "expirationdate",
        "created",
        "dcterms_created",
        "contributor",
        "dc_contributor",
        "cc_license",
        "creativecommons_license",
        "newlocation",
        "source",
        "subtitle",
        "language",
        "dc_language",
    }
)
"""Entry elements feedparser reads into fields we do not use: skipped with their whole
subtree (Atom `source` holds its own title/id/link, which feedparser files apart)."""

NESTABLE_NAMES = CATEGORY_NAMES
"""Entry elements read the same inside an unknown element as directly in the entry."""

DEPTH_RULED_NAMES = frozenset({"title", "description", "image"})
"""Entry elements read inside an unknown element by their handlers with the deeper
depth (which title or summary wins depends on it, as in feedparser)."""

URL_NAMES = frozenset({"url", "uri", "homepage"})
"""Outside an author, feedparser files these under `href`, which we do not read."""

TITLE_RESET_NAMES = frozenset({"source"})
"""Elements after which feedparser lets a later title replace the first one."""

LEADING_SPACE_WARNING = "whitespace before the XML declaration (ignored)"
"""The one defect the fast path repairs: blank lines before `<?xml` make a document
not well-formed (feedparser then falls back to its slow loose parser), yet they change
nothing about its content. 20 of the 31 ill-formed snapshots have only this defect."""

RECOVERABLE_ERRORS = frozenset(
    {
        "ERR_INVALID_CHAR",  # a control character in text: dropped
        "ERR_UNDECLARED_ENTITY",  # an HTML entity such as &uuml;: kept as a node
    }
)
"""libxml2 errors after which lxml's recovering parser keeps the document's structure
and loses at most a control character; 6 of the 11 ill-formed real-world snapshots
have only these. Not among them: a bare "&" (recovery drops the text up to the next
delimiter, feedparser keeps it: see `_repair_ampersands` instead), encoding errors
(feedparser re-decodes the whole document with another charset), structural errors
(mismatched or unfinished tags, unfinished CDATA: what recovery keeps is a guess)."""

CUT_END_ERRORS = RECOVERABLE_ERRORS | {"ERR_TAG_NOT_FINISHED"}
"""What the head of a document cut short may hold besides `RECOVERABLE_ERRORS`: the
elements its end leaves open ("Premature end of data in tag channel"). The head ends
where the cut entry starts, so every entry in it is whole."""

RECOVERED_WARNING = "not well-formed XML, recovered"
"""How a note on a document read past its defects begins, on both parse paths (the
defect and where it is follow)."""

BARE_AMPERSAND_WARNING = 'not well-formed XML, repaired: bare "&" read as "&amp;"'
"""The warning of a document the fast path reads after `_repair_ampersands`."""

BARE_AMPERSAND_ERROR_CODES = frozenset(
    {etree.ErrorTypes.ERR_ENTITYREF_SEMICOL_MISSING, etree.ErrorTypes.ERR_NAME_REQUIRED}
)
"""The first errors of a document that `_repair_ampersands` may make well-formed: "&"
before a name with no ";" (`?a=1&b=2`), "&" before no name (`Q & A`)."""

WARNING_MAX_CHARS = 200
"""Bound on `ParsedFeed.warning` (same as `parse`)."""

ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s/>]")
ENTRY_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>")
_BARE_AMPERSAND = re.compile(
    rb"<!\[CDATA\[.*?\]\]>|<!--.*?-->|&(?!(?:[A-Za-z_:][\w.:-]*|#[0-9]+|#x[0-9A-Fa-f]+);)",
    re.DOTALL,
)
"""A CDATA section or comment (kept: "&" is literal there), or an "&" that starts no
character or entity reference."""
_LEADING_SPACE_BEFORE_DECLARATION = re.compile(rb"\s+<\?xml\s")
_LINK_ENTITY = re.compile(r"&([A-Za-z0-9_]+);")
_BASE_ATTRIBUTE = re.compile(rb"base\s*=")
"""What the bytes of an ASCII-compatible document hold wherever an attribute named
`base` or `xml:base` is (attribute names cannot be written with references); 114 of
the 259 real-world XML documents say "base" somewhere, 26 say it like this (see
`_says_base_attribute`)."""
_C1_CONTROLS = re.compile("[\x80-\x9f]")
_C1_CHARS = tuple(map(chr, range(0x80, 0xA0)))
"""The C1 controls one by one: over long text, 32 substring tests (each a vectorised
scan) cost a third of what the class pattern's search costs (the corpus has 11 MB of
non-ASCII text, nearly all without them); short text is searched with the pattern,
whose fixed cost is lower."""
C1_SEARCH_MAX_CHARS = 512


class _Doubt(Exception):
    """Raised anywhere in the fast path to fall back to feedparser; says why."""


def parse_fast(
    data: bytes,
    *,
    url: str,
    content_type: str | None = None,
    fetched_at: datetime,
    max_entries: int = 500,
    guard: Callable[[bytes], None] | None = None,
) -> ParsedFeed | None:
    """Parse a well-formed RSS 0.9x/2.0, Atom 1.0 or RSS 1.0 document with lxml.

    Args:
        data: The document (already past the DTD guard).
        url: The feed URL, the base of relative links.
        content_type: The response's Content-Type; a charset it names that differs
            from the document's own sends the document to feedparser.
        fetched_at: The fetch time, for date clamping.
        max_entries: Entries kept at most; the rest are counted as dropped.
        guard: Called with `data` (and may raise) before anything is read of a
            document that has a DOCTYPE or that the strict parse refuses: the entity
            guard (`parse.guard_entities`), which a document without a DOCTYPE cannot
            fail, as entities are declared only there. lxml itself never expands
            entities here (`resolve_entities=False`).

    Returns:
        The parsed feed, or None when feedparser should read the document instead.
    """
    try:
        return _parse(data, url, content_type, fetched_at, max_entries, guard)
    except _Doubt:
        return None


def refusal(data: bytes, *, content_type: str | None = None, max_entries: int = 500) -> str | None:
    """Why the fast path leaves `data` to feedparser (None: it does not); for `bench`.
    Reads the entries `parse_fast` would read with the same `max_entries`, not only
    the first: a doubt in a later entry counts."""
    try:
        now = datetime.now().astimezone()
        _parse(data, "https://example.invalid/", content_type, now, max_entries)
    except _Doubt as exc:
        return str(exc) or type(exc).__name__
    return None


def _parse(
    data: bytes,
    url: str,
    content_type: str | None,
    fetched_at: datetime,
    cap: int,
    guard: Callable[[bytes], None] | None = None,
) -> ParsedFeed:
    if not AVAILABLE:
        raise _Doubt("feedparser helpers unavailable")
    given = data
    warning = None
    strict = True
    cut = 0  # entries left out because the bytes cut them
    if _LEADING_SPACE_BEFORE_DECLARATION.match(data):
        data = data.lstrip()
        warning = LEADING_SPACE_WARNING
    try:
        root = etree.fromstring(data, _parser())
    except ValueError as exc:
        raise _Doubt("not well-formed") from exc
    except etree.XMLSyntaxError as exc:
        if guard is not None:
            guard(given)
        bare = exc.code in BARE_AMPERSAND_ERROR_CODES  # else no repair is worth trying
        repaired = _repair_ampersands(data) if bare else None
        head = _head_before_cut_entry(data) if repaired is None else None
        problem = " ".join(exc.msg.split())  # lxml's message may quote lines of the text
        if head is not None:  # cut short inside its last entry: read what precedes it
            root, strict, cut = _recover(head, CUT_END_ERRORS), False, 1
            warning = f"{CUT_SHORT_WARNING}; {RECOVERED_WARNING}: {problem}"
            warning = warning[:WARNING_MAX_CHARS]
        elif repaired is None:
            root, strict = _recover(data), False
            warning = f"{RECOVERED_WARNING}: {problem}"[:WARNING_MAX_CHARS]
        else:
            root, data = repaired
            warning = BARE_AMPERSAND_WARNING
    else:
        if guard is not None and _has_doctype(root):
            guard(given)
    if root is None:
        raise _Doubt("no root element")
    parsed = _read(
        root,
        data,
        url=url,
        content_type=content_type,
        fetched_at=fetched_at,
        cap=cap,
        strict=strict,
        cut=cut,
    )
    return replace(parsed, warning=warning) if warning else parsed


def _has_doctype(root: etree._Element) -> bool:
    docinfo = root.getroottree().docinfo
    return bool(docinfo.doctype) or docinfo.internalDTD is not None


def _parser(recover: bool = False) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=recover,
    )


def _repair_ampersands(data: bytes) -> tuple[etree._Element, bytes] | None:
    """The tree and bytes of `data` with each bare "&" (one that starts no reference:
    `?a=1&b=2` in a URL, `Q & A`) escaped, when that alone makes it well-formed.

    feedparser reads such a document with its loose parser; on the real-world corpus
    (theguardian: bare "&" in media URLs) that gives the same entries as the strict
    reading of the repaired document, which is what the fast path then does. Where
    they could differ, in text, the repair keeps "&" as written; the loose parser may
    turn `&name` into the reference `&name;`.
    """
    repaired = _BARE_AMPERSAND.sub(_escaped_ampersand, data)
    if repaired == data:
        return None
    try:
        return etree.fromstring(repaired, _parser()), repaired
    except (etree.XMLSyntaxError, ValueError):
        return None  # another defect too (or an encoding the bytes pattern cannot read)


def _escaped_ampersand(match: re.Match[bytes]) -> bytes:
    return b"&amp;" if match[0] == b"&" else match[0]  # CDATA and comments as they are


def last_entry_cut_short(data: bytes) -> bool:
    """Whether the document ends inside its last entry: no `</item>` or `</entry>`
    follows the last start tag of one (a body cut short by the server or a proxy).

    feedparser's loose parser still reads that entry, with its text cut wherever the
    bytes stopped: stored, it would replace the whole entry from an earlier fetch (an
    edit that is not one, and another when the next fetch has it whole again). For a
    document that is not well-formed only; byte patterns, so UTF-16/32 are not checked.
    """
    return _head_before_cut_entry(data) is not None


def _head_before_cut_entry(data: bytes) -> bytes | None:
    """The bytes before the start tag of the last entry when the document ends inside
    that entry (see `last_entry_cut_short`); None otherwise."""
    starts = [match.start() for match in ENTRY_START.finditer(data)]
    if not starts or ENTRY_END.search(data, starts[-1]) is not None:
        return None
    return data[: starts[-1]]


def _recover(data: bytes, allowed: frozenset[str] = RECOVERABLE_ERRORS) -> etree._Element:
    """The tree lxml recovers from a document with only local defects (see
    `RECOVERABLE_ERRORS`; `allowed` for the head of a document cut short, which ends
    inside open elements), when it holds as many entries as the bytes have entry start
    tags — so no entry was lost or split; any other case is a doubt. (The strict
    parse's `error.error_log` is not used: lxml carries earlier documents' errors in it.)"""
    parser = _parser(recover=True)
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise _Doubt("not well-formed, not recoverable") from exc
    if root is None or not all(entry.type_name in allowed for entry in parser.error_log):
        raise _Doubt("not well-formed")
    entries = sum(1 for _ in root.iter("{*}item", "{*}entry"))
    if entries != len(ENTRY_START.findall(data)):
        raise _Doubt("not well-formed, recovered entries differ from the bytes")
    return root


# --- document level -------------------------------------------------------------------


@dataclass
class _Context:
    """What the whole document decides about reading its text."""

    atom: bool  # feedparser guesses HTML in "plain text" only outside Atom
    strict: bool = True  # feedparser reads the document with its strict (SAX) parser
    names: dict[tuple[str | None, str], str] = field(default_factory=dict)  # fp names
    tag_names: dict[Any, str] = field(default_factory=dict)  # those not using the prefix
    bases: dict[etree._Element, str] | None = None  # None: no xml:base in the document

    def base(self, element: etree._Element) -> str:
        """feedparser's base URI while it reads `element` (see `_sequential_bases`)."""
        return self.bases.get(element, "") if self.bases is not None else ""


def _read(
    root: etree._Element,
    data: bytes,
    *,
    url: str,
    content_type: str | None,
    fetched_at: datetime,
    cap: int,
    strict: bool = True,
    cut: int = 0,
) -> ParsedFeed:
    encoding = _document_encoding(root)
    _check_charset(content_type, encoding)
    fmt, channel, items = _layout(root, data)
    ctx = _Context(atom=fmt == "atom10", strict=strict)
    ctx.bases = _sequential_bases(root, data, encoding)
    feed = _read_channel(ctx, root, channel)
    return normalised_feed(
        _entries(ctx, items, cap),
        format=fmt,
        title=feed.title,
        link=feed.link,
        language=feed.language,
        feed_url=url,
        fetched_at=fetched_at,
        max_entries=cap,
        ttl_seconds=feed.ttl_seconds,
        skipped=max(0, len(items) - cap) + cut,
    )


def _entries(ctx: _Context, items: list[etree._Element], cap: int) -> Iterator[RawEntry]:
    for item in items[:cap]:
        yield _read_entry(ctx, item)


def _document_encoding(root: etree._Element) -> str:
    declared = root.getroottree().docinfo.encoding or "utf-8"
    try:
        return codecs.lookup(declared).name
    except LookupError as exc:
        raise _Doubt("unknown encoding") from exc


def _check_charset(content_type: str | None, encoding: str) -> None:
    """feedparser lets an HTTP charset override the document's: leave that to it."""
    if not content_type:
        return
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    if not isinstance(charset, str):
        return
    try:
        same = codecs.lookup(charset).name == encoding
    except LookupError as exc:
        raise _Doubt("unknown HTTP charset") from exc
    if not same:
        raise _Doubt("HTTP charset differs from the document's")


def _layout(root: etree._Element, data: bytes) -> tuple[str, etree._Element, list[etree._Element]]:
    """The format, the channel-like element and the entries; doubt for anything else."""
    tag = root.tag
    namespace = ""
    if isinstance(tag, str) and tag.endswith("}rss"):  # RSS in a default namespace
        namespace = tag[1:-4]
        lowered = namespace.lower()
        userland_rss = "backend.userland.com/rss" in lowered  # feedparser: no prefix
        if not userland_rss and (lowered in _NAMESPACE_PREFIXES or "userland" in lowered):
            raise _Doubt("RSS in a namespace feedparser knows")
        if root.nsmap.get(None) != namespace or data.count(namespace.encode()) != 1:
            raise _Doubt("RSS namespace declared more than once or with a prefix")
        tag = "rss"  # feedparser reads it as plain RSS: the namespace has no prefix
    if tag == "rss":
        version = root.get("version") or ""
        fmt = "rss20" if version.startswith("2.") else RSS09X_VERSIONS.get(version)
        if fmt is None:
            raise _Doubt("RSS version other than 0.91-0.94 or 2.x")
        if "netscape" in (root.getroottree().docinfo.doctype or "").lower():
            raise _Doubt("Netscape DOCTYPE")  # feedparser calls that rss091n
        if not _VERSION_NAMESPACES.isdisjoint(str(uri).lower() for uri in root.nsmap.values()):
            raise _Doubt("RSS 1.0/0.90 namespace declared in RSS")  # may name the version
        prefix = f"{{{namespace}}}" if namespace else ""
        channels = list(root.iterchildren(f"{prefix}channel"))
        if len(channels) != 1:
            raise _Doubt("not exactly one channel")
        items = list(channels[0].iterchildren(f"{prefix}item"))  # matched in C
        _only_these(root, f"{prefix}item", items)
        return fmt, channels[0], items
    if tag == f"{{{ATOM}}}feed":
        entries = list(root.iterchildren(f"{{{ATOM}}}entry"))
        _only_these(root, f"{{{ATOM}}}entry", entries)
        return "atom10", root, entries
    if tag == f"{{{RDF}}}RDF" and _is_rss090(root, data):
        return _rdf(root, RSS090, "rss090", "RSS 0.90")
    if tag == f"{{{RDF}}}RDF":
        return _rdf(root, RSS10, "rss10", "RSS 1.0")
    raise _Doubt("not RSS 0.9x/2.0, Atom 1.0 or RSS 1.0")


def _rdf(
    root: etree._Element, namespace: str, fmt: str, name: str
) -> tuple[str, etree._Element, list[etree._Element]]:
    """The channel and items of an RDF-based feed (RSS 0.90 or 1.0): siblings of the
    root, in `namespace`."""
    channels = list(root.iterchildren(f"{{{namespace}}}channel"))
    if len(channels) != 1:
        raise _Doubt(f"not exactly one {name} channel")
    items = list(root.iterchildren(f"{{{namespace}}}item"))
    _only_these(root, f"{{{namespace}}}item", items)
    return fmt, channels[0], items


_VERSION_NAMESPACES = frozenset({RSS10, RSS090})
"""Namespaces an RSS document may declare that make feedparser name the version after
the first declaration (rss10, rss090). Only the root's declarations are checked (a
scan of the bytes cost 3 % of the fast path); a declaration further down still gets
the RSS version's name, the one thing it changes."""


def _is_rss090(root: etree._Element, data: bytes) -> bool:
    """RSS 0.90 as feedparser names it: its namespace the default one, and no RSS 1.0 or
    Atom namespace that could be declared first (the first of the three decides)."""
    if root.nsmap.get(None) != RSS090 or set(root.nsmap.values()) - {RDF, RSS090}:
        return False
    lowered = data.lower()
    return b"purl.org/rss/1.0" not in lowered and b"w3.org/2005/atom" not in lowered


def _only_these(root: etree._Element, tag: str, expected: list[etree._Element]) -> None:
    """feedparser reads items wherever they are: any item elsewhere is a doubt."""
    if sum(1 for _ in root.iter(tag, "item", "entry")) != len(expected):
        raise _Doubt("entries outside their channel")


def _sequential_bases(
    root: etree._Element, data: bytes, encoding: str
) -> dict[etree._Element, str] | None:
    """The base URI feedparser holds at each element, replaying its state machine.

    feedparser starts from "" (it is not told the feed URL), joins each xml:base onto
    the current base at a start tag, and at an end tag restores the parent's base only
    when that is non-empty — so a base can outlive its element and apply to later
    siblings. Replaying the same steps with its own join functions gives the same
    results. Documents without any xml:base skip this (the base is "" throughout).
    """
    if "base".encode(encoding) == b"base" and not _says_base_attribute(data):
        return None  # in an ASCII-compatible document, far cheaper than the tree search
    if root.get("base") is not None or root.find(".//*[@base]") is not None:
        raise _Doubt("a bare base attribute")
    if root.get(XML_BASE) is None and root.find(f".//*[@{XML_BASE}]") is None:
        return None
    bases: dict[etree._Element, str] = {}
    joined: dict[tuple[str, str], str] = {}  # most elements repeat their parent's join
    stack: list[str] = []
    current = ""
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            given = element.get(XML_BASE) or current
            key = (current, given)
            result = joined.get(key)
            if result is None:
                result = joined[key] = _join_base(current, given)
            current = result
            stack.append(current)
            bases[element] = current
        else:
            stack.pop()
            if stack and stack[-1]:
                current = stack[-1]
    return bases


def _says_base_attribute(data: bytes) -> bool:
    r"""Whether the bytes hold "base", optional space and "=" (`rb"base\s*="`).

    One pattern search: the former loop of `bytes.find(b"base")` with a check for "="
    after each hit ran fewer instructions under callgrind but took 1.8x the CPU time
    of the search over the corpus (0.0139 s against 0.0075 s)."""
    return _BASE_ATTRIBUTE.search(data) is not None


def _join_base(current: str, given: str) -> str:
    if current:
        return str(_feedparser_safe_uri(current, given) or current)
    return str(_feedparser_urljoin(current, given))


# --- names, text, URLs ------------------------------------------------------------------


def _fp_name(ctx: _Context, element: etree._Element) -> str:
    """The name feedparser dispatches on (`dc_creator`, `title`, `media_content`)."""
    tag = element.tag
    cached = ctx.tag_names.get(tag)  # the common case: the tag alone decides
    if cached is not None:
        return cached
    if not isinstance(tag, str):
        raise _Doubt("special node in an entry")
    key = (element.prefix, tag)
    cached = ctx.names.get(key)
    if cached is not None:
        return cached
    qname = etree.QName(tag)
    local = qname.localname.lower()
    namespace = (qname.namespace or "").lower()
    if "backend.userland.com/rss" in namespace:
        namespace = "http://backend.userland.com/rss"
    if not namespace or namespace in _NAMESPACE_PREFIXES:
        prefix = _NAMESPACE_PREFIXES[namespace] if namespace else None
        name = f"{prefix.lower()}_{local}" if prefix else local
        ctx.tag_names[tag] = name
        return name
    # an unknown namespace: feedparser uses the document's own prefix
    prefix = element.prefix
    name = f"{prefix.lower()}_{local}" if prefix else local
    ctx.names[key] = name
    return name


_HANDLED: dict[str, bool] = {}


def _has_handler(name: str) -> bool:
    """Whether feedparser has a handler for `name` (it then reads it into a field)."""
    known = _HANDLED.get(name)
    if known is None:
        known = hasattr(_FeedparserClass, f"_start_{name}") or hasattr(
            _FeedparserClass, f"_end_{name}"
        )
        _HANDLED[name] = known
    return known


def _text(ctx: _Context, element: etree._Element) -> str:
    """Element text as feedparser pops it: stripped, UTF-8 repaired, cp1252 mapped."""
    if len(element):
        return _repair(ctx, _text_with_entities(element).strip())
    text = (element.text or "").strip()
    return text if text.isascii() else _repair(ctx, text)  # most text: no call


def _text_with_entities(element: etree._Element) -> str:
    """Text holding references to undeclared entities (`&uuml;` in a recovered
    document), decoded as feedparser's loose parser decodes HTML entities."""
    parts = [element.text or ""]
    for child in element:
        if not isinstance(child, etree._Entity):
            raise _Doubt("markup where text was expected")
        parts.append(unescape(child.text or ""))
        parts.append(child.tail or "")
    return "".join(parts)


def _repair(ctx: _Context, text: str) -> str:
    """feedparser's two repairs: UTF-8 that was read as Latin-1 (it applies this to
    every document, having converted them all to UTF-8 first), and C1 controls that
    are really cp1252 characters."""
    if not text or text.isascii():
        return text
    try:
        text = text.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    if len(text) < C1_SEARCH_MAX_CHARS:
        if _C1_CONTROLS.search(text) is None:
            return text
    elif not any(c in text for c in _C1_CHARS):
        return text
    # what str.translate(_CP1252) gives (its keys are all C1), without a dict lookup
    # per character of the whole text
    return _C1_CONTROLS.sub(_cp1252_char, text)


def _cp1252_char(match: re.Match[str]) -> str:
    char = match[0]
    replacement: str = _CP1252.get(ord(char), char)
    return replacement


def _attrs(element: etree._Element) -> dict[str, str]:
    """Attributes as feedparser normalises them: names lower-cased (with feedparser's
    prefix for known namespaces), rel and type values lower-cased."""
    out: dict[str, str] = {}
    for key, value in element.items():
        name = _ATTRIBUTE_NAMES.get(key)
        if name is None:
            name = _attribute_name(str(key))
            if len(_ATTRIBUTE_NAMES) < ATTRIBUTE_NAME_CACHE_SIZE:
                _ATTRIBUTE_NAMES[key] = name
        out[name] = value.lower() if name in ("rel", "type") else value
    return out


ATTRIBUTE_NAME_CACHE_SIZE = 4096
_ATTRIBUTE_NAMES: dict[Any, str] = {}
"""Attribute names as feedparser spells them, by lxml's name (the real-world corpus has
a few dozen); bounded, as a hostile document may invent any number."""


def _attribute_name(key: str) -> str:
    if key.startswith("{"):
        namespace, _, local = key[1:].partition("}")
        if namespace == XML_NS:
            key = f"xml:{local}"
        else:
            prefix = _NAMESPACE_PREFIXES.get(namespace.lower(), "")
            key = f"{prefix}:{local}" if prefix else local
    return key.lower()


def _resolve(base: str, uri: str) -> str:
    """feedparser's `_urljoin`; with an empty base that only folds extra slashes after
    "scheme://", so the common case skips it."""
    if not base and ":///" not in uri:
        return uri
    return str(_feedparser_urljoin(base or "", uri))


def _lang_of(element: etree._Element) -> str | None:
    node: etree._Element | None = element
    while node is not None:
        lang = node.get(XML_LANG)
        if lang is not None:
            return lang.replace("_", "-") or None
        node = node.getparent()
    return None


def _href(attrs: dict[str, str]) -> str | None:
    """The href as feedparser's `_enforce_href` leaves it: url, uri or href when one is
    non-empty, else an empty href attribute ("" still counts), else None."""
    value = attrs.get("url", attrs.get("uri", attrs.get("href")))
    if value:
        return value
    return attrs.get("href")


def _map_type(kind: str) -> str:
    kind = kind.lower()
    if kind in ("text", "plain"):
        return "text/plain"
    if kind == "html":
        return "text/html"
    return "application/xhtml+xml" if kind == "xhtml" else kind


def _link_value(
    ctx: _Context, element: etree._Element, attrs: dict[str, str] | None = None
) -> str | None:
    """What a <link> sets as the link: an html alternate href, or its text; else None.
    `attrs`: the element's `_attrs`, when the caller has them."""
    base = ctx.base(element)
    if attrs is None:
        attrs = _attrs(element)
    href = _href(attrs)
    if href is not None:
        rel = attrs.get("rel", "alternate")
        kind = attrs.get("type", "application/atom+xml" if rel == "self" else "text/html")
        if rel == "alternate" and _map_type(kind) in HTML_TYPES:
            return _resolve(base, href)
        return None
    text = _text(ctx, element)
    if text:
        text = _resolve(base, text)
    # feedparser's repair of query strings read as entity references
    if "&" not in text:
        return text
    return _LINK_ENTITY.sub(r"&\g<1>", text.replace("&amp;", "&"))


# --- channel ---------------------------------------------------------------------------


@dataclass
class _Feed:
    title: str | None = None
    link: str | None = None
    language: str | None = None
    ttl_seconds: int | None = None


def _read_channel(ctx: _Context, root: etree._Element, channel: etree._Element) -> _Feed:
    feed = _Feed(language=_lang_of(root))
    title_lang: str | None = None
    hints: dict[str, str] = {}
    for child in channel:
        if len(child):
            continue
        name = _fp_name(ctx, child)
        if name in TITLE_NAMES and feed.title is None:
            feed.title = _text(ctx, child) or None
            title_lang = _lang_of(child)
        elif name == "link":
            link = _link_value(ctx, child)
            if link is not None:
                feed.link = link
        elif name in ("language", "dc_language"):
            feed.language = _text(ctx, child) or feed.language
        elif name in ("ttl", "sy_updateperiod", "sy_updatefrequency"):
            hints[name] = _text(ctx, child)
    feed.ttl_seconds = ttl_seconds(hints)
    feed.language = feed.language or title_lang
    return feed


# --- entries ----------------------------------------------------------------------------


class _EntryState:
    """One entry being read, with the bits of feedparser state that decide which
    element wins: a title or summary is replaced only by one at the same depth or
    shallower, the first non-empty title locks out later ones at its depth or deeper
    (until an image or source element resets that), and a second summary becomes
    content when there is no content yet.

    A slotted class with a plain `__init__`, not a dataclass: one is made per entry,
    and the dataclass's default factories cost twice as much."""

    __slots__ = (
        "raw",
        "link_set",
        "link_from_guid",
        "title_lock",
        "title_depth",
        "summary_set",
        "summary_depth",
        "has_content",
        "tags",
        "thumbs",
        "media",
        "image",
    )

    def __init__(self, raw: RawEntry) -> None:
        self.raw = raw
        self.link_set = False
        self.link_from_guid = False
        self.title_lock = -1  # feedparser's title_depth
        self.title_depth: int | None = None  # depth of the stored title
        self.summary_set = False
        self.summary_depth: int | None = None  # None also when copied from content
        self.has_content = False
        self.tags: list[tuple[str | None, str | None, str | None]] = []
        self.thumbs: list[str] = []
        self.media: list[str] = []
        self.image: str | None = None  # itunes:image (feedparser's entry.image): last wins


def _read_entry(ctx: _Context, item: etree._Element) -> RawEntry:
    attrs = _attrs(item)
    if "href" in attrs or "lastmod" in attrs:
        raise _Doubt("CDF attributes on an item")
    state = _EntryState(RawEntry())
    about = attrs.get("rdf:about")
    if about:
        state.raw.id = about
    _read_children(ctx, state, item, 1)
    raw = state.raw
    if state.link_from_guid and raw.link == raw.id and not absolute_url(raw.link, None):
        raw.link = None  # a guid is a link only if it is a URL (as in `parse`)
    raw.tags = [term or label or "" for term, _scheme, label in state.tags]
    raw.images = state.thumbs + state.media
    if state.image:
        raw.images.append(state.image)
    return raw


def _read_children(ctx: _Context, state: _EntryState, parent: etree._Element, depth: int) -> None:
    tag_names = ctx.tag_names
    for child in parent:
        name = tag_names.get(child.tag) or _fp_name(ctx, child)  # the cache inlined
        handler = _ENTRY_HANDLERS.get(name)
        if handler is not None:
            handler(ctx, state, child, name, depth)
        elif name in IGNORED_NAMES:
            if name in TITLE_RESET_NAMES:
                state.title_lock = -1
        elif _has_handler(name):
            raise _Doubt(f"entry element feedparser reads: {name}")
        elif len(child):  # an unknown leaf (most unknown elements) holds nothing to check
            _check_unknown(ctx, child, state, depth)


def _check_unknown(
    ctx: _Context, element: etree._Element, state: _EntryState | None = None, depth: int = 0
) -> None:
    """feedparser walks unknown elements too: nothing inside may be one it reads —
    except, inside an entry's unknown element (at `depth`), categories: feedparser
    files them on the entry wherever they are, and which one wins does not depend on
    depth (`<categories><category>` of some CMSs); and titles, descriptions and images
    (OpenGraph blocks), whose depth rules the handlers model; and url, which feedparser
    files under a key we do not read."""
    for child in element:
        name = _fp_name(ctx, child)
        if state is not None and name in NESTABLE_NAMES:
            _ENTRY_HANDLERS[name](ctx, state, child, name, 0)
        elif state is not None and name in DEPTH_RULED_NAMES:
            _ENTRY_HANDLERS[name](ctx, state, child, name, depth + 1)
        elif state is not None and name in URL_NAMES:
            _check_unknown(ctx, child)
        elif _has_handler(name):
            raise _Doubt(f"known element inside an unknown one: {name}")
        else:
            _check_unknown(ctx, child, state, depth + 1)


def _on_title(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    value = _content_value(ctx, child, "text/plain", guess=False)[0]
    _store_title(state, child, value, depth)
    if value:
        state.title_lock = depth


def _on_media_title(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    _store_title(state, child, _content_value(ctx, child, "text/plain", guess=False)[0], depth)


def _store_title(state: _EntryState, child: etree._Element, value: str, depth: int) -> None:
    if -1 < state.title_lock <= depth:
        return
    # feedparser replaces title_detail (the language) even when a deeper title
    # does not replace the value
    state.raw.language = _lang_of(child)
    if state.title_depth is None or depth <= state.title_depth:
        state.raw.title = value
        state.title_depth = depth


def _on_image(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    """An RSS <image> inside an item: its title and description count (deeper), its
    link and url do not."""
    state.title_lock = -1
    for sub in child:
        part = _fp_name(ctx, sub)
        if part in ("title", "description"):
            _ENTRY_HANDLERS[part](ctx, state, sub, part, depth + 1)
        elif part not in ("link", "url", "width", "height"):
            if _has_handler(part):
                raise _Doubt(f"element inside an item image: {part}")
            _check_unknown(ctx, sub)


def _on_link(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    attrs = _attrs(child)
    href = _href(attrs)
    if href is not None and len(child):  # (len: most have nothing inside, skip the call)
        _read_children(ctx, state, child, depth + 1)  # feedparser reads what is inside
    if href is not None and attrs.get("rel") == "enclosure":
        url = _resolve(ctx.base(child), href)
        state.raw.enclosures.append((url, attrs.get("type"), attrs.get("length")))
        return
    value = _link_value(ctx, child, attrs)
    if value is not None:
        state.raw.link = value
        state.link_set = True
        state.link_from_guid = False


def _on_guid(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    is_link = _attrs(child).get("ispermalink", "true") == "true"
    value = _text(ctx, child)
    if value and is_link:
        value = _resolve(ctx.base(child), value)
    state.raw.id = value
    if is_link and not state.link_set:
        state.raw.link = value
        state.link_set = True
        state.link_from_guid = True


def _on_published(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    state.raw.published = _date(_text(ctx, child))


def _on_updated(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    state.raw.updated = _date(_text(ctx, child))


def _date(text: str) -> datetime | None:
    if not text:
        return None
    fast = fast_date(text)
    return fast if fast is not None else struct_to_datetime(_feedparser_date(text))


_MONTH_NAMES = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES.split("|"), 1)}
_RFC822_DATE = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,? +)?"
    rf"(?:(\d{{1,2}}) +({_MONTH_NAMES})[a-z]*|({_MONTH_NAMES})[a-z]* +(\d{{1,2}}))"
    r" +(\d{4}) +(\d{1,2}):(\d\d)(?::(\d\d))? +(gmt|utc?|z|[ecmp][sd]t|[+-]\d{4})",
    re.IGNORECASE | re.ASCII,
)
_W3C_DATE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)"
    r"(?:[Tt ](\d\d):(\d\d)(?::(\d\d(?:\.\d+)?))?([Zz]|[+-]\d\d:\d\d)?)?",
    re.ASCII,
)


def fast_date(text: str) -> datetime | None:
    """The UTC date feedparser's `_parse_date` gives for the common shapes — RFC 822
    with a 4-digit year and a named or ±hhmm zone, W3C/ISO 8601 with an optional
    ±hh:mm or Z zone — computed the way its W3DTF and RFC 822 handlers compute it
    (fractional seconds truncated, day and month swapped as it swaps them); None for
    any other shape or any value its handlers would reject, so that the caller asks
    feedparser itself. Equality with feedparser is tested on every date string of
    the real-world corpus (`tests/test_realfeeds.py`)."""
    try:
        if text[4:5] == "-":  # only a W3C date has "-" there, never an RFC 822 one
            return _w3c_date(text)
        match = _RFC822_DATE.fullmatch(text)
        if match is None:
            return None
        day, name, swapped_name, swapped_day, year, hour, minute, second, zone = match.groups()
        stamp = datetime(
            int(year),
            _MONTHS[(name or swapped_name).lower()],
            int(day or swapped_day),
            int(hour),
            int(minute),
            int(second) if second else 0,
            tzinfo=UTC,
        )
        if zone[0] in "+-":
            return stamp - _zone_offset(zone[0], zone[1:3], zone[3:])
        return stamp - _NAMED_ZONE_OFFSETS.get(zone.lower(), _NO_OFFSET)
    except (ValueError, OverflowError):
        return None


def _w3c_date(text: str) -> datetime | None:
    """`fast_date` of a W3C/ISO 8601 date (raises ValueError for an impossible one)."""
    match = _W3C_DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    if not second:
        seconds = 0
    elif "." in second:
        seconds = int(float(second))  # truncated as feedparser does (rounding included)
    else:
        seconds = int(second)
    stamp = datetime(
        int(year),
        int(month),
        int(day),
        int(hour) if hour else 0,
        int(minute) if minute else 0,
        seconds,
        tzinfo=UTC,
    )
    if not zone or zone in "Zz":
        return stamp
    return stamp - _zone_offset(zone[0], zone[1:3], zone[4:])


_NO_OFFSET = timedelta(0)
_NAMED_ZONE_OFFSETS: dict[str, timedelta] = (
    {name: timedelta(hours=hours) for name, hours in _RFC822_ZONES.items()} if AVAILABLE else {}
)
"""feedparser's RFC 822 zone names (lower-case) as offsets, made once."""


@functools.lru_cache(maxsize=256)
def _zone_offset(sign: str, hours: str, minutes: str) -> timedelta:
    """A ±hh(:)mm zone as the offset to subtract (a feed uses one or two)."""
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    return -offset if sign == "-" else offset


def _on_summary(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    if state.summary_set and not state.has_content:
        _on_content(ctx, state, child, name, depth)  # feedparser's second summary is content
        return
    default = "text/html" if name in ("description", "media_description") else "text/plain"
    value, kind = _content_value(ctx, child, default)
    if state.summary_depth is not None and depth > state.summary_depth:
        return
    state.raw.summary = value
    state.raw.summary_is_text = kind == "text/plain"
    state.summary_set = True
    state.summary_depth = depth
    if state.raw.base is None:
        state.raw.base = ctx.base(child) or None


def _on_content(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    if child.get("src") is not None:
        raise _Doubt("out-of-line content")
    default = "text/html" if name == "content_encoded" else "text/plain"
    value, kind = _content_value(ctx, child, default)
    state.has_content = True
    if state.raw.content is None:
        state.raw.content = value
        state.raw.content_is_text = kind == "text/plain"
        state.raw.base = ctx.base(child) or None
    if not state.summary_set:  # feedparser copies content to a missing summary,
        state.raw.summary = value  # without its type (so it counts as HTML)
        state.raw.summary_is_text = False
        state.summary_set = True


def _content_value(
    ctx: _Context, element: etree._Element, default_type: str, guess: bool = True
) -> tuple[str, str]:
    """(value, mapped type) of a text construct; xhtml serialised without its div.
    `guess`: apply feedparser's HTML guess (pointless for titles: always plain text)."""
    kind = default_type
    if len(element.attrib):  # most have none: no type to read, no mode to look for
        given = _attrs(element).get("type")
        if given is not None:
            kind = _map_type(given or default_type)
        if element.get("mode") is not None:
            raise _Doubt("base64 or escaped content mode")
    if kind not in TEXT_TYPES:
        raise _Doubt("base64 or escaped content mode")
    if kind == "application/xhtml+xml":
        return _xhtml(ctx, element), kind
    if len(element) and ctx.strict and not ctx.atom and _has_element_child(element):
        return _repair(ctx, _inline_markup(element).strip()), "application/xhtml+xml"
    value = _text(ctx, element)
    if guess and kind == "text/plain" and not ctx.atom and _looks_like_html(value):
        kind = "text/html"  # feedparser's guess for RSS "plain text" holding HTML
    return value, kind


def _xhtml(ctx: _Context, element: etree._Element) -> str:
    children = list(element)
    if len(children) == 1 and etree.QName(children[0]).localname == "div":
        if (element.text or "").strip() or (children[0].tail or "").strip():
            raise _Doubt("text around an xhtml div")
        html = _serialise_children(children[0])
    else:
        html = _serialise_children(element)
    return _repair(ctx, html.strip())


def _has_element_child(element: etree._Element) -> bool:
    return any(isinstance(child.tag, str) for child in element)


def _inline_markup(element: etree._Element) -> str:
    """Unescaped markup inside an RSS text construct (`<description><p>..</p>`), as
    feedparser's strict parser records it before `pop` strips and repairs it: the
    first element start switches the construct to application/xhtml+xml, except a
    `div`, whose start tag is dropped while nothing has switched it ("typepad does
    this"; if nothing inside it switches, its end tag leaves feedparser's depth
    count off by one: a doubt); text is escaped only once switched; tags are re-serialised
    lower-cased, attributes as `strattrs` writes them. Elements in a namespace, with
    namespaced attributes, or with a name feedparser has a handler for are a doubt."""
    pieces = [element.text or ""]
    switched = False

    def walk(parent: etree._Element) -> None:
        nonlocal switched
        for child in parent:
            tag = child.tag
            if not isinstance(tag, str) or tag.startswith("{"):
                raise _Doubt("special or namespaced element in inline markup")
            name = tag.lower()
            if _has_handler(name):
                raise _Doubt(f"element feedparser reads in inline markup: {name}")
            if any(str(key).startswith("{") for key in child.keys()):
                raise _Doubt("namespaced attribute in inline markup")
            attrs = _attrs(child)  # names lower-cased, rel and type values too
            dropped = not switched and name == "div"
            if not dropped:
                switched = True
                pieces.append(f"<{name}{_strattrs(attrs)}>")
            if child.text:
                pieces.append(escape(child.text, quote=False) if switched else child.text)
            walk(child)
            if not switched:  # feedparser returns before unwinding its depth
                raise _Doubt("a div around text only in inline markup")
            pieces.append(f"</{name}>")
            if child.tail:
                pieces.append(escape(child.tail, quote=False) if switched else child.tail)

    walk(element)
    return "".join(pieces)


def _strattrs(attrs: dict[str, str]) -> str:
    """feedparser's `strattrs`: `&`, `<`, `>` and `"` escaped in values."""
    return "".join(
        f' {key}="{escape(value, quote=False).replace(chr(34), "&quot;")}"'
        for key, value in attrs.items()
    )


def _serialise_children(element: etree._Element) -> str:
    """The markup inside an xhtml construct as feedparser writes it: text escaped,
    start and end tags with local names (see `_xhtml_name`), attribute values escaped."""
    parts: list[str] = []
    _serialise_into(parts, element)
    return "".join(parts)


def _serialise_into(parts: list[str], element: etree._Element) -> None:
    """Appends to one list all the way down (no string per level to copy upwards)."""
    if element.text:
        parts.append(escape(element.text, quote=False))
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):
            raise _Doubt("special node in xhtml")
        name = _XHTML_NAMES.get(tag) or _xhtml_name(tag)
        attrs = child.items()
        if attrs:
            parts.append(f"<{name}{_xhtml_attributes(attrs)}>")
        else:
            parts.append(f"<{name}>")
        _serialise_into(parts, child)
        parts.append(f"</{name}>")
        if child.tail:
            parts.append(escape(child.tail, quote=False))


def _xhtml_name(tag: str) -> str:
    """The name feedparser writes for an element of xhtml content (lxml's `tag`)."""
    namespace, _, local = tag[1:].partition("}") if tag[0] == "{" else ("", "", tag)
    if namespace and namespace != XHTML:
        # MathML/SVG: feedparser writes the local name lower-cased (and attributes
        # nh3 drops with the element); an annotation-xml's encoding decides how
        # an HTML parser reads what is inside, so that one stays feedparser's
        local = local.lower()
        if local == "annotation-xml":
            raise _Doubt("MathML annotation-xml in xhtml")
    if len(_XHTML_NAMES) < ATTRIBUTE_NAME_CACHE_SIZE:
        _XHTML_NAMES[tag] = local
    return local


_XHTML_NAMES: dict[str, str] = {}
"""`_xhtml_name` by lxml's tag (bounded like `_ATTRIBUTE_NAMES`)."""


def _xhtml_attributes(attrs: list[tuple[str, str]]) -> str:
    """Attributes by their local names, values escaped (quotes too)."""
    return "".join(f' {key.rpartition("}")[2]}="{escape(value)}"' for key, value in attrs)


def _on_author(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    if len(child) == 0:
        state.raw.author = _text(ctx, child)
        return
    parts: dict[str, str] = {}
    for sub in child:
        part = _fp_name(ctx, sub)
        if part in ("name", "email"):
            parts[part] = _text(ctx, sub)
        elif part == "title":  # a job title: an entry title deeper down, for feedparser
            _on_title(ctx, state, sub, part, depth + 1)
        elif part not in ("uri", "url", "homepage"):
            if _has_handler(part):
                raise _Doubt(f"unexpected author part: {part}")
            _check_unknown(ctx, sub)
    person, email = parts.get("name"), parts.get("email")
    if person and email:
        state.raw.author = f"{person} ({email})"
    elif person or email:
        state.raw.author = person or email


def _on_author_text(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    state.raw.author = _text(ctx, child)


def _on_category(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    attrs = _attrs(child)
    scheme = attrs.get("scheme", attrs.get("domain"))
    if name == "media_category" and scheme is None:
        scheme = "http://search.yahoo.com/mrss/category_schema"
    _add_tag(state, attrs.get("term"), scheme, attrs.get("label"))
    value = _text(ctx, child)
    if not value:
        return
    if state.tags and not state.tags[-1][0]:
        _, last_scheme, last_label = state.tags[-1]
        state.tags[-1] = (value, last_scheme, last_label)
    else:
        _add_tag(state, value, None, None)


def _add_tag(state: _EntryState, term: str | None, scheme: str | None, label: str | None) -> None:
    if not term and not scheme and not label:
        return
    if (term, scheme, label) not in state.tags:
        state.tags.append((term, scheme, label))


def _on_keywords(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    scheme = "http://www.itunes.com/" if name == "itunes_keywords" else None
    for term in _text(ctx, child).split(","):
        if term.strip():
            _add_tag(state, term.strip(), scheme, None)


def _on_itunes_category(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    _add_tag(state, _attrs(child).get("text"), "http://www.itunes.com/", None)
    _read_children(ctx, state, child, depth + 1)  # nested sub-categories add tags too


def _on_enclosure(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    attrs = _attrs(child)
    if len(child):
        _read_children(ctx, state, child, depth + 1)
    href = _href(attrs)
    if href:
        state.raw.enclosures.append((href, attrs.get("type"), attrs.get("length")))


def _on_media_thumbnail(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    url = _attrs(child).get("url")
    if url:
        if len(child):
            _read_children(ctx, state, child, depth + 1)
    else:
        url = _text(ctx, child)
    if url:
        state.thumbs.append(url)


def _on_media_content(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    attrs = _attrs(child)
    if len(child):  # may hold media:title, media:thumbnail
        _read_children(ctx, state, child, depth + 1)
    url = attrs.get("url")
    if url and is_image_media(url, attrs.get("medium"), attrs.get("type")):
        state.media.append(url)


def _on_itunes_image(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    attrs = _attrs(child)
    url = attrs.get("href") or attrs.get("url")
    if url:
        state.image = url


def _on_media_group(
    ctx: _Context, state: _EntryState, child: etree._Element, name: str, depth: int
) -> None:
    _read_children(ctx, state, child, depth + 1)  # feedparser ignores the group itself


_Handler = Callable[[_Context, _EntryState, Any, str, int], None]
"""An entry element's reader: (context, entry, element, its feedparser name, depth)."""

_ENTRY_HANDLERS: dict[str, _Handler] = {
    **dict.fromkeys(TITLE_NAMES, _on_title),
    "media_title": _on_media_title,
    "image": _on_image,
    "link": _on_link,
    "guid": _on_guid,
    "id": _on_guid,
    **dict.fromkeys(PUBLISHED_NAMES, _on_published),
    **dict.fromkeys(UPDATED_NAMES, _on_updated),
    **dict.fromkeys(SUMMARY_NAMES, _on_summary),
    "media_description": _on_summary,
    **dict.fromkeys(CONTENT_NAMES, _on_content),
    "author": _on_author,
    **dict.fromkeys(AUTHOR_TEXT_NAMES, _on_author_text),
    **dict.fromkeys(CATEGORY_NAMES, _on_category),
    "itunes_keywords": _on_keywords,
    "itunes_category": _on_itunes_category,
    "media_keywords": _on_keywords,
    "enclosure": _on_enclosure,
    "media_thumbnail": _on_media_thumbnail,
    "media_content": _on_media_content,
    "itunes_image": _on_itunes_image,
    "media_group": _on_media_group,
}
