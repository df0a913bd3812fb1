"""Page routes: the digest, stories, sources, health and metrics.

    /                       digest (?tag=, ?hours=, ?limit=, ?before= / ?after=)
    /tags/<tag>             → /?tag=<tag>
    /stories                stories, newest-updated first (paged)
    /stories/<id>           one story's coverage in time order, timeline, why grouped
    /sources                every source with its health and entries per day
    /sources/<id>           one source: health and its newest entries (paged)
    /healthz                JSON counts and the worker heartbeat (503 when stale)
    /metrics                Prometheus text format

Pages are cached like feeds (see `cache.py`); a page that depends on the clock (`?hours=`,
the sources' next checks and entries per day) puts the current minute into its cache key
and is always served through Flask; the others repeat through `FastPath`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from aggregator.models import Entry, Story, backlog_reason, heartbeat_is_fresh, own_reports
from aggregator.store import EntryQuery
from aggregator.web import charts
from aggregator.web.common import (
    ROW_ID,
    config_problem,
    get_store,
    hours_arg,
    paginate,
    paging_args,
    serve,
    site_title,
    tag_arg,
)
from aggregator.web.digest import build_digest
from aggregator.web.feeds import feed_links
from aggregator.web.metrics import metrics_text
from aggregator.wording import counted

bp = Blueprint("views", __name__)

PAGE_SIZE = 30
PAGE_MAX = 200
PAGE_MAX_AGE = 60
TOP_STORIES_HOURS = 48  # top stories look this far back unless ?hours= says otherwise
SPARK_DAYS = 14


def _html(template: str, **context: Any) -> bytes:
    context.setdefault("feeds", feed_links("/", site_title()))
    return render_template(template, site_title=site_title(), **context).encode("utf-8")


def _now() -> datetime:
    return datetime.now(UTC)


def _minute(now: datetime) -> int:
    return int(now.timestamp() // 60)


@bp.route("/")
def index() -> Response:
    tag, hours = tag_arg(), hours_arg()
    paging = paging_args(PAGE_SIZE, PAGE_MAX)
    now = _now()
    clock = _minute(now) if hours else None

    def render(changed: datetime) -> tuple[bytes, str]:
        since = now - timedelta(hours=hours) if hours else None
        # Without ?hours= the top stories are those of the 48 hours up to the store's
        # newest change, so the page depends on the store only and is cached as a feed is.
        stories_since = since or changed - timedelta(hours=TOP_STORIES_HOURS)
        digest, tags = build_digest(get_store(), paging, tag, since, stories_since)
        if tag is not None and tag not in tags:
            abort(404)  # as its feeds are
        feeds = feed_links(f"/tags/{tag}/", f"{site_title()}: {tag}") if tag else None
        empty = not digest.latest.items and not digest.top
        body = _html(
            "index.html",
            totals=get_store().counts() if empty else None,  # what to do next, when empty
            digest=digest,
            tag=tag,
            hours=hours,
            paging=paging,
            tags=tags,
            **({"feeds": feeds} if feeds else {}),
        )
        return body, "text/html"

    return serve(("index", tag, hours, paging, clock), render, PAGE_MAX_AGE, fast=not hours)


@bp.route("/tags/<tag>")
def tag_page(tag: str) -> Response:
    return redirect(url_for("views.index", tag=tag))  # type: ignore[return-value]


@bp.route("/stories")
def stories() -> Response:
    paging = paging_args(PAGE_SIZE, PAGE_MAX)

    def render(_changed: datetime) -> tuple[bytes, str]:
        store = get_store()
        rows = store.get_stories_page(paging.limit + 1, paging.before, paging.after)
        page = paginate(rows, paging, lambda story: story.id)
        feeds = feed_links("/stories/", f"{site_title()}: stories")
        return _html("stories.html", page=page, paging=paging, feeds=feeds), "text/html"

    return serve(("stories", paging), render, PAGE_MAX_AGE, fast=True)


@bp.route(f"/stories/<{ROW_ID}:story_id>")
def story(story_id: int) -> Response:
    def render(_changed: datetime) -> tuple[bytes, str]:
        store = get_store()
        found = store.get_story(story_id)
        if found is None:
            abort(404)
        coverage = own_reports(store.get_story_coverage([story_id]).get(story_id, []))
        body = _html(
            "story.html",
            story=found,
            coverage=coverage,
            reasons=store.get_group_reasons(story_id),
            old_news=_old_news(found, coverage),
            timeline=charts.timeline([entry.published_at for entry in coverage]),
            outlets=len({entry.feed_id for entry in coverage}),
            feeds=feed_links(f"/stories/{story_id}/", f"Story: {found.headline}"),
        )
        return body, "text/html"

    return serve(("story", story_id), render, PAGE_MAX_AGE, fast=True)


def _old_news(story: Story, coverage: Sequence[Entry]) -> str | None:
    """Why the story's only entry was kept out of grouping as old news (`is_backlog`),
    in words; else None."""
    if len(coverage) != 1 or coverage[0].id != story.id:
        return None
    return backlog_reason(coverage[0], current_app.config["GROUP_WINDOW"])


@bp.route("/sources")
def sources() -> Response:
    now = _now()

    def render(_changed: datetime) -> tuple[bytes, str]:
        store = get_store()
        today = now.date()
        since = datetime.combine(today - timedelta(days=SPARK_DAYS - 1), datetime.min.time(), UTC)
        daily = store.get_daily_counts(since)
        feeds = sorted(store.get_feeds(now), key=lambda f: (not f.failing, f.display_title.lower()))
        rows = [(f, charts.sparkline(daily.get(f.id, {}), today, SPARK_DAYS)) for f in feeds]
        broken = sum(1 for feed in feeds if feed.failing)
        problem = config_problem()  # in the page's cache key too
        page = _html("sources.html", rows=rows, broken=broken, days=SPARK_DAYS, problem=problem)
        return page, "text/html"

    return serve(("sources", _minute(now), config_problem()), render, PAGE_MAX_AGE)


@bp.route(f"/sources/<{ROW_ID}:feed_id>")
def source(feed_id: int) -> Response:
    paging = paging_args(PAGE_SIZE, PAGE_MAX)
    now = _now()

    def render(_changed: datetime) -> tuple[bytes, str]:
        store = get_store()
        feed = store.get_feed(feed_id, now)
        if feed is None:
            abort(404)
        query = EntryQuery(paging.limit + 1, paging.before, paging.after, feed_id=feed_id)
        page = paginate(store.get_entries_page(query), paging, lambda entry: entry.id)
        today = now.date()
        since = datetime.combine(today - timedelta(days=SPARK_DAYS - 1), datetime.min.time(), UTC)
        spark = charts.sparkline(store.get_daily_counts(since).get(feed_id, {}), today, SPARK_DAYS)
        body = _html(
            "source.html",
            feed=feed,
            page=page,
            paging=paging,
            spark=spark,
            healthy=not feed.failing,
            feeds=feed_links(f"/sources/{feed_id}/", f"{site_title()}: {feed.display_title}"),
        )
        return body, "text/html"

    return serve(("source", feed_id, paging, _minute(now)), render, PAGE_MAX_AGE)


@bp.route("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    store = get_store()
    now = _now()
    tick = store.last_tick()
    body: dict[str, Any] = {**store.counts(), "last_tick": tick[0].isoformat() if tick else None}
    body["config_problem"] = config_problem()  # the worker goes on with its last good one
    if tick is None:
        body["status"] = "unhealthy: no worker has ticked yet"
    elif not heartbeat_is_fresh(tick[0], tick[1], now):
        body["status"] = f"unhealthy: no worker tick for {int((now - tick[0]).total_seconds())}s"
    else:
        body["status"] = "ok"
    return body, 200 if body["status"] == "ok" else 503


@bp.route("/metrics")
def metrics() -> Response:
    text = metrics_text(get_store(), _now())
    response = Response(text, mimetype="text/plain")
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_filter("when")
def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


@bp.app_template_filter("counted")
def counted_filter(number: int, singular: str, plural: str | None = None) -> str:
    return counted(number, singular, plural)


@bp.app_template_filter("iso")
def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@bp.app_template_global("page_url")
def page_url(**changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    args: dict[str, Any] = dict(request.args.items())
    args.pop("before", None)
    args.pop("after", None)
    args.update(changes)
    values = {**(request.view_args or {}), **{k: v for k, v in args.items() if v not in (None, "")}}
    return url_for(request.endpoint or "views.index", **values)
