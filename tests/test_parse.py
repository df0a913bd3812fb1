"""Tests of aggregator.parse (and jsonfeed): formats, DTD guard (S5), R11-R13, S6."""

from __future__ import annotations

import contextlib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from aggregator.exceptions import ParseError
from aggregator.fastparse import BARE_AMPERSAND_WARNING, parse_fast, refusal
from aggregator.models import Enclosure, ParsedFeed
from aggregator.normalise import MAX_FUTURE_SKEW, runs_or_loads
from aggregator.parse import CUT_SHORT_WARNING, parse_feed
from tests.test_normalise import XSS_PAYLOADS, html_problems, text_problems

DATA = Path(__file__).parent / "data" / "parse"
FETCHED = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
FEED_URL = "https://feeds.example.org/feed"
GUARD_LIMIT_SECONDS = 0.010  # S5: a refusal takes < 10 ms


def parse(name: str, **kwargs: object) -> ParsedFeed:
    return parse_bytes((DATA / name).read_bytes(), **kwargs)


def parse_bytes(data: bytes, **kwargs: object) -> ParsedFeed:
    options: dict[str, object] = {"url": FEED_URL, "fetched_at": FETCHED, **kwargs}
    return parse_feed(data, **options)  # type: ignore[arg-type]


# --- formats -------------------------------------------------------------------------


def test_rss20() -> None:
    feed = parse("rss20.xml")
    assert (feed.format, feed.title, feed.link, feed.language) == (
        "rss20",
        "Example & News",
        "https://news.example.org/",
        "en-gb",
    )
    assert feed.ttl_seconds == 120 * 60
    assert feed.dropped == 1  # the item with no title, link or guid
    first, second = feed.entries
    assert first.key == "story-1"
    assert first.title == "First bold story & more"
    assert first.link == "https://news.example.org/a/1?id=7"
    assert first.published_at == datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
    assert first.author == "Jane Reporter"
    assert first.tags == ("Politics", "World")
    assert first.summary == "Short summary of the first story."
    assert 'href="https://feeds.example.org/a/2"' in first.content_html
    assert 'src="https://feeds.example.org/img/pic.jpg"' in first.content_html
    assert "script" not in first.content_html and "alert" not in first.content_html
    assert first.image_url == "https://cdn.example.org/thumb1.jpg"
    assert first.enclosures == (
        Enclosure("https://cdn.example.org/audio1.mp3", "audio/mpeg", 12345),
    )
    assert first.language == "en-gb"
    assert second.key == second.link == "https://feeds.example.org/a/2"
    assert second.image_url == "https://cdn.example.org/big.jpg"
    assert second.enclosures[0].length is None


def test_atom10_xml_base_and_relative_links() -> None:
    feed = parse("atom10.xml")
    assert (feed.format, feed.title, feed.link, feed.language) == (
        "atom10",
        "Le Blog",
        "https://blog.example.com/",
        "fr-fr",
    )
    first, second = feed.entries
    assert first.key == "tag:blog.example.com,2024:1"
    assert first.link == "https://blog.example.com/posts/2024/hello.html"
    assert 'href="https://blog.example.com/posts/other.html"' in first.content_html
    assert first.image_url == "https://blog.example.com/posts/2024/i.png"
    assert first.enclosures == (
        Enclosure("https://blog.example.com/posts/2024/files/talk.mp3", "audio/mpeg", 999),
    )
    assert first.published_at == datetime(2024, 2, 28, 7, tzinfo=UTC)
    assert first.updated_at == datetime(2024, 2, 29, 10, tzinfo=UTC)
    assert first.summary == "Plain summary <not a tag>"
    assert first.author == "Marie Curie"
    assert second.title == "XHTML title"
    assert 'href="https://blog.example.com/three"' in second.content_html
    assert second.language == "en"


def test_rss10() -> None:
    feed = parse("rss10.rdf")
    assert feed.format == "rss10"
    assert feed.language == "de"
    assert feed.ttl_seconds == 1800  # hourly, twice
    assert [e.key for e in feed.entries] == [
        "https://rdf.example.net/1",
        "https://rdf.example.net/2",
    ]
    assert feed.entries[0].published_at == datetime(2024, 1, 5, 5, tzinfo=UTC)
    assert feed.entries[0].tags == ("Technik",)


def test_rss091_with_netscape_doctype_parses() -> None:
    feed = parse("rss091_netscape.xml")
    assert feed.format.startswith("rss091")
    assert [e.title for e in feed.entries] == ["Café opening", "Second old item"]


def test_declared_latin1_is_decoded() -> None:
    feed = parse("latin1.xml")
    assert feed.title == "Café"
    assert feed.entries[0].title == "Niño été"
    assert feed.entries[0].key == "l1"  # a relative-looking guid is not made a URL


def test_json_feed_10() -> None:
    feed = parse("jsonfeed10.json")
    assert (feed.format, feed.title, feed.link) == (
        "json10",
        "JSON One",
        "https://json.example.org/",
    )
    first, second = feed.entries
    assert first.key == "1"
    assert first.link == "https://json.example.org/1"
    assert first.summary == "A short summary"
    assert 'href="https://json.example.org/rel"' in first.content_html
    assert "iframe" not in first.content_html
    assert first.image_url == "https://json.example.org/img.png"
    assert first.published_at == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert first.updated_at == datetime(2024, 1, 2, 8, tzinfo=UTC)
    assert first.author == "Alice"
    assert first.tags == ("a", "b")
    assert first.enclosures == (Enclosure("https://json.example.org/ep.mp3", "audio/mpeg", 42),)
    assert second.author == "Feed Author"  # falls back to the feed's author
    assert second.content_html.startswith("Text only &lt;b&gt;")
    assert second.summary == "Text only <b>not html</b> second line"


def test_json_feed_11() -> None:
    feed = parse("jsonfeed11.json")
    assert (feed.format, feed.language) == ("json11", "pt-br")
    (entry,) = feed.entries
    assert entry.author == "Ana, Bruno"
    assert entry.image_url == "https://json11.example.org/banner.jpg"
    assert entry.language == "en"
    assert entry.published_at == datetime(2024, 5, 1, 11, tzinfo=UTC)


def test_json_by_content_type_and_garbage_json() -> None:
    data = (DATA / "jsonfeed11.json").read_bytes()
    assert parse_bytes(b"\n  " + data, content_type="application/feed+json").format == "json11"
    with pytest.raises(ParseError, match="parse: "):
        parse_bytes(b'{"hello": "world"}')
    with pytest.raises(ParseError, match="parse: "):
        parse_bytes(b"{not json", content_type="application/json")


# --- not feeds, broken feeds (R11) -----------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   \n", (DATA / "not_a_feed.html").read_bytes(), b"hello"])
def test_not_a_feed_raises_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_bytes(body)
    assert info.value.message.startswith("parse: ")
    assert info.value.url == FEED_URL


def test_truncated_xml_keeps_the_whole_entries_and_skips_the_cut_one() -> None:
    feed = parse("truncated.xml")
    assert [e.key for e in feed.entries] == ["c1", "c2"]  # not "Half an ite"
    assert feed.dropped == 1
    assert feed.warning and feed.warning.startswith(CUT_SHORT_WARNING)
    assert len(feed.warning) <= 200


@pytest.mark.parametrize(
    ("name", "end_tag"), [("world.rss", b"</item>"), ("world.atom", b"</entry>")]
)
def test_a_document_cut_anywhere_gives_only_entries_as_the_whole_one_does(
    name: str, end_tag: bytes
) -> None:
    """A body cut short (a proxy or a CMS that stops mid-document) yields each entry it
    holds whole exactly as the whole document gives it, and skips the one it cuts: stored,
    a cut entry would replace the stored whole one (an edit that is not one)."""
    data = (DATA.parent / name).read_bytes()
    whole = {e.key: e for e in parse_bytes(data).entries}
    first = data.index(end_tag)
    for cut in range(first, len(data) - len(end_tag), 97):
        feed = parse_bytes(data[:cut])
        assert len(feed.entries) == data[:cut].count(end_tag), cut
        assert all(whole[e.key] == e for e in feed.entries), cut
        if not data[:cut].rstrip().endswith(end_tag):
            assert feed.warning and feed.warning.startswith(CUT_SHORT_WARNING), cut


def test_wrong_charset_recovers_with_warning() -> None:
    feed = parse("wrong_charset.xml")
    assert [e.key for e in feed.entries] == ["w1", "w2"]
    assert feed.entries[0].title == "Café crème"
    # worded for the operator, as the feed's status shows it
    assert feed.warning == (
        "wrong encoding, recovered: document declared as utf-8, but parsed as windows-1252"
    )


def test_charset_from_content_type() -> None:
    data = (DATA / "latin1.xml").read_bytes().replace(b' encoding="ISO-8859-1"', b"")
    feed = parse_bytes(data, content_type="application/rss+xml; charset=iso-8859-1")
    assert feed.entries[0].title == "Niño été"


# --- dates (R13) -----------------------------------------------------------------------


def test_dates_future_epoch_garbage() -> None:
    entries = {e.key: e for e in parse("dates.xml").entries}
    assert entries["future"].published_at == FETCHED
    assert entries["epoch"].published_at is None
    assert entries["garbage"].published_at is None
    assert entries["none"].published_at is None
    assert entries["ahead"].published_at == datetime(2024, 7, 1, 12, 5, tzinfo=UTC)
    for entry in entries.values():
        for date in (entry.published_at, entry.updated_at):
            assert date is None or (date.tzinfo is not None and date <= FETCHED + MAX_FUTURE_SKEW)


# --- entry cap (R12) -------------------------------------------------------------------


def _big_rss(count: int) -> bytes:
    items = "".join(
        f"<item><title>Item {i}</title><link>https://big.example.org/{i}</link>"
        f"<guid>big-{i}</guid><description>text {i}</description></item>"
        for i in range(count)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>'
        f"<link>https://big.example.org/</link>{items}</channel></rss>"
    ).encode()


def test_100k_items_capped_quickly() -> None:
    data = _big_rss(100_000)
    start = time.process_time()  # CPU time: what the cap saves, not the machine's load
    feed = parse_bytes(data, max_entries=500)
    elapsed = time.process_time() - start
    assert len(feed.entries) == 500
    assert feed.dropped == 99_500
    assert feed.entries[0].key == "big-0" and feed.entries[-1].key == "big-499"
    assert elapsed < 5.0, elapsed


def test_cap_on_not_well_formed_feed() -> None:
    data = _big_rss(3000).replace(b"<title>Item 5</title>", b"<title>Item 5 & broken</title>")
    feed = parse_bytes(data, max_entries=100)
    assert len(feed.entries) == 100 and feed.dropped == 2900
    assert feed.warning


# --- DTD guard (S5) --------------------------------------------------------------------

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>&xxe;</title><item><title>&xxe;</title></item></channel></rss>"""

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + b"".join(
        b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']>\n<rss version="2.0"><channel><title>&lol9;</title></channel></rss>'
)

QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "'
    + b"A" * 50_000
    + b'">]><rss version="2.0"><channel><title>'
    + b"&a;" * 10_000
    + b"</title></channel></rss>"
)

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY % remote SYSTEM "http://127.0.0.2/evil.dtd"> %remote;]>
<rss version="2.0"><channel><title>x</title></channel></rss>"""

BROKEN_PROLOG_ENTITY = b"""  <?xml version="1.0"?>
<!DOCTYPE rss [<!entity boom "boom">]><rss><channel><title>&boom;</title></channel></rss>"""


def _utf16(doc: bytes, codec: str) -> bytes:
    return (
        doc.decode()
        .replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
        .encode(codec)
    )


ATTACKS = {
    "xxe": XXE,
    "billion_laughs": BILLION_LAUGHS,
    "quadratic": QUADRATIC,
    "parameter_entity": PARAMETER_ENTITY,
    "broken_prolog": BROKEN_PROLOG_ENTITY,
    "xxe_utf16": _utf16(XXE, "utf-16"),
    "laughs_utf16le_no_bom": _utf16(BILLION_LAUGHS, "utf-16-le"),
    "quadratic_utf16be_no_bom": _utf16(QUADRATIC, "utf-16-be"),
    "xxe_utf32": _utf16(XXE, "utf-32"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_entity_documents_are_refused_quickly(name: str) -> None:
    data = ATTACKS[name]
    timings = []
    for _ in range(3):  # best of three: the first call may pay for imports
        start = time.perf_counter()
        with pytest.raises(ParseError, match="refused") as info:
            parse_bytes(data)
        timings.append(time.perf_counter() - start)
    assert info.value.message.startswith("parse: refused")
    assert min(timings) < GUARD_LIMIT_SECONDS, timings


def test_unused_entity_declaration_in_a_readable_document_is_refused() -> None:
    # the fast path would read this document (no entity is referenced): it must run
    # the guard itself when it sees the DOCTYPE, not leave it to the fallback
    doc = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY unused "never referenced">]>
<rss version="2.0"><channel><title>Clean</title>
<item><title>Plain</title><guid>p1</guid></item></channel></rss>"""
    with pytest.raises(ParseError, match="refused"):
        parse_bytes(doc)
    plain = doc.replace(b' [<!ENTITY unused "never referenced">]', b"")
    assert [e.key for e in parse_bytes(plain).entries] == ["p1"]


def test_plain_doctype_and_entity_text_in_content_pass() -> None:
    doc = b"""<?xml version="1.0"?>
<!DOCTYPE rss SYSTEM "http://127.0.0.2/rss.dtd">
<rss version="2.0"><channel><title>DTD</title>
<item><title>About entities</title><guid>e1</guid>
<description><![CDATA[<p>Write <code><!ENTITY x "y"></code> in a DTD</p>]]></description></item>
</channel></rss>"""
    feed = parse_bytes(doc)
    assert [e.key for e in feed.entries] == ["e1"]


# --- XSS (S6) --------------------------------------------------------------------------


def _xss_feed() -> bytes:
    items = []
    for i, payload in enumerate(XSS_PAYLOADS):
        text = escape(payload)
        items.append(
            f"<item><title>{text}</title><link>https://xss.example.org/{i}</link>"
            f"<guid>x{i}</guid><author>{text}</author><category>{text}</category>"
            f"<description>{text}</description>"
            f"<content:encoded><![CDATA[<p>{payload}</p>]]></content:encoded></item>"
        )
    return (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>{escape(XSS_PAYLOADS[9])}Feed</title><link>https://xss.example.org/</link>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def _assert_safe(feed: ParsedFeed) -> None:
    assert text_problems(feed.title or "") == []
    for entry in feed.entries:
        assert html_problems(entry.content_html) == [], entry.content_html
        for text in (entry.title, entry.author or "", entry.summary, *entry.tags):
            assert text_problems(text) == [], text
        for url in (entry.link, entry.image_url, *(e.url for e in entry.enclosures)):
            assert url is None or url.startswith(("http://", "https://"))


@pytest.mark.parametrize("fast", [True, False])
def test_xss_payloads_in_rss(fast: bool) -> None:
    feed = parse_bytes(_xss_feed(), fast=fast)
    assert len(feed.entries) == len(XSS_PAYLOADS)
    _assert_safe(feed)


def test_xss_feed_takes_the_fast_path() -> None:
    assert refusal(_xss_feed()) is None


def test_xss_payloads_in_json_feed() -> None:
    import json

    items = [
        {
            "id": str(i),
            "url": "javascript:alert(1)" if i == 0 else f"https://j.example.org/{i}",
            "title": p,
            "content_html": p,
            "summary": p,
            "authors": [{"name": p}],
            "tags": [p],
            "image": "javascript:alert(1)",
        }
        for i, p in enumerate(XSS_PAYLOADS)
    ]
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": XSS_PAYLOADS[0], "items": items}
    feed = parse_bytes(json.dumps(doc).encode())
    assert feed.entries[0].link is None
    _assert_safe(feed)


# --- fast path (phase 2) ----------------------------------------------------------------

FAST_FIXTURES = [
    "rss20.xml",
    "rss092.xml",
    "atom10.xml",
    "rss10.rdf",
    "latin1.xml",
    "dates.xml",
    "truncated.xml",  # cut short inside its last item: the items before it, read alike
]


@pytest.mark.parametrize("name", FAST_FIXTURES)
def test_fast_path_gives_the_same_feed_as_feedparser(name: str) -> None:
    data = (DATA / name).read_bytes()
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    slow = parse_bytes(data, fast=False)
    assert fast.entries == slow.entries
    assert (fast.format, fast.title, fast.link, fast.language, fast.ttl_seconds) == (
        slow.format,
        slow.title,
        slow.link,
        slow.language,
        slow.ttl_seconds,
    )
    assert fast.dropped == slow.dropped
    assert (fast.warning or "").startswith(CUT_SHORT_WARNING) == (slow.warning or "").startswith(
        CUT_SHORT_WARNING
    )


BASIC_ITEM = "<item><title>t</title><guid>g</guid>{extra}</item>"


def _rss(extra: str = "", version: str = "2.0", channel_extra: str = "") -> bytes:
    item = BASIC_ITEM.format(extra=extra)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="{version}" '
        'xmlns:media="http://search.yahoo.com/mrss/" xmlns:x="urn:unknown" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
        f"<channel><title>c</title>{channel_extra}{item}</channel></rss>"
    ).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_rss("<title>unclosed"), "not well-formed"),  # a mismatched end tag
        ((DATA / "wrong_charset.xml").read_bytes(), "not well-formed"),
        ((DATA / "rss091_netscape.xml").read_bytes(), "Netscape DOCTYPE"),
        (_rss(version="0.90"), "RSS version"),
        ((DATA / "not_a_feed.html").read_bytes(), "not RSS 0.9x/2.0"),
        (_rss("<itunes:owner><itunes:name>n</itunes:name></itunes:owner>"), "itunes_owner"),
        (_rss("<x:wrap><link>inner</link></x:wrap>"), "known element inside"),
        (_rss("<description><div>raw text</div></description>"), "a div around text"),
        (_rss("<description><p>a <source>b</source></p></description>"), "inline markup"),
        (_rss("<description><x:p>namespaced</x:p></description>"), "inline markup"),
        (_rss("<description><div><div>two</div><p>p</p></div></description>"), "div"),
        (_rss("<textinput><title>x</title></textinput>"), "feedparser reads: textinput"),
        (_rss(channel_extra="<item><item><title>n</title></item></item>"), "outside"),
    ],
)
def test_fast_path_declines_when_in_doubt(data: bytes, reason: str) -> None:
    assert reason in (refusal(data) or "")
    assert parse_fast(data, url=FEED_URL, fetched_at=FETCHED) is None
    with contextlib.suppress(ParseError):  # the HTML page is not a feed at all
        parse_bytes(data)  # feedparser reads the rest


def test_fast_path_declines_a_contradicting_http_charset() -> None:
    data = (DATA / "latin1.xml").read_bytes()
    assert refusal(data, content_type="text/xml; charset=utf-8") is not None
    assert refusal(data, content_type="text/xml; charset=ISO-8859-1") is None
    assert parse_bytes(data, content_type="text/xml; charset=utf-8").entries


def test_fast_path_ignores_unknown_extensions_and_blank_lines_before_declaration() -> None:
    data = b"\n\n  " + _rss("<x:rating>5</x:rating><x:meta a='1'><x:deep/></x:meta>")
    feed = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert feed is not None and [e.key for e in feed.entries] == ["g"]
    assert feed.warning is not None and "whitespace" in feed.warning


def test_fast_path_caps_100k_items_quickly() -> None:
    data = _big_rss(100_000)
    assert refusal(data) is None
    start = time.process_time()  # CPU time: what the cap saves, not the machine's load
    feed = parse_bytes(data, max_entries=500)
    assert time.process_time() - start < 2.0
    assert len(feed.entries) == 500 and feed.dropped == 99_500


RECOVERABLE_ITEMS = (
    "<item><title>M\x10nchen &uuml;ber alles</title><guid>r1</guid></item>"
    "<item><title>caf&eacute; &unknown;</title><guid>r2</guid></item>"
)


def test_fast_path_recovers_control_characters_and_html_entities() -> None:
    data = _rss(channel_extra=RECOVERABLE_ITEMS)
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    assert fast.warning is not None and "recovered" in fast.warning
    slow = parse_bytes(data, fast=False)
    assert [(e.key, e.title) for e in fast.entries] == [(e.key, e.title) for e in slow.entries]
    # both paths word the defect alike: where it is, no exception's name
    assert slow.warning is not None
    assert re.fullmatch(r"not well-formed XML, recovered: .+, line \d+, column \d+", slow.warning)
    assert [e.title for e in fast.entries][:2] == ["Mnchen über alles", "café &unknown;"]


LEAD_IMAGE_ITEMS = (
    # The Guardian: media:content with only a URL and a width
    "<item><title>Guardian</title><guid>g</guid>"
    '<media:content width="140" url="https://i.guim.co.uk/img/media/6000.jpg?width=140&amp;s=1"/>'
    "</item>"
    # a podcast episode's artwork (feedparser's entry.image; the last one wins)
    "<item><title>Episode</title><guid>e</guid>"
    '<media:content url="https://cdn.example.org/e.mp3" type="audio/mpeg" medium="audio"/>'
    '<itunes:image href="https://cdn.example.org/old.jpg"/>'
    '<itunes:image href="https://cdn.example.org/e.jpg"/></item>'
    # neither: a media:content whose URL names no picture, an audio one
    "<item><title>Video</title><guid>v</guid>"
    '<media:content url="https://cdn.example.org/v.mp4"/>'
    '<media:content url="https://cdn.example.org/a.jpg" medium="audio"/></item>'
)


@pytest.mark.parametrize("fast", [True, False])
def test_lead_image_from_untyped_media_and_itunes_image(fast: bool) -> None:
    data = _rss(channel_extra=LEAD_IMAGE_ITEMS)
    assert parse_fast(data, url=FEED_URL, fetched_at=FETCHED) is not None, refusal(data)
    feed = parse_bytes(data, fast=fast)
    assert [e.image_url for e in feed.entries[:3]] == [
        "https://i.guim.co.uk/img/media/6000.jpg?width=140&s=1",
        "https://cdn.example.org/e.jpg",
        None,
    ]


BARE_AMPERSAND_ITEMS = (
    "<item><title>Votes &amp; seats</title><guid>a1</guid>"
    '<media:content medium="image" url="https://img.example.org/a.jpg?width=140&quality=85" />'
    "<description><![CDATA[<p>Q & A &amp; more</p>]]></description>"
    "<link>https://news.example.org/a?id=1&amp;page=2</link></item>"
)


def test_fast_path_repairs_bare_ampersands_as_feedparser_reads_them() -> None:
    data = _rss(channel_extra=BARE_AMPERSAND_ITEMS)
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    assert fast.warning == BARE_AMPERSAND_WARNING
    slow = parse_bytes(data, fast=False)
    assert fast.entries == slow.entries  # feedparser's loose parser: the same entries
    first = fast.entries[0]
    assert first.image_url == "https://img.example.org/a.jpg?width=140&quality=85"
    assert first.summary == "Q & A & more"  # CDATA is left as written
    assert first.link == "https://news.example.org/a?id=1&page=2"


@pytest.mark.parametrize("title", ["AT&T buys Q&A site", "Rock & roll & more"])
def test_bare_ampersand_in_text_is_kept_as_written(title: str) -> None:
    data = _rss(channel_extra=f"<item><title>{title}</title><guid>t</guid></item>")
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    assert fast.warning == BARE_AMPERSAND_WARNING
    assert fast.entries[0].title == title


@pytest.mark.parametrize(
    ("defect", "reason"),
    [
        ("<item><title>AT&T</title><guid>b</guid></item>", "not well-formed"),  # bare & + \x10
        ("<item><title>open</item>", "not well-formed"),  # structure
        ("<item><title>t</title><![CDATA[<item>]]></item>", "entries differ"),  # count
    ],
)
def test_fast_path_recovers_only_local_defects(defect: str, reason: str) -> None:
    data = _rss(channel_extra=defect + "<item><title>\x10</title><guid>x</guid></item>")
    assert reason in (refusal(data) or "")
    assert parse_bytes(data).entries  # feedparser reads it


@pytest.mark.parametrize(
    "text",
    [
        "Mon, 23 Nov 2026 08:00:00 GMT",
        "Mon, 23 Nov 2026 08:00:00 +0530",
        "Monday, 23 November 2026 08:00 -0800",
        "Sun Nov 23 2026 08:00:00 EST",  # day and month swapped
        "Thu,  5 Feb 2026 23:59:59 pdt",
        "Mon, 23 Nov 2026 08:00:00 UTC",
        "Mon, 23 Nov 2026 08:00:00 Z",
        "Mon, 31 Feb 2026 08:00:00 GMT",  # invalid day: feedparser decides
        "Mon, 23 Nov 26 08:00:00 GMT",  # two-digit year: feedparser decides
        "Mon, 23 Nov 2026 24:00:00 GMT",
        "2026-11-25T10:00:00Z",
        "2026-11-25t10:00:00.999999999z",
        "2026-11-25T10:00:00-05:30",
        "2026-11-25T10:00+14:00",
        "2026-11-25 10:00:00",
        "2026-11-25 10:00:00+02:00",
        "2026-11-25",
        "2026-11-25Z",  # feedparser's W3DTF refuses this: fallback
        "2026-11-25T10:00:00+0200",  # feedparser reads minutes oddly here: fallback
        "2026-11-25T10:00:59.99999999999999999Z",  # rounds to second 60
        "2026-11-25T10:00:07.9+01:00",  # fraction truncated, then the zone applied
        "2026-1-25T10:00:00Z",  # "-" where a W3C year ends, not a W3C date: fallback
        "Mon, 23 Nov 2026 08:00:00 CDT",  # a named zone's offset
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-05:00",
    ],
)
def test_fast_date_equals_feedparser(text: str) -> None:
    from aggregator.fastparse import _date, _feedparser_date, fast_date
    from aggregator.normalise import struct_to_datetime

    expected = struct_to_datetime(_feedparser_date(text))
    fast = fast_date(text)
    assert fast is None or fast == expected
    assert _date(text) == expected


def test_fast_path_reads_categories_inside_an_unknown_element() -> None:
    data = _rss(
        "<categories><category>Home</category><category domain='d'>Tech</category>"
        "<x:more><category>Deep</category></x:more></categories><category>Top</category>"
    )
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    slow = parse_bytes(data, fast=False)
    assert fast.entries == slow.entries
    assert fast.entries[0].tags == ("Home", "Tech", "Deep", "Top")


def test_fast_path_cp1252_repair_equals_translate() -> None:
    """`_repair` maps C1 controls through feedparser's cp1252 table exactly as
    `str.translate` does, over every Latin-1/Latin Extended code point, alone and mixed."""
    import re

    from aggregator.fastparse import _CP1252, _Context, _repair

    ctx = _Context(atom=False)

    def expected(text: str) -> str:
        if not text or text.isascii():
            return text
        try:
            text = text.encode("iso-8859-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        return text.translate(_CP1252) if re.search("[\x80-\x9f]", text) else text

    samples = [chr(point) for point in range(0x300)] + ["\u2019", "\U0001f600"]
    for char in samples:
        long = "\u2019" * 600  # beyond C1_SEARCH_MAX_CHARS: the other test
        for text in (
            char,
            f"a{char}b",
            f"\u2019{char}\x81\x9f",
            f"{char}\xc3\xa9",
            f"{long}{char}",
            f"{char}{long}\x9f",
            f"{'e' * 600}{char}",
        ):
            assert _repair(ctx, text) == expected(text), repr(text)


INLINE_MARKUP = [
    "<description>Intro &amp; &lt;b&gt; <p class='X' REL='NoFollow'>Para &lt;i&gt; "
    "<a HREF='/x?a=1&amp;b=2' title='say \"hi\" &amp; &lt;bye&gt;'>link</a></p>"
    " tail &amp; more</description>",
    "<description>\n  <div><p>inside a div</p> text &amp; more</div>\n</description>",
    "<description><div class='outer'><p>a div</p><div>then another</div></div></description>",
    "<description><P>Upper</P><BR/><IMG SRC='https://x.example/a.png'/></description>",
    "<description><table><tr><td>cell</td></tr></table></description><x:extra>1</x:extra>",
    "<content:encoded><p>content <em>markup</em></p></content:encoded>"
    "<description>plain summary</description>",
    "<description><ul><li>one</li><li>two &#160; &#x263a;</li></ul></description>",
    "<itunes:summary><p>itunes summary</p></itunes:summary>",
    "<description><script>alert(1)</script><p onclick='x()'>safe</p></description>",
]


@pytest.mark.parametrize("body", INLINE_MARKUP)
def test_fast_path_reads_inline_markup_as_feedparser_does(body: str) -> None:
    """Unescaped HTML inside an RSS description/content (feedparser switches the
    construct to XHTML): the fast path records the same markup, so whole entries equal
    the feedparser path's."""
    data = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:x="urn:unknown" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
        "<channel><title>c</title><item><title>t</title><guid>g</guid>"
        f"{body}</item><item><title>next</title><guid>h</guid>"
        "<description>after</description></item></channel></rss>"
    ).encode()
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    slow = parse_bytes(data, fast=False)
    assert fast.entries == slow.entries
    assert all(html_problems(entry.content_html) == [] for entry in fast.entries)


def test_fast_path_reads_a_title_with_inline_markup_as_feedparser_does() -> None:
    data = _rss(channel_extra="<item><title>Hello <b>bold</b> &amp; co</title></item>")
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    assert fast.entries == parse_bytes(data, fast=False).entries
    assert [entry.title for entry in fast.entries] == ["Hello bold & co", "t"]


TEXT_TITLES = ["Using the <details> element", "Vec<T> and Option<T> in Rust", "x < y > z"]
HTML_TITLES = {"La case BD: <i>Tintin</i>": "La case BD: Tintin", "30ft<sup>2</sup>": "30ft2"}


@pytest.mark.parametrize("fast", [True, False])
def test_titles_in_plain_text_keep_what_looks_like_a_tag(fast: bool) -> None:
    """Atom titles are text unless typed html; a "<details>" or "<T>" in them is part of
    the headline, not a tag to strip. RSS titles that close HTML elements are HTML."""
    atom = "".join(
        f"<entry><id>urn:{n}</id><title>{escape(title)}</title></entry>"
        for n, title in enumerate(TEXT_TITLES)
    )
    data = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Edge &lt;Feed&gt; &amp; Co</title><id>urn:f</id>{atom}</feed>"
    ).encode()
    parsed = parse_bytes(data, fast=fast)
    assert [entry.title for entry in parsed.entries] == TEXT_TITLES
    assert parsed.title == "Edge <Feed> & Co"
    rss = "".join(
        f"<item><title>{escape(title)}</title><guid>g{n}</guid></item>"
        for n, title in enumerate([*HTML_TITLES, *TEXT_TITLES])
    )
    parsed = parse_bytes(_rss(channel_extra=rss), fast=fast)
    assert [entry.title for entry in parsed.entries][:-1] == [*HTML_TITLES.values(), *TEXT_TITLES]


HOSTILE_TITLES = {
    "<x autofocus tabindex=1 onfocus=alert(1)>": "",
    "<image src=x onerror=alert(document.domain)>": "",
    "<dialog open onclose=alert(1)>text": "text",
    "Vec<T> &lt;script&gt;alert(2)&lt;/script&gt;": "Vec",
    "<b>x</b> &lt;img src=x onerror=y&gt;": "x",
    "before <!-- the rest": "before",
    "<plaintext>after": "after",
}


@pytest.mark.parametrize("fast", [True, False])
def test_no_title_keeps_markup_that_would_run_or_load(fast: bool) -> None:
    """Titles kept as text must not carry what a reader rendering titles as HTML would
    run: event handlers on any tag, active elements, comments, nor markup an entity
    escaped once more."""
    items = "".join(
        f"<item><title>{escape(title)}</title><guid>g{n}</guid></item>"
        for n, title in enumerate(HOSTILE_TITLES)
    )
    channel = f"<title>{escape('<image src=x onerror=alert(1)>Feed')}</title>{items}"
    data = (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>{channel}'
        "</channel></rss>"
    ).encode()
    parsed = parse_bytes(data, fast=fast)
    assert parsed.title == "Feed"
    assert [e.title for e in parsed.entries] == [
        t or e.title for t, e in zip(HOSTILE_TITLES.values(), parsed.entries, strict=True)
    ]
    assert not any(runs_or_loads(e.title) for e in parsed.entries)


def test_json_feed_titles_in_plain_text_keep_what_looks_like_a_tag() -> None:
    items = [{"id": str(n), "title": title} for n, title in enumerate(TEXT_TITLES)]
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "J <3", "items": items}
    parsed = parse_bytes(json.dumps(doc).encode())
    assert [entry.title for entry in parsed.entries] == TEXT_TITLES and parsed.title == "J <3"


FOREIGN_XHTML = [
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" viewBox="0 0 1 1">'
    '<circle cx="1" r="2"/><text x="1">label &amp; more</text></svg><p>after</p>',
    '<svg:svg xmlns:svg="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
    '<svg:a xlink:href="https://x.example/">link</svg:a><svg:foreignObject>'
    "<p>inside foreign</p></svg:foreignObject></svg:svg>",
    '<p>Euler: <math xmlns="http://www.w3.org/1998/Math/MathML" display="inline"><mi>e</mi>'
    "<mo>=</mo><msup><mi>x</mi><mn>2</mn></msup></math> done</p>",
]


@pytest.mark.parametrize("markup", FOREIGN_XHTML)
def test_fast_path_reads_svg_and_mathml_in_xhtml_as_feedparser_does(markup: str) -> None:
    data = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>f</title><id>urn:f</id><entry><id>urn:e</id><title>e</title>"
        '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
        f"{markup}</div></content></entry></feed>"
    ).encode()
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    assert fast.entries == parse_bytes(data, fast=False).entries
    assert all(html_problems(entry.content_html) == [] for entry in fast.entries)


ITEMS = (
    "<channel><title>c</title><link>https://c.example/</link></channel>"
    "<item><title>one &amp; two</title><link>https://c.example/1</link>"
    "<description>first &lt;b&gt;bold&lt;/b&gt;</description></item>"
)


@pytest.mark.parametrize(
    "data",
    [
        # RSS 2.0 in a default namespace feedparser does not know: read as plain RSS
        (
            b'<?xml version="1.0"?><rss xmlns="https://cyber.harvard.edu/rss/rss.html" '
            b'xmlns:atom="http://www.w3.org/2005/Atom" version="2.0"><channel><title>c</title>'
            b'<atom:link href="https://c.example/f" rel="self"/><item><title>t</title>'
            b"<guid>g</guid><pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate></item>"
            b"</channel></rss>"
        ),
        # RSS 2.0 in UserLand's namespace (Radio UserLand, old CMSs): feedparser maps
        # every backend.userland.com/rss* namespace to none
        (
            b'<?xml version="1.0"?><rss version="2.0" xmlns="http://backend.userland.com/rss2"'
            b' xmlns:yandex="http://news.yandex.ru"><channel><title>c</title>'
            b"<link>https://c.example/</link><ttl>30</ttl><item><title>t</title>"
            b"<link>https://c.example/1</link><description>d &amp; e</description>"
            b"<yandex:full-text>x</yandex:full-text><category>news</category>"
            b"<pubDate>Thu, 23 Jan 2014 09:33:08 +0600</pubDate></item></channel></rss>"
        ),
        # RSS 0.90
        (
            '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-'
            f'ns#" xmlns="http://my.netscape.com/rdf/simple/0.9/">{ITEMS}</rdf:RDF>'
        ).encode(),
    ],
)
def test_fast_path_reads_namespaced_rss_and_rss090_as_feedparser_does(data: bytes) -> None:
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    slow = parse_bytes(data, fast=False)
    assert fast.entries == slow.entries and fast.entries
    assert (fast.format, fast.title, fast.link) == (slow.format, slow.title, slow.link)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            b'<rss xmlns="urn:x" version="2.0"><channel xmlns:x="urn:x"><title>c</title>'
            b"</channel></rss>",
            "declared more than once",
        ),
        (
            b'<rss version="2.0" xmlns:r="http://purl.org/rss/1.0/"><channel><title>c</title>'
            b"</channel></rss>",
            "RSS 1.0/0.90 namespace",
        ),
    ],
)
def test_fast_path_declines_rss_whose_version_or_names_feedparser_decides(
    data: bytes, reason: str
) -> None:
    assert reason in (refusal(data) or "")


NESTED_ITEMS = [
    # an OpenGraph block and an author with a job title (cloud.google.com's feed)
    "<item><title>Real title</title><link>https://c.example/1</link>"
    "<description>Summary</description><guid>g1</guid><x:og><x:type>article</x:type>"
    "<title>OG title</title><description/><image>https://c.example/i.png</image>"
    "<x:site_name>Site</x:site_name><url>https://c.example/og</url></x:og>"
    "<author><name>Ann</name><title>Product manager</title><x:company/></author></item>",
    # the block first: the entry's own title and description come later
    "<item><x:og><title>OG first</title><description>OG summary</description></x:og>"
    "<title>Real</title><description>Real summary</description><guid>g2</guid></item>",
    # languages: a deeper title after an image replaces the title's language only
    "<item xml:lang='en'><title>T</title><guid>g3</guid><x:og xml:lang='fr'>"
    "<image>i</image><title xml:lang='de'>Deep</title></x:og></item>",
    "<item xml:lang='en'><x:og xml:lang='fr'><title>Deep first</title></x:og>"
    "<guid>g4</guid></item>",
    "<item><title>T</title><guid>g5</guid><x:a><x:b><title>two deep</title>"
    "<image><title>in image</title></image></x:b></x:a><title>after</title></item>",
]


@pytest.mark.parametrize("item", NESTED_ITEMS)
def test_fast_path_reads_titles_and_descriptions_in_unknown_elements(item: str) -> None:
    data = _rss(channel_extra=item)
    fast = parse_fast(data, url=FEED_URL, fetched_at=FETCHED)
    assert fast is not None, refusal(data)
    slow = parse_bytes(data, fast=False)
    assert fast.entries == slow.entries
    assert [e.language for e in fast.entries] == [e.language for e in slow.entries]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"base",
        b"base=",
        b"<a xml:base = 'x'/>",
        b"xbase \n\t=",
        b"basebase=",
        b"bas e=",
        b"base x=",
        b"database",
        b"base\x0b=",
        b"<base>=</base>",
    ],
)
def test_base_attribute_scan_equals_its_pattern(data: bytes) -> None:
    import re

    from aggregator.fastparse import _says_base_attribute

    assert _says_base_attribute(data) == (re.search(rb"base\s*=", data) is not None)


AUTHORS_ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
<updated>2024-06-30T00:00:00Z</updated>
<entry><id>urn:1</id><title>Blogger</title><updated>2024-06-30T00:00:00Z</updated>
<author><name>Anthony</name><email>noreply@blogger.com</email></author></entry>
<entry><id>urn:2</id><title>Name only</title><updated>2024-06-30T00:00:00Z</updated>
<author><name>Brent Simmons</name></author></entry>
</feed>"""
AUTHORS_RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>c</title>
<item><title>RSS author</title><guid>a</guid>
<author>redaktion@derStandard.at (derStandard.at Redaktion)</author></item>
<item><title>Bare address</title><guid>b</guid><author>lawyer@boyer.net</author></item>
<item><title>Creator</title><guid>c</guid><dc:creator>know how (news)</dc:creator></item>
</channel></rss>"""


@pytest.mark.parametrize("fast", [True, False])
def test_an_author_given_with_an_email_address_is_shown_by_name(fast: bool) -> None:
    """Blogger's Atom authors came out as "Anthony (noreply@blogger.com)" and RSS's as
    "redaktion@derStandard.at (derStandard.at Redaktion)" on the pages and in the
    merged feeds; a bare address is all there is, and parentheses without one stay."""
    atom = parse_bytes(AUTHORS_ATOM, fast=fast)
    assert [e.author for e in atom.entries] == ["Anthony", "Brent Simmons"]
    rss = parse_bytes(AUTHORS_RSS, fast=fast)
    assert [e.author for e in rss.entries] == [
        "derStandard.at Redaktion",
        "lawyer@boyer.net",
        "know how (news)",
    ]
