"""Rendered responses kept in memory until the store changes, and HTTP caching on top:
ETag, Last-Modified, 304 answers to If-None-Match / If-Modified-Since, gzip.

A response is cached under a key the view builds from its validated parameters (never
the raw query string, so junk parameters cannot grow the cache) together with the store
version (`Store.web_version`, one small query). The version itself is reused for
`VERSION_TTL` seconds (default 1): on SQLite every query opens a connection (~2 ms),
which alone would cap a worker at a few hundred requests per second, so a hit costs a
dict look-up and, at most once a second, that query. A change is seen within that second.
A miss renders, hashes and gzips once. Each process keeps its own bounded LRU.

When the store changes, the first request for a page that was current a moment ago does
not wait for the new rendering. A page may be sent as long as its version was seen to be
the store's at most `STALE_SECONDS` ago (default: twice `VERSION_TTL`, so 2 s): within
that bound the previous bytes are sent (with their own ETag and Last-Modified, so a 304
only ever confirms the bytes being sent) and the page is rendered again right after that
response is sent. One request per page renders at a time (single flight); the others
keep getting the previous bytes, or wait for that rendering when there are none or they
are older than the bound. So a page never shows the store as it was more than
`STALE_SECONDS` ago; with `VERSION_TTL` alone it would be at most `VERSION_TTL` ago, and
every change would make the next request wait for a rendering.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any

from flask import Request, Response
from werkzeug.http import http_date
from werkzeug.wsgi import ClosingIterator

MAX_ENTRIES = 512  # rendered responses kept per process
GZIP_MIN_BYTES = 512  # smaller bodies are sent as they are
CONFIRMED_VERSIONS = 64  # recent store versions whose last sighting is remembered
RENDER_WAIT_SECONDS = 30.0  # longest wait for another request's rendering of a page
REFRESH_KEY = "aggregator.refresh"  # WSGI environ flag: render even if an older page may do


@dataclass
class Rendered:
    """One rendered response body with its validators."""

    body: bytes
    mimetype: str
    last_modified: datetime
    max_age: int = 300
    etag: str = ""
    gzipped: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.etag = hashlib.sha256(self.body).hexdigest()[:32]
        self.last_modified = self.last_modified.astimezone(UTC).replace(microsecond=0)
        if len(self.body) >= GZIP_MIN_BYTES:
            self.gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)


class ResponseCache:
    """A thread-safe LRU of `Rendered` bodies, each tagged with the store version."""

    def __init__(self, size: int = MAX_ENTRIES, stale_seconds: float = 2.0) -> None:
        self._size = size
        self.stale_seconds = stale_seconds
        self._items: OrderedDict[Hashable, tuple[Any, Rendered]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.stale = 0  # responses that sent the previous rendering during a re-render
        self._version: tuple[float, Any] | None = None
        # Each recent version: when this process first saw it (wall clock, see `seen_at`)
        # and when it was last seen to be the store's (monotonic seconds), most recent last.
        self._sightings: OrderedDict[Any, tuple[datetime, float]] = OrderedDict()
        self._rendering: dict[Hashable, threading.Event] = {}

    def version(self, fetch: Callable[[], Any], ttl: float) -> Any:
        """The store version, asked of the store at most once per `ttl` seconds."""
        now = time.monotonic()
        known = self._version
        if known is not None and now - known[0] < ttl:
            return known[1]
        value = fetch()
        with self._lock:
            self._version = (now, value)
            known_since = self._sightings.get(value)
            first = known_since[0] if known_since else datetime.now(UTC)
            self._sightings[value] = (first, now)
            self._sightings.move_to_end(value)
            while len(self._sightings) > CONFIRMED_VERSIONS:
                self._sightings.popitem(last=False)
        return value

    def seen_at(self, version: Any) -> datetime | None:
        """When this process first saw `version` as the store's: a time after every
        commit the version holds. The newest time stamped in the data is not: a worker
        stamps a fetch when it starts and may commit it seconds later, behind a newer
        stamp, and a Last-Modified taken from the data alone would then let a client that
        sends only If-Modified-Since keep the older page (a wrong 304)."""
        with self._lock:
            sighting = self._sightings.get(version)
            return sighting[0] if sighting else None

    def current(self, key: Hashable, version: Any) -> Rendered | None:
        """The cached rendering of `key` if it was made at `version`."""
        found = self._items.get(key)
        if found is not None and found[0] == version:
            return found[1]
        return None

    def previous(self, key: Hashable, version: Any) -> tuple[Rendered, bool] | None:
        """An older rendering of `key` that may still be sent while `key` is rendered
        again: its version was the store's at most `stale_seconds` ago. With it, True
        when the caller has claimed that re-rendering and must run `refresh` (after its
        response), False when another request is already rendering.
        """
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] == version or not self._fresh_enough(found[0]):
                return None
            claimed = key not in self._rendering
            if claimed:
                self._rendering[key] = threading.Event()
            self.stale += 1
            return found[1], claimed

    def _fresh_enough(self, version: Any) -> bool:
        sighting = self._sightings.get(version)
        return sighting is not None and time.monotonic() - sighting[1] <= self.stale_seconds

    def release(self, key: Hashable) -> None:
        """End a claim on rendering `key` (whether or not it rendered)."""
        with self._lock:
            self._release_locked(key)

    def get_or_render(
        self, key: Hashable, version: Any, render: Callable[[], Rendered], claimed: bool = False
    ) -> Rendered:
        """The rendering of `key` at `version`, rendering it on a miss. A request that
        finds `key` being rendered by another sends the previous rendering if it may
        (see `previous`), or waits for that one; `claimed` says the caller already
        holds the claim (a refresh after a stale response).
        """
        owner = claimed
        while True:
            with self._lock:
                found = self._items.get(key)
                if found is not None and found[0] == version:
                    self._items.move_to_end(key)
                    self.hits += 1
                    if owner:
                        self._release_locked(key)
                    return found[1]
                event = self._rendering.get(key)
                if owner or event is None:
                    if event is None:
                        self._rendering[key] = threading.Event()
                    owner = True
                    break
                if found is not None and self._fresh_enough(found[0]):
                    self.stale += 1
                    return found[1]
            if not event.wait(RENDER_WAIT_SECONDS):
                break  # the other rendering is stuck: render without waiting for it
        try:
            rendered = render()  # outside the lock: other requests keep being served
            with self._lock:
                self.misses += 1
                self._items[key] = (version, rendered)
                self._items.move_to_end(key)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
            return rendered
        finally:
            if owner:
                self.release(key)

    def _release_locked(self, key: Hashable) -> None:
        event = self._rendering.pop(key, None)
        if event is not None:
            event.set()


def respond(request: Request, rendered: Rendered) -> Response:
    """A 200 (gzipped when the client accepts it) or a 304 for `rendered`."""
    use_gzip = rendered.gzipped is not None and _accepts_gzip(request)
    etag = rendered.etag + ("-gzip" if use_gzip else "")
    if _not_modified(request, rendered):
        response = Response(status=304)
    else:
        body = rendered.gzipped if use_gzip and rendered.gzipped is not None else rendered.body
        response = Response(body, mimetype=rendered.mimetype)
        if use_gzip:
            response.headers["Content-Encoding"] = "gzip"
    response.set_etag(etag)
    response.last_modified = rendered.last_modified
    response.headers["Cache-Control"] = f"public, max-age={rendered.max_age}"
    response.headers["Vary"] = "Accept-Encoding"
    return response


def _accepts_gzip(request: Request) -> bool:
    return request.accept_encodings["gzip"] > 0


def _not_modified(request: Request, rendered: Rendered) -> bool:
    return _matches(request.environ, rendered)


class FastPath:
    """WSGI middleware answering repeat requests for cached feeds without Flask.

    Views that opt in (`serve(..., fast=True)`, the feeds) record which cache key a raw
    (path, query string) produced; a later GET for the same raw URL whose cached
    rendering is still current is answered here, with the same headers Flask would
    send, 304 included. Anything else goes to the app. Keys only ever come from
    responses the app rendered, so junk URLs never reach this map.
    """

    def __init__(
        self,
        app: Callable[..., Any],
        cache: ResponseCache,
        version: Callable[[], Any],
        headers: list[tuple[str, str]],
    ) -> None:
        self._app = app
        self._cache = cache
        self._version = version
        self._headers = headers
        self._routes: OrderedDict[tuple[str, str], Hashable] = OrderedDict()
        self.served = 0

    def remember(self, path: str, query: str, key: Hashable) -> None:
        with self._cache._lock:
            self._routes[(path, query)] = key
            while len(self._routes) > self._cache._size:
                self._routes.popitem(last=False)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") == "GET" and REFRESH_KEY not in environ:
            key = self._routes.get((environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")))
            if key is not None:
                version = self._version()
                rendered = self._cache.current(key, version)
                if rendered is not None:
                    self.served += 1
                    self._cache.hits += 1
                    return self._answer(environ, start_response, rendered)
                previous = self._cache.previous(key, version)
                if previous is not None:
                    self.served += 1
                    body = self._answer(environ, start_response, previous[0])
                    if not previous[1]:
                        return body  # another request is rendering the page
                    return ClosingIterator(body, partial(self._refresh, environ, key))
        return self._app(environ, start_response)

    def _refresh(self, environ: dict[str, Any], key: Hashable) -> None:
        """Render `key` again once the previous bytes have been sent: the same request
        through the app, without its conditional headers, its answer discarded.
        """
        replay = {name: value for name, value in environ.items() if not name.startswith("HTTP_IF_")}
        replay[REFRESH_KEY] = key
        replay["wsgi.input"] = io.BytesIO(b"")
        try:
            result = self._app(replay, _discard)
            close = getattr(result, "close", None)
            if close is not None:
                close()
        finally:
            self._cache.release(key)

    def _answer(
        self, environ: dict[str, Any], start_response: Callable[..., Any], rendered: Rendered
    ) -> Any:
        use_gzip = rendered.gzipped is not None and _wants_gzip(
            environ.get("HTTP_ACCEPT_ENCODING", "")
        )
        etag = rendered.etag + ("-gzip" if use_gzip else "")
        headers = [
            ("ETag", f'"{etag}"'),
            ("Last-Modified", http_date(rendered.last_modified)),
            ("Cache-Control", f"public, max-age={rendered.max_age}"),
            ("Vary", "Accept-Encoding"),
            *self._headers,
        ]
        if rendered.mimetype == "text/html":
            headers.append(("X-Frame-Options", "DENY"))
        if _matches(environ, rendered):
            start_response("304 NOT MODIFIED", headers)
            return [b""]
        body = rendered.gzipped if use_gzip and rendered.gzipped is not None else rendered.body
        headers += [
            ("Content-Type", _content_type(rendered.mimetype)),
            ("Content-Length", str(len(body))),
        ]
        if use_gzip:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]


def _discard(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return lambda data: None


def _content_type(mimetype: str) -> str:
    if mimetype.startswith("text/") or mimetype.endswith("+xml"):
        return f"{mimetype}; charset=utf-8"
    return mimetype


def _wants_gzip(header: str) -> bool:
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = (
                params.strip().removeprefix("q=").strip()
                if params.strip().startswith("q=")
                else "1"
            )
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def _matches(environ: Mapping[str, Any], rendered: Rendered) -> bool:
    """Whether the request's validators match (RFC 9110 section 13.2.2: If-None-Match
    wins; If-Modified-Since only without it), read off the raw headers: the same rule for
    Flask's views and for `FastPath`, which answers before Flask parses anything."""
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match:
        for tag in if_none_match.split(","):
            tag = tag.strip()
            if tag == "*":
                return True
            value = tag.removeprefix("W/").strip('"').removesuffix("-gzip")
            if value == rendered.etag:
                return True
        return False
    since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if not since:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None:  # asctime ("Tue Dec  8 06:16:04 2026") and "-0000": UTC
        when = when.replace(tzinfo=UTC)
    return rendered.last_modified <= when
