"""Rendered responses kept in memory until the store changes, and HTTP caching on top:
ETag, Last-Modified, 304 answers to If-None-Match / If-Modified-Since, gzip.

A response is cached under a key the view builds from its validated parameters (never
the raw query string, so junk parameters cannot grow the cache) together with the store
version (`Store.web_version`, one small query). A hit costs that query and a dict look-up;
a miss renders, hashes and gzips once. Each process keeps its own bounded LRU.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Request, Response

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
