"""What every view shares: the store, absolute URLs, request parameters, keyset pages
and serving a cached rendering.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

from flask import Flask, Response, abort, current_app, request

from aggregator.config import file_stamp, load_config
from aggregator.exceptions import ConfigError
from aggregator.store import Store
from aggregator.web.cache import REFRESH_KEY, FastPath, Rendered, ResponseCache, respond

T = TypeVar("T")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TAG_PATTERN = re.compile(r"[a-z0-9_-]{1,32}")
MAX_HOURS = 24 * 90


ROW_ID = "int(max=2147483647)"
"""The URL converter of a story's or source's id: beyond the largest id a row can have
(ids are 32-bit integers on PostgreSQL), the path matches no route (404) instead of
overflowing the query (500)."""


def get_store() -> Store:
    store: Store = current_app.extensions["store"]
    return store


def get_cache() -> ResponseCache:
    cache: ResponseCache = current_app.extensions["response_cache"]
    return cache


def absolute(path: str, **query: Any) -> str:
    """The public URL of `path` (under BASE_URL) with the non-empty `query` values."""
    url = urljoin(current_app.config["BASE_URL"], path.lstrip("/"))
    return with_query(url, **query)


def with_query(url: str, **query: Any) -> str:
    params = {key: value for key, value in query.items() if value not in (None, "")}
    return f"{url}?{urlencode(params)}" if params else url


def authority() -> str:
    """The host of BASE_URL, for tag: URIs."""
    return urlsplit(current_app.config["BASE_URL"]).hostname or "localhost"


def site_title() -> str:
    title: str = current_app.config["SITE_TITLE"]
    return title


# request parameters


@dataclass(frozen=True)
class Paging:
    """`?limit=`, and a keyset cursor: `?before=<id>` (older) or `?after=<id>` (newer)."""

    limit: int
    default_limit: int
    before: int | None = None
    after: int | None = None

    @property
    def limit_arg(self) -> int | None:
        """The limit to repeat in links, None when it is the default."""
        return None if self.limit == self.default_limit else self.limit


def int_arg(name: str, minimum: int = 1, maximum: int | None = None) -> int | None:
    """An integer query parameter; 400 when it is not one or out of range."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:  # not "²", not "５"
        abort(400, f"{name} must be a positive integer")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        abort(400, f"{name} must be between {minimum} and {maximum}")
    return value


def paging_args(default: int, maximum: int) -> Paging:
    before, after = int_arg("before"), int_arg("after")
    if before is not None and after is not None:
        abort(400, "use before or after, not both")
    return Paging(int_arg("limit", 1, maximum) or default, default, before, after)


def tag_arg() -> str | None:
    tag = request.args.get("tag") or None
    if tag is not None and not TAG_PATTERN.fullmatch(tag):
        abort(400, "tag: lower-case letters, digits, - and _")
    return tag


def hours_arg() -> int | None:
    return int_arg("hours", 1, MAX_HOURS)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One keyset page: its rows and the cursors of the pages beside it."""

    items: list[T]
    older: int | None  # pass as ?before= for the next (older) page
    newer: int | None  # pass as ?after= for the previous (newer) page


def paginate(rows: Sequence[T], paging: Paging, id_of: Callable[[T], int]) -> Page[T]:
    """Cut rows fetched with `limit + 1` into a page, newest first."""
    limit = paging.limit
    if paging.after is not None:
        more = len(rows) > limit
        items = list(rows[1:] if more else rows)
        newer = id_of(items[0]) if more and items else None
        return Page(items, id_of(items[-1]) if items else None, newer)
    items = list(rows[:limit])
    older = id_of(items[-1]) if len(rows) > limit and items else None
    newer = id_of(items[0]) if paging.before is not None and items else None
    return Page(items, older, newer)


# serving


def version_time(version: Sequence[Any]) -> datetime:
    """The newest time in a store version: the Last-Modified of what it renders."""
    times = [value for value in version if isinstance(value, datetime)]
    return max(times, default=EPOCH)


def last_modified(version: Any, changed: datetime) -> datetime:
    """The Last-Modified of what is rendered at `version`: when this process first saw
    that version (so after all of its commits), or the data's newest time if later."""
    seen = get_cache().seen_at(version)
    return changed if seen is None else max(changed, seen)


def app_version(app: Flask) -> Any:
    """The store version `app` renders at, asked of the store at most once per
    `VERSION_TTL` seconds (also used by FastPath, outside a request)."""
    ttl = float(app.config.get("VERSION_TTL", 1.0))
    cache: ResponseCache = app.extensions["response_cache"]
    return cache.version(app.extensions["store"].web_version, ttl)


def store_version() -> Any:
    return app_version(current_app)


def serve(
    key: Hashable,
    render: Callable[[datetime], tuple[bytes, str]],
    max_age: int,
    fast: bool = False,
) -> Response:
    """Serve `key` from the response cache, rendering it on a miss.

    `render` gets the store's newest change time and returns (body, mimetype). With
    `fast`, repeats of this exact URL are answered by `FastPath` without Flask (only for
    responses that do not depend on the clock).
    """
    version = store_version()
    if fast:
        fast_path: FastPath = current_app.extensions["fast_path"]
        fast_path.remember(request.path, request.query_string.decode("latin-1"), key)

    def build() -> Rendered:
        changed = version_time(version)
        body, mimetype = render(changed)
        return Rendered(body, mimetype, last_modified(version, changed), max_age)

    claimed = request.environ.get(REFRESH_KEY) == key  # FastPath's refresh after a stale answer
    return respond(request, get_cache().get_or_render(key, version, build, claimed))


def config_problem() -> str | None:
    """What is wrong with the config file as it is now (`file:line: problem`), or None.
    The worker keeps the last good config when the file breaks and logs why; pages and
    /healthz say it too. Read again only when the file changed (size, time)."""
    path = current_app.config.get("CONFIG_PATH")
    if not path:
        return None
    stamp = file_stamp(Path(path))
    known = current_app.extensions.get("config_problem")
    if known is not None and known[0] == stamp:
        remembered: str | None = known[1]
        return remembered
    problem: str | None = None
    try:
        load_config(Path(path))
    except ConfigError as e:
        problem = str(e)
    current_app.extensions["config_problem"] = (stamp, problem)
    return problem
