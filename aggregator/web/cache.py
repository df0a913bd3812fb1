"""Rendered responses kept in memory until the store changes, and HTTP caching on top:
ETag, Last-Modified, 304 answers to If-None-Match / If-Modified-Since, gzip.

A response is cached under a key the view builds from its validated parameters (never
the raw query string, so junk parameters cannot grow the cache) together with the store
version (`Store.web_version`, one small query). The version itself is reused for
`VERSION_TTL` seconds (default 1): on SQLite every query opens a connection (~2 ms),
which alone would cap a worker at a few hundred requests per second, so a hit costs a
dict look-up and, at most once a second, that query. A change shows within that second.
A miss renders, hashes and gzips once. Each process keeps its own bounded LRU.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from flask import Request, Response
from werkzeug.http import http_date

MAX_ENTRIES = 512  # rendered responses kept per process
GZIP_MIN_BYTES = 512  # smaller bodies are sent as they are


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

    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, tuple[Any, Rendered]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._version: tuple[float, Any] | None = None

    def version(self, fetch: Callable[[], Any], ttl: float) -> Any:
        """The store version, asked of the store at most once per `ttl` seconds."""
        now = time.monotonic()
        known = self._version
        if known is not None and now - known[0] < ttl:
            return known[1]
        value = fetch()
        self._version = (now, value)
        return value

    def get_or_render(
        self, key: Hashable, version: Any, render: Callable[[], Rendered]
    ) -> Rendered:
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] == version:
                self._items.move_to_end(key)
                self.hits += 1
                return found[1]
        rendered = render()  # outside the lock: other requests keep being served
        with self._lock:
            self.misses += 1
            self._items[key] = (version, rendered)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return rendered


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
    """RFC 9110 section 13.2.2: If-None-Match wins; If-Modified-Since only without it."""
    if request.if_none_match:
        if request.if_none_match.star_tag:
            return True
        return any(
            tag.removesuffix("-gzip") == rendered.etag for tag in request.if_none_match.as_set(True)
        )
    since = request.if_modified_since
    return since is not None and rendered.last_modified <= since


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
        if environ.get("REQUEST_METHOD") == "GET":
            key = self._routes.get((environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")))
            if key is not None:
                found = self._cache._items.get(key)
                if found is not None and found[0] == self._version():
                    self.served += 1
                    self._cache.hits += 1
                    return self._answer(environ, start_response, found[1])
        return self._app(environ, start_response)

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


def _matches(environ: dict[str, Any], rendered: Rendered) -> bool:
    """The same rule as `_not_modified`, on the raw headers."""
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
        return rendered.last_modified <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
