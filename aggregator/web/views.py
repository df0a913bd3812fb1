"""Routes: the latest digest, the merged feeds and the health check."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for

from aggregator.render import FeedMeta, render_atom, render_rss
from aggregator.store import Store

bp = Blueprint("views", __name__)

PAGE_SIZE = 30
FEED_SIZE = 50
HEARTBEAT_TICKS = 3  # unhealthy after this many missed worker ticks


def get_store() -> Store:
    store: Store = current_app.extensions["store"]
    return store


@bp.route("/")
def index() -> str:
    page = request.args.get("page", 1, type=int)
    if page < 1:
        abort(404)
    entries = get_store().get_latest(limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
    return render_template(
        "index.html",
        entries=entries[:PAGE_SIZE],
        page=page,
        has_next=len(entries) > PAGE_SIZE,
        site_title=current_app.config["SITE_TITLE"],
    )


def _absolute(endpoint: str) -> str:
    return urljoin(current_app.config["BASE_URL"], url_for(endpoint))


def _feed_response(body_of: Any, mimetype: str) -> Response:
    store = get_store()
    changed = store.newest_change()
    validator = f"{changed.isoformat() if changed else '-'}:{store.count_entries()}:{mimetype}"
    etag = hashlib.sha256(validator.encode()).hexdigest()[:32]
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        entries = store.get_latest(limit=FEED_SIZE)
        meta = FeedMeta(
            title=current_app.config["SITE_TITLE"],
            feed_id=_absolute("views.index"),
            self_url=urljoin(current_app.config["BASE_URL"], request.path),
            site_url=_absolute("views.index"),
            updated=changed,
        )
        response = Response(body_of(meta, entries), mimetype=mimetype)
    response.set_etag(etag)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.route("/feed.atom")
def feed_atom() -> Response:
    return _feed_response(render_atom, "application/atom+xml")


@bp.route("/feed.rss")
def feed_rss() -> Response:
    return _feed_response(render_rss, "application/rss+xml")


@bp.route("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    store = get_store()
    now = datetime.now(UTC)
    tick = store.last_tick()
    body: dict[str, Any] = {**store.counts(), "last_tick": tick[0].isoformat() if tick else None}
    if tick is None:
        body["status"] = "unhealthy: no worker has ticked yet"
    elif now - tick[0] > timedelta(seconds=HEARTBEAT_TICKS * tick[1]):
        body["status"] = f"unhealthy: no worker tick for {int((now - tick[0]).total_seconds())}s"
    else:
        body["status"] = "ok"
    return body, 200 if body["status"] == "ok" else 503
