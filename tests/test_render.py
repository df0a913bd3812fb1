"""The feed serializer on its own: well-formed XML whatever the text, the Atom attributes
feedgen used to drop, RSS description escaping, JSON Feed shape, URL vetting."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import feedparser

from aggregator.models import Enclosure, Entry, Story, language_tag
from aggregator.render import (
    FeedMeta,
    item_from_entry,
    item_from_story,
    render_atom,
    render_json,
    render_rss,
    safe_url,
    tag_uri,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"
META = FeedMeta(
    title="Site & <Co>",
    feed_id="tag:example.com,2026:feed/all",
    self_url="https://example.com/feed.atom?limit=2",
    site_url="https://example.com/",
    first_url="https://example.com/feed.atom?limit=2",
    next_url="https://example.com/feed.atom?limit=2&before=7",
    prev_url="https://example.com/feed.atom?limit=2&after=9",
)


def make_entry(entry_id: int = 1, **changes: object) -> Entry:
    values: dict[str, object] = {
        "id": entry_id,
        "feed_id": 3,
        "key": f"k{entry_id}",
        "title": "Title \x00\x1b with controls \ufffe and <b>tags</b>",
        "link": "https://news.example/a?x=1&y=2",
        "published_at": NOW - timedelta(hours=1),
        "updated_at": NOW,
        "first_seen_at": NOW,
        "author": "Ann <ann@example.com>",
        "summary": "Plain <b>text</b> summary",
        "content_html": "<p>Rich &amp; <b>bold</b></p>",
        "image_url": "javascript:alert(1)",
        "tags": ("world", "a&b"),
        "enclosures": (Enclosure("https://cdn.example/a.mp3", "audio/mpeg", 1234),),
        "language": "en",
        "feed_title": 'Source "One"',
        "feed_url": "https://source.example/feed.xml",
        "feed_link": "https://source.example/",
    }
    values.update(changes)
    return Entry(**values)  # type: ignore[arg-type]


def test_atom_is_well_formed_and_keeps_every_attribute() -> None:
    item = item_from_entry(make_entry(), tag_uri("example.com", "entry/1"))
    body = render_atom(META, [item])
    root = ElementTree.fromstring(body)
    links = {link.get("rel"): link.attrib for link in root.findall(f"{ATOM}link")}
    assert links["self"]["type"] == "application/atom+xml"
    assert links["alternate"] == {
        "rel": "alternate",
        "href": "https://example.com/",
        "type": "text/html",
    }
    assert {"first", "next", "previous"} <= set(links)
    (entry,) = root.findall(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == "Title  with controls  and <b>tags</b>"
    enclosure = entry.find(f"{ATOM}link[@rel='enclosure']")
    assert enclosure is not None
    assert enclosure.attrib == {
        "rel": "enclosure",
        "href": "https://cdn.example/a.mp3",
        "type": "audio/mpeg",
        "length": "1234",
    }
    assert entry.find(f"{ATOM}content").get("type") == "html"  # type: ignore[union-attr]
    assert entry.find(f"{ATOM}source/{ATOM}id").text == "https://source.example/feed.xml"  # type: ignore[union-attr]
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0 and parsed.entries[0].published == "2026-11-25T11:00:00Z"
    assert parsed.entries[0].updated == "2026-11-25T12:00:00Z"


def test_rss_description_keeps_plain_text_as_text() -> None:
    item = item_from_entry(make_entry(), "tag:example.com,2026:entry/1")
    root = ElementTree.fromstring(render_rss(META, [item]))
    rss_item = root.find("channel/item")
    assert rss_item is not None
    assert rss_item.findtext("description") == "Plain &lt;b&gt;text&lt;/b&gt; summary"
    assert rss_item.findtext("{http://purl.org/rss/1.0/modules/content/}encoded") == (
        "<p>Rich &amp; <b>bold</b></p>"
    )
    assert rss_item.findtext("pubDate") == "Wed, 25 Nov 2026 11:00:00 GMT"
    assert rss_item.find("guid").get("isPermaLink") == "false"  # type: ignore[union-attr]
    parsed = feedparser.parse(render_rss(META, [item]))
    assert (
        parsed.bozo == 0 and parsed.entries[0].summary == "Plain &lt;b&gt;text&lt;/b&gt; summary"
    )  # as HTML


def test_json_feed_shape() -> None:
    item = item_from_entry(make_entry(), "tag:example.com,2026:entry/1")
    document = json.loads(render_json(META, [item]))
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["next_url"] == META.next_url
    (value,) = document["items"]
    assert (
        value["id"] == "tag:example.com,2026:entry/1" and "image" not in value
    )  # javascript: dropped
    assert value["attachments"] == [
        {"url": "https://cdn.example/a.mp3", "mime_type": "audio/mpeg", "size_in_bytes": 1234}
    ]
    assert value["date_published"] == "2026-11-25T11:00:00Z"
    assert value["_source"]["title"] == 'Source "One"'


def test_entry_without_content_or_link_still_valid_atom() -> None:
    bare = make_entry(link=None, content_html="", summary="", author=None, enclosures=())
    body = render_atom(META, [item_from_entry(bare, "tag:example.com,2026:entry/1")])
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0 and parsed.entries[0].content[0].type == "text/plain"


def test_story_item_lists_outlets_escaped() -> None:
    story = Story(
        7, "Quake <hits>", 1, ("quake",), None, NOW - timedelta(hours=2), NOW, 2, 2, ("A", "B")
    )
    entries = [
        make_entry(1, title="<script>x</script>", feed_title="A & Co"),
        make_entry(2, feed_id=4, link="javascript:alert(1)", title="Plain", feed_title="B"),
    ]
    item = item_from_story(
        story, entries, "tag:example.com,2026:story/7", "https://example.com/stories/7"
    )
    assert item.updated == NOW and item.title == "Quake <hits>"
    assert item.image_url is None  # neither outlet's image is http(s)
    pictured = [
        make_entry(1, image_url="https://cdn.example/z-first.jpg"),
        make_entry(2, feed_id=4, image_url="https://cdn.example/headline.jpg"),
        make_entry(3, feed_id=5, image_url="https://cdn.example/a-third.jpg"),
    ]
    headed = replace(story, headline_entry_id=2)
    url = "https://example.com/stories/7"
    assert item_from_story(headed, pictured, "t", url).image_url.endswith("headline.jpg")  # type: ignore[union-attr]
    headless = replace(story, headline_entry_id=None)  # the first outlet's, in order
    assert item_from_story(headless, pictured, "t", url).image_url.endswith("z-first.jpg")  # type: ignore[union-attr]
    assert "&lt;script&gt;x&lt;/script&gt;</a> — A &amp; Co" in item.content_html
    assert "javascript" not in item.content_html and "<li>Plain — B</li>" in item.content_html


def test_safe_url() -> None:
    assert safe_url("https://a.example/x") == "https://a.example/x"
    for bad in ("javascript:alert(1)", "/relative", "data:text/html,x", "", None, "http://"):
        assert safe_url(bad) is None


def test_only_well_formed_language_tags_mark_items() -> None:
    """What feeds declare goes into `lang` and `xml:lang` only when it is a language
    tag: never a word, an empty value or markup."""
    for good in ("de", "de-at", "en-us", "zh-hans", "fil", "sr-latn-rs"):
        assert language_tag(good) == good
    for bad in (None, "", "english", "x", 'de"><script>alert(1)</script>', "de_at", "de-"):
        assert language_tag(bad) is None, bad


def test_the_lead_image_is_a_media_thumbnail_in_atom_and_rss() -> None:
    """Feed readers show an item's picture from Media RSS's `media:thumbnail` (Atom and
    RSS have none of their own); only an http(s) image is given, its URL escaped."""
    image = "https://cdn.example/lead.jpg?w=640&h=360"
    item = item_from_entry(make_entry(image_url=image), "tag:example.com,2026:entry/1")
    for body in (render_atom(META, [item]), render_rss(META, [item])):
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0
        assert [t["url"] for t in parsed.entries[0].media_thumbnail] == [image]
        assert b'url="https://cdn.example/lead.jpg?w=640&amp;h=360"' in body
    unsafe = item_from_entry(make_entry(), "tag:example.com,2026:entry/1")  # javascript:
    for body in (render_atom(META, [unsafe]), render_rss(META, [unsafe])):
        assert b"media:thumbnail" not in body.split(b"<entry", 1)[-1].split(b"<item", 1)[-1]


MICRO_POST = (
    "Reading the new spec this morning. It is shorter than the last one, and every "
    "example in it works as written, which is rarer than it should be."
)


def test_an_untitled_entry_is_listed_by_the_start_of_its_text() -> None:
    assert make_entry(title="Kept").heading == "Kept"
    heading = make_entry(title="", summary=MICRO_POST).heading
    assert (
        heading == "Reading the new spec this morning. It is shorter than the last one, and every…"
    )
    assert len(heading) <= 80 and MICRO_POST.startswith(heading[:-1])
    assert make_entry(title="", summary="Short note.").heading == "Short note."
    link_only = make_entry(title="", summary="", link="https://blog.example/2026/11/25/a-post")
    assert link_only.heading == "blog.example/2026/11/25/a-post"
    assert make_entry(title="", summary="", link=None).heading == "(untitled)"


def test_untitled_entries_get_a_heading_in_atom_and_rss_and_no_title_in_json() -> None:
    untitled = item_from_entry(make_entry(title="", summary=MICRO_POST), "tag:x,2026:entry/1")
    titled = item_from_entry(make_entry(2, title="A headline"), "tag:x,2026:entry/2")
    for render in (render_atom, render_rss):
        parsed = feedparser.parse(render(META, [untitled, titled]))
        assert parsed.bozo == 0
        assert [e.title for e in parsed.entries] == [
            "Reading the new spec this morning. It is shorter than the last one, and every…",
            "A headline",
        ]
    items = json.loads(render_json(META, [untitled, titled]))["items"]
    assert "title" not in items[0] and items[1]["title"] == "A headline"
    assert items[0]["content_html"]  # JSON Feed: an item without a title keeps its text
