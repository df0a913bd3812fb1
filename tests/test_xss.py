"""RELIABILITY.md S6-S8: the XSS corpus put in entry titles, summaries, authors,
categories, links, enclosures, source titles and site links, and in content (through
the real sanitiser), comes out inert in every page and every feed.

Pages are parsed with html5lib: no `on*` or `style` attribute, no script, iframe, form,
base, object, embed or meta refresh, and every URL attribute is http, https or mailto
after WHATWG normalisation (or a same-site path). Feeds are parsed as XML: titles come
back as the exact text, and the HTML they carry (Atom content, RSS description and
content:encoded, JSON content_html, the stories feed's outlet lists) passes the same check.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import html5lib
import pytest
from flask.testing import FlaskClient

from aggregator.models import Enclosure, SourceConfig, StoryAssignment, StoryLabel
from aggregator.normalise import sanitise_html
from aggregator.store import FeedUpdate, Store
from aggregator.web import CONTENT_SECURITY_POLICY, create_app
from tests.test_web import NOW, entry

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="&#x20;javascript:alert(1)">x</a>',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<math><a xlink:href="javascript:alert(1)">x</a></math>',
    "<svg><script>alert(1)</script></svg>",
    "<svg onload=alert(1)>",
    '<form action="https://evil.example/"><input name=q><button>go</button></form>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<iframe src="https://evil.example/"></iframe>',
    '<object data="https://evil.example/x.swf"></object>',
    '<embed src="https://evil.example/x.swf">',
    '<div onmouseover="alert(1)">hover</div>',
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<p style="width: expression(alert(1))">x</p>',
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "<script>alert(\"x\")</script> & 'quotes'",
]
BAD_LINKS = [
    "javascript:alert(1)",
    "jav\tascript:alert(1)",
    " javascript:alert(1)",
    "data:text/html,x",
]
FORBIDDEN = {"script", "iframe", "form", "base", "object", "embed", "frame", "frameset", "applet"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "poster", "data",
                  "background", "cite", "srcset", "longdesc", "manifest", "ping"}  # fmt: skip
SAFE_SCHEMES = {"http", "https", "mailto"}


def _fill(store: Store) -> int:
    """One source per payload (every other one titled with it), one entry per payload
    with the payload everywhere; one story over all of them."""
    sources = [
        SourceConfig(url=f"https://x{i}.example/feed", title=p if i % 2 else None, tags=("world",))
        for i, p in enumerate(PAYLOADS)
    ]
    store.sync_sources(sources, NOW)
    claimed = {f.url: f.id for f in store.claim_due_feeds("xss", NOW, timedelta(minutes=5), 100)}
    story_entries: list[int] = []
    for index, payload in enumerate(PAYLOADS):
        bad = BAD_LINKS[index % len(BAD_LINKS)]
        item = entry(
            f"x{index}",
            payload,
            index,
            link=bad if index % 3 == 0 else None,
            summary=payload,
            author=payload,
            tags=(payload[:60], "safe"),
            content_html=sanitise_html(payload + "<p>text</p>", "https://x.example/"),
            enclosures=(Enclosure(bad, payload[:30], 10),),
            image_url="javascript:alert(1)",
        )
        state = FeedUpdate(last_fetch_at=NOW, last_status="ok", feed_title=payload, site_link=bad)
        saved = store.save_update(claimed[sources[index].url], "xss", state, [item], now=NOW)
        story_entries += saved.new_ids
    founder = story_entries[0]
    store.save_assignments(
        [StoryAssignment(e, founder, 0.5, (PAYLOADS[0], "term")) for e in story_entries],
        [StoryLabel(founder, PAYLOADS[1], founder, (PAYLOADS[2], "term"))],
    )
    return founder


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlaskClient, int]]:
    """The payloads in a SQLite store (escaping does not depend on the database)."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('xss')}/aggregator.db")
    store.upgrade()
    story = _fill(store)
    app = create_app({"DATABASE_URL": store.database_url, "SITE_TITLE": PAYLOADS[0]})
    yield app.test_client(), story
    app.extensions["store"].close()
    store.close()


def _normalised_scheme(value: str) -> str | None:
    """The URL's scheme after WHATWG trimming (C0 controls and space at the ends; tab and
    newline anywhere), or None for a relative URL."""
    cleaned = re.sub(r"[\t\n\r]", "", value).strip("".join(chr(c) for c in range(0x21)))
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):", cleaned)
    return match.group(1).lower() if match else None


def assert_inert_html(markup: str | bytes, where: str, fragment: bool = False) -> None:
    parse = html5lib.parseFragment if fragment else html5lib.parse
    tree = parse(markup, namespaceHTMLElements=False)
    for element in tree.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        name = tag.rsplit("}", 1)[-1].lower()
        assert name not in FORBIDDEN, f"{where}: <{name}>"
        if name == "meta":
            assert element.get("http-equiv", "").lower() != "refresh", where
        for attribute, value in element.attrib.items():
            key = attribute.rsplit("}", 1)[-1].lower()
            assert not key.startswith("on"), f"{where}: {attribute}={value!r}"
            assert key != "style", f"{where}: style={value!r}"
            if key in URL_ATTRIBUTES or attribute.lower() in URL_ATTRIBUTES:
                scheme = _normalised_scheme(value)
                if scheme is None:  # same-site: a path, a query or a fragment only
                    assert value.startswith(("/", "?", "#")) and not value.startswith("//"), (
                        where,
                        value,
                    )
                else:
                    assert scheme in SAFE_SCHEMES, f"{where}: {attribute}={value!r}"


def test_pages_are_inert(client: tuple[FlaskClient, int]) -> None:
    web, story = client
    for path in (
        "/",
        "/?tag=world",
        "/?hours=24",
        "/stories",
        f"/stories/{story}",
        "/sources",
        "/sources/1",
        "/sources/2",
    ):
        response = web.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY  # S8
        assert_inert_html(response.data, path)
        text = response.get_data(as_text=True)
        assert "<script>alert" not in text


def _feed_paths(story: int) -> list[str]:
    return [
        "/feed",
        "/tags/world/feed",
        "/sources/1/feed",
        "/sources/2/feed",
        f"/stories/{story}/feed",
        "/stories/feed",
    ]


ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"


def _check_xml_links(root: ElementTree.Element, where: str) -> None:
    for element in root.iter():
        for key in ("href", "url"):
            if key in element.attrib:
                assert _normalised_scheme(element.attrib[key]) in {"http", "https"}, where
        if element.tag in ("link", f"{ATOM}id") and element.text and ":" in element.text:
            assert _normalised_scheme(element.text) in {"http", "https", "tag"}, where


def test_atom_and_rss_are_well_formed_and_inert(client: tuple[FlaskClient, int]) -> None:
    web, story = client
    for path in _feed_paths(story):
        atom = ElementTree.fromstring(web.get(f"{path}.atom").data)
        _check_xml_links(atom, path)
        titles = {e.findtext(f"{ATOM}title") for e in atom.iter(f"{ATOM}entry")}
        assert titles and titles <= {*PAYLOADS, PAYLOADS[1]}, path
        for content in atom.iter(f"{ATOM}content"):
            if content.get("type") == "html":
                assert_inert_html(content.text or "", f"{path}.atom content", fragment=True)
        rss = ElementTree.fromstring(web.get(f"{path}.rss").data)
        _check_xml_links(rss, path)
        assert {i.findtext("title") for i in rss.iter("item")} == titles
        for item in rss.iter("item"):
            for html_field in (item.findtext("description"), item.findtext(CONTENT)):
                assert_inert_html(html_field or "", f"{path}.rss", fragment=True)


def test_json_feeds_are_inert(client: tuple[FlaskClient, int]) -> None:
    web, story = client
    for path in _feed_paths(story):
        document: dict[str, Any] = json.loads(web.get(f"{path}.json").data)
        for item in document["items"]:
            assert item["title"] in PAYLOADS
            assert_inert_html(item.get("content_html", ""), f"{path}.json", fragment=True)
            for key in ("url", "image"):
                if key in item:
                    assert _normalised_scheme(item[key]) in {"http", "https"}
            for attachment in item.get("attachments", []):
                assert _normalised_scheme(attachment["url"]) in {"http", "https"}
