"""Feed routes: Atom 1.0, RSS 2.0 and JSON Feed 1.1 for everything, each tag, each
source, each story, and the stories feed (one item per story).

    /feed.{atom,rss,json}                    newest originals of every source
    /tags/<tag>/feed.{atom,rss,json}         newest originals of the tag's sources
    /sources/<id>/feed.{atom,rss,json}       one source's entries
    /stories/<id>/feed.{atom,rss,json}       one story's coverage
    /stories/feed.{atom,rss,json}            stories, newest-updated first

Every feed is paged (RFC 5005 section 3): `?limit=` (default 50, at most 200) and a
keyset cursor `?before=<id>` / `?after=<id>`; responses are cached until the store changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, request, url_for

from aggregator.models import Entry, Story
from aggregator.render import (
    STORY_OUTLETS,
    FeedItem,
    FeedMeta,
    item_from_entry,
    item_from_story,
    render_atom,
    render_json,
    render_rss,
    tag_uri,
)
from aggregator.store import EntryQuery
from aggregator.web.common import (
    ROW_ID,
    Page,
    Paging,
    absolute,
    authority,
    get_store,
    paginate,
    paging_args,
    serve,
    site_title,
)

bp = Blueprint("feeds", __name__)

FEED_LIMIT = 50
FEED_MAX_LIMIT = 200
FEED_MAX_AGE = 300  # seconds readers and proxies may reuse a feed
FORMAT = "<any(atom, rss, json):fmt>"
Renderer = Callable[[FeedMeta, Sequence[FeedItem]], bytes]
RENDERERS: dict[str, tuple[Renderer, str]] = {
    "atom": (render_atom, "application/atom+xml"),
    "rss": (render_rss, "application/rss+xml"),
    "json": (render_json, "application/feed+json"),
}
MIMETYPES = {fmt: mimetype for fmt, (_, mimetype) in RENDERERS.items()}


@dataclass(frozen=True)
class Scope:
    """Which entries a feed carries, and what to call it."""

    kind: str  # "all", "tag", "source", "story"
    title: str
    site_path: str
    site_query: tuple[tuple[str, str], ...] = ()
    tag: str | None = None
    feed_id: int | None = None
    story_id: int | None = None
    language: str | None = None  # a source's or a story's own (None: the site's, English)

    @property
    def uri_path(self) -> str:
        ident = self.tag or self.feed_id or self.story_id
        return f"feed/{self.kind}" + (f"/{ident}" if ident else "")


def feed_links(path_prefix: str, title: str) -> list[tuple[str, str, str]]:
    """(title, mimetype, URL) of a feed's three formats, for autodiscovery links."""
    names = {"atom": "Atom", "rss": "RSS", "json": "JSON Feed"}
    return [
        (f"{title} ({names[fmt]})", mimetype, f"{path_prefix}feed.{fmt}")
        for fmt, mimetype in MIMETYPES.items()
    ]


@bp.route(f"/feed.{FORMAT}")
def everything(fmt: str) -> Response:
    return _entries_feed(fmt, lambda: Scope("all", site_title(), "/"))


@bp.route(f"/tags/<tag>/feed.{FORMAT}")
def tag_feed(fmt: str, tag: str) -> Response:
    return _entries_feed(fmt, lambda: _tag_scope(tag))


@bp.route(f"/sources/<{ROW_ID}:feed_id>/feed.{FORMAT}")
def source_feed(fmt: str, feed_id: int) -> Response:
    return _entries_feed(fmt, lambda: _source_scope(feed_id))


@bp.route(f"/stories/<{ROW_ID}:story_id>/feed.{FORMAT}")
def story_feed(fmt: str, story_id: int) -> Response:
    return _entries_feed(fmt, lambda: _story_scope(story_id))


@bp.route(f"/stories/feed.{FORMAT}")
def stories_feed(fmt: str) -> Response:
    return _feed(fmt, _stories_page)


# Scopes are looked up when the feed is rendered (a cached feed costs no query); an
# unknown tag, source or story is a 404.


def _tag_scope(tag: str) -> Scope:
    if tag not in get_store().get_tags():
        abort(404)
    return Scope("tag", f"{site_title()}: {tag}", "/", (("tag", tag),), tag=tag)


def _source_scope(feed_id: int) -> Scope:
    feed = get_store().get_feed(feed_id)
    if feed is None:
        abort(404)
    title = f"{site_title()}: {feed.display_title}"
    return Scope(
        "source", title, f"/sources/{feed_id}", feed_id=feed_id, language=feed.language_tag
    )


def _story_scope(story_id: int) -> Scope:
    story = get_store().get_story(story_id)
    if story is None:
        abort(404)
    title = f"{site_title()}: {story.headline or 'story'}"
    return Scope(
        "story", title, f"/stories/{story_id}", story_id=story_id, language=story.language_tag
    )


# One feed = a scope, a keyset page of its rows and their items, in one of three formats.

FeedPage = tuple[Scope, Page[Any], list[FeedItem]]


def _feed(fmt: str, collect: Callable[[Paging], FeedPage]) -> Response:
    """Serve a feed from the cache, rendering `collect(paging)` in `fmt` on a miss."""
    paging = paging_args(FEED_LIMIT, FEED_MAX_LIMIT)

    def render(changed: datetime) -> tuple[bytes, str]:
        scope, page, items = collect(paging)
        meta = _meta(scope, paging, page, items, changed)
        renderer, mimetype = RENDERERS[fmt]
        return renderer(meta, items), mimetype

    return serve(("feed", request.path, paging), render, FEED_MAX_AGE, fast=True)


def _entries_feed(fmt: str, make_scope: Callable[[], Scope]) -> Response:
    def collect(paging: Paging) -> FeedPage:
        scope = make_scope()
        query = EntryQuery(
            limit=paging.limit + 1,
            before=paging.before,
            after=paging.after,
            feed_id=scope.feed_id,
            tag=scope.tag,
            story_id=scope.story_id,
        )
        page = paginate(get_store().get_entries_page(query), paging, lambda entry: entry.id)
        items = [item_from_entry(e, tag_uri(authority(), f"entry/{e.id}")) for e in page.items]
        return scope, page, items

    return _feed(fmt, collect)


def _stories_page(paging: Paging) -> FeedPage:
    """The stories feed: one item per story, newest-updated first."""
    store = get_store()
    rows = store.get_stories_page(paging.limit + 1, paging.before, paging.after)
    page = paginate(rows, paging, lambda story: story.id)
    coverage = store.get_story_outlets(page.items, STORY_OUTLETS)
    items = [_story_item(story, coverage.get(story.id, [])) for story in page.items]
    return Scope("stories", f"{site_title()}: stories", "/stories"), page, items


def _story_item(story: Story, entries: Sequence[Entry]) -> FeedItem:
    url = absolute(f"/stories/{story.id}")
    return item_from_story(story, entries, tag_uri(authority(), f"story/{story.id}"), url)


def _meta(
    scope: Scope, paging: Paging, page: Page[Any], items: Sequence[FeedItem], changed: datetime
) -> FeedMeta:
    """The feed's links: self, alternate page, and RFC 5005 first/next/previous."""
    limit = paging.limit_arg
    here = absolute(request.path)
    return FeedMeta(
        title=scope.title,
        feed_id=tag_uri(authority(), scope.uri_path),
        self_url=absolute(request.path, limit=limit, before=paging.before, after=paging.after),
        site_url=absolute(scope.site_path, **dict(scope.site_query)),
        subtitle=f"{scope.title}, newest first",
        updated=max((item.updated for item in items), default=changed),
        first_url=absolute(request.path, limit=limit),
        next_url=absolute(request.path, limit=limit, before=page.older) if page.older else None,
        prev_url=absolute(request.path, limit=limit, after=page.newer) if page.newer else None,
        feed_url=here,
        author=site_title(),
        language=scope.language or "en",
        icon_url=absolute(url_for("static", filename="favicon.svg")),
    )
