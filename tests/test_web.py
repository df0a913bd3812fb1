"""The web app over a real store (SQLite and PostgreSQL): pages, every feed, keyset
paging, response caching (ETag, Last-Modified, 304, gzip), health and metrics.

`fill_store` is the shared fixture data of the web tests (also used by test_clients,
test_browser and test_xss): three sources over two tags, one story covered by all
three, one by two, an article repeated by a second feed, an enclosure.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
import html5lib
import pytest
from flask import Flask
from flask.testing import FlaskClient

from aggregator.models import Enclosure, EntryData, SourceConfig, StoryAssignment, StoryLabel
from aggregator.store import FeedUpdate, Store
from aggregator.web import CONTENT_SECURITY_POLICY
from tests.conftest import write_config

NOW = datetime.now(UTC).replace(microsecond=0)
XSS_TITLE = "<script>alert(\"x\")</script> & 'quotes'"
FEED_PATHS = ("/feed", "/tags/world/feed", "/sources/1/feed", "/stories/feed")
FORMATS = ("atom", "rss", "json")


@dataclass(frozen=True)
class Filled:
    feed_ids: list[int]
    entry_ids: dict[int, list[int]]  # per feed, in the order given
    big_story: int  # covered by all three sources
    small_story: int  # covered by two


def add_feed(
    store: Store, url: str, title: str | None, tags: Sequence[str], now: datetime = NOW
) -> int:
    configured = [SourceConfig(url=f.url, title=f.title, tags=f.tags) for f in store.get_feeds()]
    store.sync_sources([*configured, SourceConfig(url=url, title=title, tags=tuple(tags))], now)
    return next(f.id for f in store.get_feeds() if f.url == url)


def save_entries(
    store: Store, feed_id: int, items: Sequence[EntryData], now: datetime = NOW, **state: object
) -> list[int]:
    claimed = store.claim_due_feeds("test", now, timedelta(minutes=5), 100, force=True)
    assert feed_id in {f.id for f in claimed}
    for feed in claimed:
        if feed.id != feed_id:
            store.release_feeds([feed.id], "test")
    values: dict[str, object] = {"last_success_at": now, "last_status": "ok", **state}
    update = FeedUpdate(last_fetch_at=now, **values)  # type: ignore[arg-type]
    return list(store.save_update(feed_id, "test", update, items, now=now).new_ids)


def entry(
    key: str, title: str, minutes_ago: int, link: str | None = None, **extra: object
) -> EntryData:
    return EntryData(
        key=key,
        title=title,
        link=link if link is not None else f"https://news.example/{key}",
        published_at=NOW - timedelta(minutes=minutes_ago),
        updated_at=None,
        summary=extra.pop("summary", f"Summary of {title}"),  # type: ignore[arg-type]
        content_hash=hashlib.sha256(f"{key}:{title}".encode()).hexdigest(),
        **extra,  # type: ignore[arg-type]
    )


def fill_store(store: Store, per_feed: int = 12) -> Filled:
    """Three sources, `per_feed` entries each (5 minutes apart), two stories."""
    names = [
        ("alpha", "Alpha Times", "world"),
        ("beta", "Beta Post", "world"),
        ("gamma", "Gamma Wire", "tech"),
    ]
    feed_ids = [add_feed(store, f"https://{n}.example/feed.xml", t, [tag]) for n, t, tag in names]
    ids: dict[int, list[int]] = {}
    for index, feed_id in enumerate(feed_ids):
        name = names[index][0]
        items = [
            entry(f"{name}-q", f"Earthquake shakes the capital ({name})", 3 + index),
            entry(f"{name}-v", f"Parliament votes on the budget ({name})", 40 + index),
            entry(
                f"{name}-e",
                f"Podcast: the week in {name}",
                60 + index,
                author=f"Reporter {name}",
                tags=("audio", "weekly"),
                enclosures=(Enclosure(f"https://cdn.example/{name}.mp3", "audio/mpeg", 12345),),
                content_html="<p>Show <b>notes</b></p>",
                image_url=f"https://cdn.example/{name}.jpg",  # media:thumbnail for the readers
            ),
        ]
        items += [
            # beta's declare a language: xml:lang on entries for the feed readers' tests
            entry(f"{name}-{i}", f"{name.title()} item {i}", 100 + 5 * i)
            if name != "beta"
            else entry(f"{name}-{i}", f"{name.title()} item {i}", 100 + 5 * i, language="en-gb")
            for i in range(per_feed - 3)
        ]
        if index == 1:  # the same article as alpha's item 1: shown once, "also in" Beta
            items.append(
                entry("beta-dup", "Alpha item 1", 105, link="https://news.example/alpha-1")
            )
        ids[feed_id] = save_entries(store, feed_id, items)
    quake = [ids[f][0] for f in feed_ids]
    vote = [ids[f][1] for f in feed_ids[:2]]
    store.save_assignments(
        [
            StoryAssignment(e, quake[0], 0.9 if e != quake[0] else 1.0, ("earthquake", "capital"))
            for e in quake
        ]
        + [StoryAssignment(e, vote[0], 0.7, ("parliament", "budget")) for e in vote],
        [
            StoryLabel(
                quake[0], "Earthquake shakes the capital", quake[0], ("earthquake", "capital")
            ),
            StoryLabel(
                vote[0], "Parliament votes on the budget", vote[0], ("parliament", "budget")
            ),
        ],
    )
    return Filled(feed_ids, ids, quake[0], vote[0])


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(VERSION_TTL=0).test_client()


@pytest.fixture
def filled(store: Store) -> Filled:
    return fill_store(store)


def _html(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    html5lib.parse(response.data, namespaceHTMLElements=False)
    return response.get_data(as_text=True)


# pages


def test_digest_shows_stories_sections_and_each_headline_once(
    client: FlaskClient, filled: Filled
) -> None:
    html = _html(client, "/")
    top = html.index('id="top-stories"')
    assert top < html.index("More from") < html.index('id="latest"')
    assert "Earthquake shakes the capital" in html and "3 sources" in html
    assert "Parliament votes on the budget" in html and "2 sources" in html
    for name in ("alpha", "beta", "gamma"):  # story members are not repeated below
        assert html.count(f"Earthquake shakes the capital ({name})") <= 1
    assert html.count(">Alpha item 1<") == 1 and "also in Beta Post" in html
    for mime in ("application/atom+xml", "application/rss+xml", "application/feed+json"):
        assert f'rel="alternate" type="{mime}"' in html


def test_a_story_of_one_source_is_not_shown_as_a_story(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    """Two entries of one feed grouped together are that feed's entries, not coverage:
    no story block on `/`, no row on /stories, no item in the stories feed."""
    alpha = filled.entry_ids[filled.feed_ids[0]]
    store.save_assignments(
        [StoryAssignment(e, alpha[5], 0.8, ("podcast", "week")) for e in alpha[5:7]],
        [StoryLabel(alpha[5], "Solo podcast story", alpha[5], ("podcast", "week"))],
    )
    assert "Solo podcast story" not in _html(client, "/")
    assert "Solo podcast story" not in _html(client, "/stories")
    assert "Solo podcast story" not in client.get("/stories/feed.atom").get_data(as_text=True)
    assert "Solo podcast story" in _html(client, f"/stories/{alpha[5]}")  # its own page


def test_an_empty_digest_says_what_to_do_next(store: Store, client: FlaskClient) -> None:
    assert "No sources yet: add a feed with <code>aggregator add URL</code>" in _html(client, "/")
    add_feed(store, "https://fine.example/feed", "Fine", [])
    assert "The worker polls 1 source; entries show here as they arrive." in _html(client, "/")
    _add_broken(store, "Broken")
    html = _html(client, "/")
    assert '1 of 2 sources failing: see <a href="/sources">Sources</a> for why.' in html


def _twelve_outlets(store: Store) -> int:
    """A story covered by twelve outlets, two entries each, reported in outlet order."""
    members: list[int] = []
    for n in range(12):
        feed_id = add_feed(store, f"https://o{n}.example/feed.xml", f"Outlet {n:02}", ["world"])
        items = [
            entry(f"o{n}-a", f"Harbour bridge reopens ({n})", 200 - 5 * n),
            entry(f"o{n}-b", f"Harbour bridge traffic ({n})", 100 - n),
        ]
        members += save_entries(store, feed_id, items)
    story = members[0]
    store.save_assignments(
        [StoryAssignment(e, story, 0.9, ("harbour", "bridge")) for e in members],
        [StoryLabel(story, "Harbour bridge reopens", story, ("harbour", "bridge"))],
    )
    return story


def test_a_story_of_many_outlets_lists_the_first_and_counts_the_rest(
    client: FlaskClient, store: Store
) -> None:
    """Under the lead, the first STORY_OUTLETS other outlets in the order they reported
    it, then "and 3 more" linking the full coverage."""
    story = _twelve_outlets(store)

    html = _html(client, "/")
    block = html[html.index('<article class="story">') :]
    block = block[: block.index("</article>")]
    assert "12 sources" in block and "Outlet 00: Summary of Harbour bridge reopens (0)" in block
    listed = re.findall(r">(Outlet \d+)</a></li>", block)
    assert listed == [f"Outlet {n:02}" for n in range(1, 9)]
    assert re.search(rf'<li class="more"><a href="/stories/{story}">and 3 more</a></li>', block)


def test_stories_feed_item_names_the_first_outlets_and_counts_the_rest(
    client: FlaskClient, store: Store
) -> None:
    story = _twelve_outlets(store)

    parsed = feedparser.parse(client.get("/stories/feed.atom").data)

    content = parsed.entries[0].content[0].value
    assert content.startswith("<p>12 sources</p>")
    outlets = re.findall(r" — (Outlet \d+)</li>", content)
    assert outlets == [f"Outlet {n:02}" for n in range(9)]  # one headline each
    assert f'/stories/{story}">and 3 more</a></li></ul>' in content
    assert parsed.entries[0].summary.endswith("Outlet 08 and 3 more")


def test_digest_filters_by_tag_and_time_window(client: FlaskClient, filled: Filled) -> None:
    tech = _html(client, "/?tag=tech")
    assert "Gamma item 1" in tech and "Alpha item 1" not in tech
    assert 'href="/tags/tech/feed.atom"' in tech
    recent = _html(client, "/?hours=1")
    assert "Alpha item 0" not in recent and "Earthquake shakes the capital" in recent
    assert client.get("/?tag=Bad!").status_code == 400
    assert client.get("/?hours=0").status_code == 400


def test_digest_pages_walk_back_with_keyset_cursors(client: FlaskClient, filled: Filled) -> None:
    seen: list[str] = []
    path = "/?limit=10"
    for _ in range(10):
        html = _html(client, path)
        tree = html5lib.parse(html, namespaceHTMLElements=False)
        latest = tree.find(".//section[@class='latest']")
        seen += [a.text or "" for a in latest.iterfind(".//li/h3/a")]
        older = latest.find(".//a[@rel='next']")
        if older is None:
            break
        path = older.get("href")
        assert "before=" in path and "limit=10" in path
        newer = _html(client, path).count('rel="prev"')
        assert newer == 1
    assert "Gamma item 8" in seen  # the oldest entry is reachable
    assert len(seen) == len(set(seen))


def test_story_page_lists_coverage_timeline_and_why(client: FlaskClient, filled: Filled) -> None:
    html = _html(client, f"/stories/{filled.big_story}")
    assert html.index("(gamma)") < html.index("(beta)") < html.index("(alpha)")  # oldest first
    assert "<svg" in html and 'role="img"' in html and "<rect" in html
    assert "similarity 0.90" in html and "earthquake" in html
    assert f'href="/stories/{filled.big_story}/feed.atom"' in html
    assert client.get("/stories/999999").status_code == 404


def test_an_article_two_feeds_carry_is_one_report_of_its_story(
    client: FlaskClient, store: Store, filled: Filled
) -> None:
    """Beta Post repeats Alpha's item 1 (one link): in a story with Gamma's report the
    article counts and shows once, "also in Beta Post", on every page and in the
    stories feed; the story has two sources, not three."""
    alpha, beta, gamma = filled.feed_ids
    original, copy = filled.entry_ids[alpha][4], filled.entry_ids[beta][-1]
    other = filled.entry_ids[gamma][4]
    store.save_assignments(
        [StoryAssignment(e, original, 0.8, ("item",)) for e in (original, copy, other)],
        [StoryLabel(original, "Alpha item 1", original, ("item",))],
    )

    page = _html(client, f"/stories/{original}")
    assert "<strong>2 sources</strong>" in page and "2 entries" in page
    assert page.count(">Alpha item 1</a></h3>") == 1 and "also in Beta Post" in page
    assert "Entries per hour: 2 entries" in page
    stories = _html(client, "/stories")
    block = stories[stories.index(">Alpha item 1<") :]
    assert "2 sources" in block[:400] and "Alpha Times, Gamma Wire</p>" in block[:600]
    digest = _html(client, "/")
    block = digest[digest.index(">Alpha item 1</a></h3>") :]
    block = block[: block.index("</article>")]
    assert "2 sources" in block and "Beta Post" not in block
    assert re.findall(r">([A-Z]\w+ \w+)</a></li>", block) == ["Gamma Wire"]
    parsed = feedparser.parse(client.get("/stories/feed.atom").data)
    (item,) = [e for e in parsed.entries if e.title == "Alpha item 1"]
    assert item.summary == "2 sources: Alpha Times, Gamma Wire"
    assert item.content[0].value.startswith("<p>2 sources</p>")
    assert "Beta Post" not in item.content[0].value


def test_an_old_entry_kept_out_of_grouping_says_so_on_its_story_page(
    client: FlaskClient, store: Store
) -> None:
    """An entry published 40 days before it was first seen is old news, a story of its
    own (`is_backlog`): its page says it was not grouped and why, not "Founded"."""
    feed_id = add_feed(store, "https://archive.example/feed.xml", "Archive", [])
    (old,) = save_entries(store, feed_id, [entry("old", "Bridge opens", 40 * 24 * 60)])
    store.save_assignments(
        [StoryAssignment(old, old, 1.0, ())], [StoryLabel(old, "Bridge opens", old, ())]
    )

    page = _html(client, f"/stories/{old}")
    assert "Not grouped: published 40 days before it was first seen" in page
    assert "Founded the story" not in page and "Why these are grouped" not in page
    assert "1 source" in page and "Entries per hour: 1 entry," in page


def test_an_entry_links_its_coverage_only_when_other_sources_cover_it(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    """An entry of a story of several sources links it, saying how many; two entries
    of one feed grouped together are no coverage, and their story page counts one
    source (not "1 sources")."""
    gamma = filled.feed_ids[2]
    first, second = filled.entry_ids[gamma][3:5]  # "Gamma item 0" and "Gamma item 1"
    store.save_assignments(
        [StoryAssignment(first, first, 1.0, ()), StoryAssignment(second, first, 0.5, ("gamma",))],
        [StoryLabel(first, "Gamma item 0", first, ("gamma",))],
    )

    html = _html(client, f"/sources/{gamma}")
    quake = html[html.index("Earthquake shakes the capital (gamma)") :]
    assert f'<a href="/stories/{filled.big_story}">coverage: 3 sources</a>' in quake[:600]
    assert f'href="/stories/{first}"' not in html

    story_page = _html(client, f"/stories/{first}")
    assert "<strong>1 source</strong> · 2 entries" in story_page


def test_headlines_and_summaries_carry_their_language(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    """The language an entry declares marks its headline and summary (the page around
    them is English) and its item in every feed; a declaration that is no language tag
    ("english") marks nothing."""
    feed_id = add_feed(store, "https://de.example/feed.xml", "Rundschau", ["world"])
    save_entries(
        store,
        feed_id,
        [
            entry("de-1", "Bahn streikt wieder", 1, language="de-de"),
            entry("en-1", "Declared in words", 2, language="english"),
        ],
    )
    html = _html(client, "/")
    assert '<h3 lang="de-de"><a href="https://news.example/de-1"' in html
    assert '<p class="summary" lang="de-de">Summary of Bahn streikt wieder</p>' in html
    assert '<h3><a href="https://news.example/en-1"' in html

    atom = feedparser.parse(client.get("/feed.atom").data)
    by_title = {e.title: e for e in atom.entries}
    assert by_title["Bahn streikt wieder"].title_detail.language == "de-de"
    assert by_title["Declared in words"].title_detail.language == "en"  # the feed's own
    items = {i["title"]: i for i in json.loads(client.get("/feed.json").data)["items"]}
    assert items["Bahn streikt wieder"]["language"] == "de-de"
    assert "language" not in items["Declared in words"]
    rss = client.get("/feed.rss").get_data(as_text=True)
    item = rss[rss.index("<title>Bahn streikt wieder</title>") :]
    assert "<dc:language>de-de</dc:language>" in item[: item.index("</item>")]


def _add_broken(store: Store, title: str) -> int:
    """A source whose last three fetches answered HTTP 500."""
    broken = add_feed(store, "https://broken.example/feed", title, ["tech"])
    save_entries(
        store, broken, [], last_status="error", last_error="fetch: HTTP 500", error_count=3
    )
    return broken


def test_sources_page_shows_health_and_sparklines(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    _add_broken(store, "Broken <Feed>")
    recovered = add_feed(store, "https://recovered.example/feed", "Recovered", [])
    note = "not well-formed XML, recovered: Entity 'uuml' not defined"
    save_entries(store, recovered, [], last_error=note)
    html = _html(client, "/sources")
    assert html.index("Broken &lt;Feed&gt;") < html.index("Alpha Times")  # failing first
    assert '<p class="error">fetch: HTTP 500</p>' in html and "1 failing" in html
    assert html.count('<tr class="failing">') == 1  # the rows follow the count's rule
    # a fetch that worked, with a defect in the document: a note, and not failing
    assert '<p class="note">not well-formed XML, recovered: Entity &#39;uuml&#39;' in html
    page = _html(client, f"/sources/{recovered}")
    assert "<dt>Note</dt>" in page and "<dd>0</dd>" in page
    assert html.count("<polyline") == 5  # a sparkline per source
    # a time wraps between the date and the clock, never inside the date ("2026-12-" / "07")
    day, clock = NOW.strftime("%Y-%m-%d"), NOW.strftime("%H:%M UTC")
    assert f'<span class="nowrap">{day}</span> <span class="nowrap">{clock}</span>' in html
    source = _html(client, f"/sources/{filled.feed_ids[0]}")
    assert "Alpha item 1" in source and "<polyline" in source
    # its rate as the list shows it: 12 entries published within the week, 1.7 a day
    assert "<dd>12, 1.7 per day" in source and ">1.7</span>" in html


def test_a_failing_source_says_what_to_do_and_a_removed_one_says_removed(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    gone = add_feed(store, "https://moved.example/feed", "Moved", [])
    save_entries(store, gone, [], last_status="error", last_error="fetch: HTTP 404", error_count=2)
    advice = "To do: check the URL: `aggregator add` with the site&#39;s address finds the feed"
    assert advice in _html(client, "/sources")
    assert "<dt>To do</dt><dd>check the URL" in _html(client, f"/sources/{gone}")
    _add_broken(store, "Broken")  # HTTP 500: nothing to do but wait (backoff)
    assert _html(client, "/sources").count("To do:") == 1

    listed = [SourceConfig(url=f.url, title=f.title, tags=f.tags) for f in store.get_feeds()]
    store.sync_sources([s for s in listed if s.url != "https://moved.example/feed"], NOW)
    html = _html(client, "/sources")
    row = html[html.index(">Moved</a>") :]
    assert '<span class="status ok">removed</span>' in row[: row.index("</tr>")]
    assert "To do:" not in html


def test_stories_page_and_tag_redirect(client: FlaskClient, filled: Filled) -> None:
    html = _html(client, "/stories")
    assert "Earthquake shakes the capital" in html and "Parliament votes on the budget" in html
    assert client.get("/tags/world").headers["Location"].endswith("/?tag=world")


# feeds


def test_every_feed_parses_with_links_ids_and_dates(client: FlaskClient, filled: Filled) -> None:
    paths = [*FEED_PATHS, f"/stories/{filled.big_story}/feed"]
    for base, fmt in ((base, fmt) for base in paths for fmt in FORMATS):
        response = client.get(f"{base}.{fmt}")
        assert response.status_code == 200, base
        if fmt == "json":
            document = json.loads(response.data)
            assert document["feed_url"] == f"http://127.0.0.1:8080{base}.json"
            assert document["items"] and all(item["id"] for item in document["items"])
            continue
        parsed = feedparser.parse(response.data)
        assert parsed.bozo == 0, (base, parsed.get("bozo_exception"))
        links = {link.rel: link.href for link in parsed.feed.links}
        assert links["self"] == f"http://127.0.0.1:8080{base}.{fmt}"
        assert parsed.entries and all(
            e.id and e.link and e.published_parsed for e in parsed.entries
        )


def test_entry_feed_carries_author_source_categories_enclosure(
    client: FlaskClient, filled: Filled
) -> None:
    parsed = feedparser.parse(client.get("/sources/1/feed.atom").data)
    podcast = next(e for e in parsed.entries if e.title.startswith("Podcast"))
    assert podcast.author == "Reporter alpha"
    assert podcast.source.title == "Alpha Times"
    assert [t.term for t in podcast.tags] == ["audio", "weekly"]
    (enclosure,) = podcast.enclosures
    assert enclosure.href == "https://cdn.example/alpha.mp3"
    assert enclosure.type == "audio/mpeg" and enclosure.length == "12345"
    assert podcast.content[0].type == "text/html" and "<b>notes</b>" in podcast.content[0].value
    rss = feedparser.parse(client.get("/sources/1/feed.rss").data)
    podcast = next(e for e in rss.entries if e.title.startswith("Podcast"))
    assert podcast.enclosures[0].type == "audio/mpeg" and podcast.author == "Reporter alpha"
    assert podcast.source.title == "Alpha Times"


def test_the_merged_feeds_list_the_other_sources_of_an_article_once_shown(
    client: FlaskClient, filled: Filled
) -> None:
    """Beta Post repeats Alpha's item 1: the merged feeds carry it once, and say where
    else it ran, as the digest does ("also in Beta Post")."""
    for fmt in ("atom", "rss"):
        parsed = feedparser.parse(client.get(f"/feed.{fmt}").data)
        repeated = [e for e in parsed.entries if e.title == "Alpha item 1"]
        assert len(repeated) == 1
        assert "Also in Beta Post" in repeated[0].content[0].value
        assert "Summary of Alpha item 1" in repeated[0].content[0].value
        others = [e for e in parsed.entries if e.title != "Alpha item 1"]
        assert not any("Also in" in e.get("content", [{"value": ""}])[0]["value"] for e in others)
    items = json.loads(client.get("/feed.json").data)["items"]
    (repeated,) = [i for i in items if i["title"] == "Alpha item 1"]
    assert repeated["content_html"].endswith("<p>Also in Beta Post</p>")


def test_titles_are_escaped_in_pages_and_feeds(store: Store, client: FlaskClient) -> None:
    feed_id = add_feed(store, "https://x.example/feed", "Feed <A>", ["world"])
    save_entries(store, feed_id, [entry("x", XSS_TITLE, 1)])
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;quotes&#39;" in html
    for path in ("/feed.atom", "/feed.rss"):
        parsed = feedparser.parse(client.get(path).data)
        assert parsed.bozo == 0
        assert parsed.entries[0].title == XSS_TITLE
    assert json.loads(client.get("/feed.json").data)["items"][0]["title"] == XSS_TITLE


def test_untitled_micro_posts_each_show_under_the_start_of_their_text(
    store: Store, client: FlaskClient
) -> None:
    feed_id = add_feed(store, "https://micro.example/feed", "Micro", ["world"])
    posts = [
        entry("m1", "", 1, summary="First note of the day, about the weather."),
        entry("m2", "", 2, summary="Second note: the train was late again."),
        entry("m3", "", 3, summary="Third note: " + "a long thought " * 20),
    ]
    save_entries(store, feed_id, posts)
    html = _html(client, "/")
    assert "(untitled)" not in html
    # every post is listed (the page once kept only the first of entries without a
    # title: they all had the same empty "headline")
    assert html.count("First note of the day, about the weather.") == 1  # not repeated
    assert "Second note: the train was late again." in html
    assert "Third note: a long thought a long thought" in html
    titles = [e.title for e in feedparser.parse(client.get("/feed.atom").data).entries]
    assert titles[:2] == [
        "First note of the day, about the weather.",
        "Second note: the train was late again.",
    ]
    assert titles[2].startswith("Third note: a long thought") and titles[2].endswith("\u2026")


def _latest_lines(html: str) -> list[tuple[str, str]]:
    """The newest-entries list of a digest page: ("entry", headline) or ("fold", the
    fold's link) per line, and the page's older cursor as ("older", href)."""
    tree = html5lib.parse(html, namespaceHTMLElements=False)
    latest = tree.find(".//section[@class='latest']")
    lines: list[tuple[str, str]] = []
    for item in latest.iterfind(".//ol/li"):
        heading = item.find("h3")
        if heading is not None:
            lines.append(("entry", "".join(heading.itertext())))
        else:
            link = item.find("a")
            lines.append(("fold", f"{link.get('href')} {link.text}"))
    older = latest.find(".//a[@rel='next']")
    if older is not None:
        lines.append(("older", older.get("href")))
    return lines


def test_a_batch_of_one_source_folds_in_the_latest_and_leaves_room_for_the_others(
    store: Store, client: FlaskClient
) -> None:
    # a newly added feed without dates: all 30 of its entries take the time they were
    # first seen, the newest of all, and once filled the whole first page
    batch_id = add_feed(store, "https://undated.example/feed", "Undated Weekly", [])
    batch = save_entries(store, batch_id, [entry(f"u{i}", f"Undated {i}", 0) for i in range(30)])
    for name, offset in (("Daily", 10), ("Hourly", 11)):  # alternating: no runs
        feed_id = add_feed(store, f"https://{name.lower()}.example/feed", name, [])
        items = [entry(f"{name}{i}", f"{name} {i}", offset + 2 * i) for i in range(20)]
        save_entries(store, feed_id, items)

    lines = _latest_lines(_html(client, "/?limit=10"))
    shown = [text for kind, text in lines if kind == "entry"]
    folds = [text for kind, text in lines if kind == "fold"]
    assert len(shown) + len(folds) == 10  # the fold takes one line, not 27
    others = [f"{name} {i}" for i in range(3) for name in ("Daily", "Hourly")]
    assert shown == ["Undated 0", "Undated 1", "Undated 2", *others]
    assert folds == [f"/sources/{batch_id}?before={batch[2]} 27 more entries from Undated Weekly"]
    behind = _html(client, folds[0].split()[0])  # the fold opens on the rest of the batch
    assert behind.index(">Undated 3<") < behind.index(">Undated 4<") < behind.index(">Undated 29<")
    assert ">Undated 2<" not in behind

    # walking older pages, every entry is on a page or behind a fold, none twice
    seen, folded, path = list(shown), 27, dict(lines).get("older")
    while path:
        lines = _latest_lines(_html(client, path))
        seen += [text for kind, text in lines if kind == "entry"]
        folded += sum(int(text.split()[1]) for kind, text in lines if kind == "fold")
        path = dict(lines).get("older")
    assert len(seen) == len(set(seen)) and len(seen) + folded == 70
    assert "Hourly 19" in seen

    # a list of one source is not folded: here, the batch's own tag
    store.sync_sources(
        [
            SourceConfig(url="https://undated.example/feed", title="Undated Weekly", tags=("x",)),
            SourceConfig(url="https://daily.example/feed", title="Daily"),
            SourceConfig(url="https://hourly.example/feed", title="Hourly"),
        ],
        NOW,
    )
    lines = _latest_lines(_html(client, "/?tag=x&limit=10"))
    assert [kind for kind, _ in lines] == ["entry"] * 10 + ["older"]
    back = _latest_lines(_html(client, f"/?tag=x&limit=10&after={batch[25]}"))  # newer
    assert [kind for kind, _ in back] == ["entry"] * 10 + ["older"]


def test_stories_feed_item_updates_when_an_outlet_joins(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    before = feedparser.parse(client.get("/stories/feed.atom").data)
    vote = next(e for e in before.entries if e.title.startswith("Parliament"))
    assert vote.id.endswith(f"story/{filled.small_story}") and "Beta Post" in vote.content[0].value
    assert "Gamma Wire" not in vote.content[0].value
    later = NOW + timedelta(minutes=5)
    gamma = filled.feed_ids[2]
    (new,) = save_entries(store, gamma, [entry("gamma-late", "Budget vote, late", 0)], now=later)
    store.save_assignments([StoryAssignment(new, filled.small_story, 0.6, ("budget",))])
    after = feedparser.parse(client.get("/stories/feed.atom").data)
    vote2 = next(e for e in after.entries if e.id == vote.id)
    assert vote2.updated_parsed > vote.updated_parsed
    assert "Gamma Wire" in vote2.content[0].value and "3 sources" in vote2.content[0].value


def test_feed_paging_follows_rfc5005_links(client: FlaskClient, filled: Filled) -> None:
    ids: list[str] = []
    url = "/feed.atom?limit=7"
    pages = 0
    while url:
        parsed = feedparser.parse(client.get(url.replace("http://127.0.0.1:8080", "")).data)
        assert parsed.bozo == 0
        links = {link.rel: link.href for link in parsed.feed.links}
        assert links["first"] == "http://127.0.0.1:8080/feed.atom?limit=7"
        if pages:
            assert "previous" in links
        ids += [e.id for e in parsed.entries]
        url = links.get("next", "")
        pages += 1
    everything = feedparser.parse(client.get("/feed.atom?limit=200").data)
    assert ids == [e.id for e in everything.entries] and pages == 6
    assert len(ids) == 36  # 37 stored, the repeated article once
    default = feedparser.parse(client.get("/feed.atom").data)
    assert len(default.entries) == 36  # under the default limit of 50
    assert client.get("/feed.atom?limit=201").status_code == 400
    for digits in ("%C2%B2", "%EF%BC%95", "-1", "1e3"):  # "²" and "５" are str.isdigit()
        for param in ("limit", "before", "after"):
            assert client.get(f"/feed.atom?{param}={digits}").status_code == 400, (param, digits)
        assert client.get(f"/?hours={digits}").status_code == 400, digits
    newer = json.loads(client.get(f"/feed.json?limit=5&after={ids[7].rsplit('/', 1)[1]}").data)
    assert [i["id"] for i in newer["items"]] == ids[2:7]


def test_a_source_feed_declares_the_source_language(store: Store, client: FlaskClient) -> None:
    feed_id = add_feed(store, "https://lemonde.example/rss", "Le Monde", ["fr"])
    save_entries(store, feed_id, [entry("m-1", "La une", 5)], language="fr")
    atom = client.get(f"/sources/{feed_id}/feed.atom").get_data(as_text=True)
    assert 'xml:lang="fr"' in atom.split("<entry", 1)[0]
    assert "<language>fr</language>" in client.get(f"/sources/{feed_id}/feed.rss").get_data(
        as_text=True
    )
    document = json.loads(client.get(f"/sources/{feed_id}/feed.json").data)
    assert document["language"] == "fr"
    assert document["icon"] == document["favicon"] == "http://127.0.0.1:8080/static/favicon.svg"
    assert "<icon>http://127.0.0.1:8080/static/favicon.svg</icon>" in atom  # the site's icon
    with client.get("/static/favicon.svg") as icon:  # a file response: close it
        assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert 'xml:lang="en"' in client.get("/feed.atom").get_data(as_text=True)  # the site's


def test_unknown_feeds_are_404(client: FlaskClient, filled: Filled) -> None:
    for path in (
        "/?tag=nope",
        "/tags/nope/feed.atom",
        "/sources/999/feed.rss",
        "/stories/999/feed.json",
        "/feed.xml",
        # ids beyond any database row: 404, not an overflow in the query (500)
        "/stories/9223372036854775808",
        "/sources/99999999999999999999999999",
        "/stories/99999999999999999999999/feed.atom",
        "/sources/9223372036854775808/feed.rss",
    ):
        assert client.get(path).status_code == 404, path
    assert client.get("/stories/2147483648").status_code == 404  # PostgreSQL's int4


# caching


def test_feeds_answer_304_to_etag_and_if_modified_since(
    client: FlaskClient, filled: Filled
) -> None:
    first = client.get("/feed.atom")
    assert first.headers["ETag"] and "max-age" in first.headers["Cache-Control"]
    assert first.headers["Last-Modified"] and first.headers["Vary"] == "Accept-Encoding"
    again = client.get("/feed.atom", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    since = client.get("/feed.atom", headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 304
    rss = client.get("/feed.rss", headers={"If-None-Match": first.headers["ETag"]})
    assert rss.status_code == 200  # each format has its own validator


def test_if_modified_since_sees_a_commit_stamped_before_the_last_response(
    client: FlaskClient, filled: Filled, store: Store
) -> None:
    """A worker stamps a fetch when it starts and may commit it seconds later: a client
    that only sends If-Modified-Since must still get the new entry, not a 304."""
    first = client.get("/feed.atom")
    time.sleep(1.0 - time.time() % 1.0 + 0.05)  # Last-Modified counts whole seconds
    late = entry("alpha-late", "Late commit of an early fetch", 2)
    save_entries(store, filled.feed_ids[0], [late], now=NOW - timedelta(minutes=1))
    since = client.get("/feed.atom", headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert since.status_code == 200
    assert b"Late commit of an early fetch" in since.data
    again = client.get("/feed.atom", headers={"If-Modified-Since": since.headers["Last-Modified"]})
    assert again.status_code == 304


def test_gzip_when_asked(client: FlaskClient, filled: Filled) -> None:
    plain = client.get("/feed.atom")
    zipped = client.get("/feed.atom", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert gzip.decompress(zipped.data) == plain.data
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    revalidated = client.get(
        "/feed.atom", headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]}
    )
    assert revalidated.status_code == 304
    assert (
        client.get("/", headers={"Accept-Encoding": "gzip"}).headers["Content-Encoding"] == "gzip"
    )


def test_rendered_responses_are_reused_until_the_store_changes(
    store: Store, make_app: Callable[..., Flask], filled: Filled
) -> None:
    app = make_app(VERSION_TTL=0)
    client, cache = app.test_client(), app.extensions["response_cache"]
    first = client.get("/feed.atom")
    misses = cache.misses
    for _ in range(3):
        assert client.get("/feed.atom").data == first.data
    assert cache.misses == misses and cache.hits >= 3
    later = NOW + timedelta(minutes=1)
    save_entries(store, filled.feed_ids[0], [entry("alpha-new", "Fresh news", 0)], now=later)
    changed = client.get("/feed.atom", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and b"Fresh news" in changed.data
    assert cache.misses == misses + 1


# health, metrics, headers


def test_healthz_follows_the_worker_heartbeat(store: Store, client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 503
    store.record_tick("w", datetime.now(UTC), 30)
    ok = client.get("/healthz")
    assert ok.status_code == 200 and ok.json is not None and ok.json["status"] == "ok"
    assert (ok.json["stories"], ok.json["covered_stories"]) == (0, 0)
    assert (ok.json["entries"], ok.json["ungrouped_entries"]) == (0, 0)
    store.record_tick("w", datetime.now(UTC) - timedelta(seconds=91), 30)
    assert client.get("/healthz").status_code == 503


def test_a_broken_config_file_shows_on_healthz_and_sources(
    store: Store, make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """The worker keeps its last good config and logs why; an operator who does not
    read the log sees it on /healthz and /sources."""
    path = write_config(tmp_path / "agg.toml", store.database_url, [])
    client = make_app(CONFIG_PATH=str(path), VERSION_TTL=0).test_client()
    store.record_tick("w", datetime.now(UTC), 30)
    assert client.get("/healthz").json["config_problem"] is None  # type: ignore[index]
    good = path.read_text()
    path.write_text(good + '\n[[feeds]]\nurl = "https://x.example/f"\ninterval = "30 minutes"\n')

    health = client.get("/healthz")
    assert health.status_code == 200  # the service goes on
    problem = health.json["config_problem"]  # type: ignore[index]
    assert problem.startswith(f"{path}:") and "interval" in problem
    assert "The config file has a problem" in _html(client, "/sources")
    path.write_text(good)
    assert client.get("/healthz").json["config_problem"] is None  # type: ignore[index]
    assert "The config file has a problem" not in _html(client, "/sources")


def test_metrics_in_prometheus_text(store: Store, client: FlaskClient, filled: Filled) -> None:
    store.record_tick("w", datetime.now(UTC), 30, poll=(1.25, 3))
    store.record_tick("w", datetime.now(UTC), 30)  # a heartbeat keeps the last poll
    single = filled.entry_ids[filled.feed_ids[2]][5]  # a story of one entry
    store.save_assignments([StoryAssignment(single, single, 1.0, ())], [])
    response = client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in response.get_data(as_text=True).splitlines()
        if line and not line.startswith("#")
    }
    assert samples["aggregator_feeds"] == 3 and samples["aggregator_feeds_broken"] == 0
    assert samples["aggregator_entries"] == 37 and samples["aggregator_stories"] == 3
    assert samples["aggregator_entries_ungrouped"] == 37 - 6  # 3 + 2 in stories, 1 alone
    assert samples["aggregator_stories_covered"] == 2  # shown as coverage: two sources
    assert samples['aggregator_feeds_by_status{status="ok"}'] == 3
    assert 0 <= samples["aggregator_last_tick_age_seconds"] < 60
    assert samples['aggregator_poll_duration_seconds{worker="w"}'] == 1.25
    assert samples['aggregator_poll_feeds{worker="w"}'] == 3
    assert samples["aggregator_workers"] == 1


def test_metrics_show_only_live_workers(store: Store, client: FlaskClient) -> None:
    """A worker that stopped (a deploy, a crash) is not counted and its last poll is not
    reported: with a series per process ever started, /metrics would grow forever."""
    now = datetime.now(UTC)
    store.record_tick("old", now - timedelta(seconds=91), 30, poll=(9.0, 100))
    store.record_tick("new", now, 30, poll=(1.0, 10))
    text = client.get("/metrics").get_data(as_text=True)
    assert "\naggregator_workers 1\n" in text
    assert 'worker="new"' in text and 'worker="old"' not in text


def test_every_response_carries_the_security_headers(client: FlaskClient, filled: Filled) -> None:
    for path in ("/", "/stories", "/sources", "/feed.atom", "/feed.json", "/metrics", "/nope"):
        response = client.get(path)
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path


def _asctime(http_date: str) -> str:
    """An HTTP date as C's asctime writes it ("Tue Dec  8 06:16:04 2026")."""
    when = parsedate_to_datetime(http_date)
    return f"{when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}"


def test_conditional_requests_follow_rfc_9110_in_flask_and_in_the_fast_path(
    make_app: Callable[..., Flask], filled: Filled
) -> None:
    """A weak or gzip-suffixed tag matches, "*" matches, If-None-Match wins over
    If-Modified-Since, a garbled date is no match: answered alike by the view (first
    request of each) and by the fast path (repeats)."""
    client = make_app(VERSION_TTL=0).test_client()
    first = client.get("/feed.atom?limit=7")
    etag, since = first.headers["ETag"].strip('"'), first.headers["Last-Modified"]
    cases = [
        ({"If-None-Match": f'W/"{etag}"'}, 304),
        ({"If-None-Match": f'"other", "{etag}-gzip"'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"', "If-Modified-Since": since}, 200),
        ({"If-Modified-Since": since}, 304),
        ({"If-Modified-Since": "yesterday"}, 200),
        ({"If-Modified-Since": _asctime(since)}, 304),  # RFC 9110 asks for it too
    ]
    for n, (headers, status) in enumerate(cases, start=1):
        path = f"/feed.atom?limit={'0' * n}7"  # a new raw URL: the view, then the fast path
        for served in ("view", "fast path"):
            assert client.get(path, headers=headers).status_code == status, (headers, served)
    assert client.application.extensions["fast_path"].served == len(cases)


def test_repeat_feed_requests_skip_flask_with_the_same_answer(
    make_app: Callable[..., Flask], filled: Filled
) -> None:
    app = make_app(VERSION_TTL=0)
    client, fast_path = app.test_client(), app.extensions["fast_path"]
    headers = {"Accept-Encoding": "gzip"}
    first = client.get("/tags/world/feed.rss?limit=5", headers=headers)
    assert fast_path.served == 0
    again = client.get("/tags/world/feed.rss?limit=5", headers=headers)
    assert fast_path.served == 1 and again.data == first.data
    names = ("ETag", "Last-Modified", "Cache-Control", "Vary", "Content-Type", "Content-Encoding",
             "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy")  # fmt: skip
    assert {n: again.headers.get(n) for n in names} == {n: first.headers.get(n) for n in names}
    etag = {"If-None-Match": first.headers["ETag"]}
    assert client.get("/tags/world/feed.rss?limit=5", headers=etag).status_code == 304
    since = {"If-Modified-Since": first.headers["Last-Modified"]}
    assert client.get("/tags/world/feed.rss?limit=5", headers=since).status_code == 304
    assert fast_path.served == 3
    page = client.get("/stories")
    repeat = client.get("/stories")
    assert (
        fast_path.served == 4
        and repeat.headers["X-Frame-Options"] == page.headers["X-Frame-Options"]
    )
    plain = client.get("/tags/world/feed.rss?limit=5")
    assert "Content-Encoding" not in plain.headers and gzip.decompress(first.data) == plain.data


def test_a_source_removed_from_the_config_leaves_the_merged_outputs(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    """Its entries stay stored and on its own page, but the digest and the merged feeds
    no longer show them, nor list it as another source of an article; listed again,
    it comes back with them."""
    configured = [SourceConfig(url=f.url, title=f.title, tags=f.tags) for f in store.get_feeds()]
    beta = next(s for s in configured if s.url == "https://beta.example/feed.xml")
    store.sync_sources([s for s in configured if s is not beta], NOW)

    html = _html(client, "/")
    assert "Beta item 1" not in html and "also in Beta Post" not in html
    assert "Alpha item 1" in html
    # an article the removed source carried first, repeated by a listed one, stays
    alpha = next(s for s in configured if s.url == "https://alpha.example/feed.xml")
    store.sync_sources([s for s in configured if s is not alpha], NOW)
    html = _html(client, "/")
    assert html.count(">Alpha item 1<") == 1 and "also in Beta Post" in html
    assert "Alpha item 2" not in html
    store.sync_sources([s for s in configured if s is not beta], NOW)
    titles = {e.title for e in feedparser.parse(client.get("/feed.atom").data).entries}
    assert "Alpha item 1" in titles and not any(t.startswith("Beta item") for t in titles)
    tagged = {e.title for e in feedparser.parse(client.get("/tags/world/feed.atom").data).entries}
    assert not any(t.startswith("Beta item") for t in tagged)
    assert "Beta item 1" in _html(client, f"/sources/{filled.feed_ids[1]}")  # its own page

    store.sync_sources(configured, NOW)
    assert "Beta item 1" in _html(client, "/")


def test_a_source_removed_from_the_config_leaves_its_stories(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    """Its reports no longer count as sources of the stories they joined, nor show on
    the story pages and feeds, nor its tags on the digest; listed again, they are back."""
    configured = [SourceConfig(url=f.url, title=f.title, tags=f.tags) for f in store.get_feeds()]
    gamma = next(s for s in configured if s.url == "https://gamma.example/feed.xml")
    store.sync_sources([s for s in configured if s is not gamma], NOW)

    story = store.get_story(filled.big_story)
    assert story is not None and story.source_count == 2
    assert story.sources == ("Alpha Times", "Beta Post")
    page = _html(client, f"/stories/{filled.big_story}")
    assert "Gamma Wire" not in page and "Earthquake shakes the capital (gamma)" not in page
    story_feed = client.get(f"/stories/{filled.big_story}/feed.atom").get_data(as_text=True)
    assert "(gamma)" not in story_feed and "(alpha)" in story_feed
    stories_feed = client.get("/stories/feed.atom").get_data(as_text=True)
    assert "Gamma Wire" not in stories_feed and "2 sources" in stories_feed
    digest = _html(client, "/")
    assert "Gamma Wire" not in digest and 'href="/?tag=tech"' not in digest
    assert "3 sources" not in digest and 'href="/?tag=world"' in digest

    store.sync_sources(configured, NOW)
    story = store.get_story(filled.big_story)
    assert story is not None and story.source_count == 3
    assert "Gamma Wire" in _html(client, f"/stories/{filled.big_story}")

    # moved permanently, removed, then listed again at the URL it moved to
    moved = "https://gamma.example/new.xml"
    save_entries(store, filled.feed_ids[2], [], url=moved)
    store.sync_sources([s for s in configured if s is not gamma], NOW)
    store.sync_sources([*(s for s in configured if s is not gamma), replace(gamma, url=moved)], NOW)
    story = store.get_story(filled.big_story)
    assert story is not None and story.source_count == 3 and "Gamma Wire" in story.sources


def test_a_failing_source_removed_from_the_config_no_longer_counts_as_failing(
    store: Store, client: FlaskClient, filled: Filled
) -> None:
    """It is not polled any more: /sources, /healthz and /metrics stop reporting it."""
    broken = _add_broken(store, "Broken")
    assert "1 failing" in _html(client, "/sources")
    listed = [
        SourceConfig(url=f.url, title=f.title, tags=f.tags)
        for f in store.get_feeds()
        if f.id != broken
    ]
    store.sync_sources(listed, NOW)

    html = _html(client, "/sources")
    assert "all healthy" in html and '<tr class="failing">' not in html
    assert "removed from config" in html
    row = html[html.index(">Broken</a>") :]
    assert '<td data-label="Next check">—</td>' in row[: row.index("</tr>")]  # not polled
    page = _html(client, f"/sources/{broken}")
    assert "<dt>Config</dt><dd>removed from the config: not polled" in page
    assert "<dt>Next check</dt><dd>—</dd>" in page
    assert json.loads(client.get("/healthz").data)["broken_feeds"] == 0
    assert "aggregator_feeds_broken 0" in client.get("/metrics").get_data(as_text=True)
