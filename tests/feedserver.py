"""A real HTTP server on 127.0.0.1 for tests: static feeds, programmed routes and faults.

It owns nothing of the application; tests import it to put a real network peer in front
of the fetcher (no HTTP mocks). Typical use::

    with FeedServer(root=tmp_path) as server:          # files under tmp_path are feeds
        server.route("/gone", status=410)
        server.route("/feed", handler=[Response(200, body=b"<rss/>"), Response(304)])
        server.route_redirect_chain("/r", [301, 308], target="/feed.xml")
        server.route_gzip_bomb("/bomb")
        fetch(server.url("/feed.xml"))
        assert server.requests[-1].headers["if-none-match"] == '"abc"'

Static files get a strong ETag (hash of the content) and Last-Modified (file mtime) and
answer If-None-Match / If-Modified-Since with 304. Routes win over files. Every request is
recorded in `.requests` (thread-safe snapshot). Sleeps inside handlers wake up when the
server stops, so a stuck slow response never delays the end of a test.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

__all__ = [
    "FeedServer",
    "Headers",
    "RecordedRequest",
    "Response",
    "gzip_bomb_chunks",
    "zero_chunks",
]

CONTENT_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/xml",
    ".atom": "application/xml",
    ".rdf": "application/xml",
    ".json": "application/feed+json",
}
CHUNK = 64 * 1024  # size of the pieces generated bodies are written in


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping (repeated headers joined with ", ")."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in items:
            key = name.lower()
            if key in self._items:
                value = f"{self._items[key][1]}, {value}"
            self._items[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str  # the request target as sent, query string included
    headers: Headers
    time: float  # time.monotonic() when the request line was read
    client: tuple[str, int]  # peer address


HeaderInput: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]] | None
Body: TypeAlias = bytes | Iterable[bytes]


@dataclass
class Response:
    """What the server sends for one request.

    Attributes:
        status: HTTP status code.
        headers: extra headers (a mapping or a list of pairs, to repeat a header).
        body: bytes, or an iterable of byte chunks generated lazily (huge bodies).
        delay: seconds to wait before the status line (slow headers).
        chunk_delay: seconds to wait before each body chunk (slowloris).
        content_length: the Content-Length to announce; None computes it for bytes
            bodies and omits it (closing the connection after the body) for iterables.
            A value larger than what is sent makes a truncated body.
    """

    status: int = 200
    headers: HeaderInput = None
    body: Body = b""
    delay: float = 0.0
    chunk_delay: float = 0.0
    content_length: int | None = None


Reply: TypeAlias = Response | tuple[int, HeaderInput, Body]
Handler: TypeAlias = Callable[[RecordedRequest], Reply]
RouteSpec: TypeAlias = Handler | Sequence[Reply]


def zero_chunks(size: int, chunk: int = CHUNK, fill: bytes = b"x") -> Iterator[bytes]:
    """Yield `size` bytes of `fill` in pieces of `chunk` bytes, without holding them all."""
    block = (fill * chunk)[:chunk]
    left = size
    while left > 0:
        piece = block if left >= chunk else block[:left]
        left -= len(piece)
        yield piece


@lru_cache(maxsize=4)
def _gzip_bomb_parts(size: int) -> tuple[bytes, bytes, int, bytes]:
    """Return (header+first unit, repeated unit, repeat count, tail) of a gzip of zeros."""
    block = bytes(1024 * 1024)
    units, rest = divmod(size, len(block))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor restarts from an empty window, so every further
    # block of zeros compresses to exactly the same bytes: one unit, repeated.
    tail = comp.compress(bytes(rest)) + comp.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(units):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header, unit, units, tail + trailer


def gzip_bomb_chunks(size: int = 1 << 30) -> tuple[int, Iterator[bytes]]:
    """A gzip stream that inflates to `size` zero bytes, generated compactly.

    Returns:
        (compressed length, iterator of compressed chunks). 1 GiB is about 1 MB on the
        wire and is produced without ever holding the inflated data.
    """
    header, unit, units, tail = _gzip_bomb_parts(size)
    length = len(header) + len(unit) * units + len(tail)

    def chunks() -> Iterator[bytes]:
        yield header
        batch = unit * max(1, CHUNK // len(unit))
        per_batch = max(1, CHUNK // len(unit))
        full, left = divmod(units, per_batch)
        for _ in range(full):
            yield batch
        if left:
            yield unit * left
        yield tail

    return length, chunks()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FeedServer

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up mid-response are expected in fault tests: stay quiet."""


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """No access log on stderr."""

    def do_GET(self) -> None:  # noqa: N802
        self.server.owner._handle(self)

    do_HEAD = do_GET  # noqa: N815
    do_POST = do_GET  # noqa: N815


class FeedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 serving static feeds and programmed routes.

    Args:
        root: directory whose files are served as static feeds (optional).
        host: address to bind; keep the default for tests.
    """

    def __init__(self, root: Path | str | None = None, host: str = "127.0.0.1") -> None:
        self.root = Path(root) if root is not None else None
        self.host = host
        self._lock = threading.Lock()
        self._routes: dict[str, Handler] = {}
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FeedServer:
        """Bind a free port and serve on a daemon thread. Returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, 0), _RequestHandler)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close the socket."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._server is None:
            raise RuntimeError("FeedServer is not started")
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        """Absolute URL of `path` on this server: http://127.0.0.1:PORT/path."""
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{self.host}:{self.port}{path}"

    # -- recording ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests whose target (without query) is `path`."""
        return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def reset(self) -> None:
        """Forget recorded requests (routes stay)."""
        with self._lock:
            self._requests.clear()

    def clear_routes(self) -> None:
        """Forget every programmed route."""
        with self._lock:
            self._routes.clear()

    # -- programming -------------------------------------------------------------------

    def route(
        self,
        path: str,
        *,
        status: int = 200,
        body: bytes = b"",
        headers: HeaderInput = None,
        delay: float = 0.0,
        handler: RouteSpec | None = None,
    ) -> None:
        """Program the answer for `path` (exact target, or target without its query).

        Args:
            path: the path to answer, e.g. "/feed".
            status, body, headers, delay: a fixed response (delay before the status line).
            handler: instead of a fixed response, a callable `handler(request)` returning
                a `Response` or a `(status, headers, body)` tuple; or a list of those,
                returned in turn (the last one repeats once the list is used up).
        """
        fn: Handler
        if handler is None:
            fixed = Response(status, headers, body, delay=delay)
            fn = lambda _request: fixed  # noqa: E731
        elif callable(handler):
            fn = handler
        else:
            fn = _sequence_handler(list(handler))
        with self._lock:
            self._routes[path] = fn

    def route_response(self, path: str, response: Response) -> None:
        """Program `path` to answer with a fully specified `Response`."""
        self.route(path, handler=lambda _request: response)

    def route_slow_headers(self, path: str, delay: float, body: bytes = b"<rss/>") -> None:
        """Wait `delay` seconds before sending the status line."""
        self.route_response(path, Response(200, _xml(), body, delay=delay))

    def route_slowloris(
        self, path: str, *, interval: float = 0.2, size: int = 1 << 20, piece: bytes = b"<"
    ) -> None:
        """Send headers at once, then trickle `piece` every `interval` seconds, forever-ish.

        Content-Length announces `size` bytes so the client keeps waiting for more.
        """

        def handler(_request: RecordedRequest) -> Response:
            count = max(1, size // len(piece))
            return Response(
                200,
                _xml(),
                (piece for _ in range(count)),
                chunk_delay=interval,
                content_length=count * len(piece),
            )

        self.route(path, handler=handler)

    def route_gzip_bomb(self, path: str, size: int = 1 << 30) -> None:
        """Answer with `Content-Encoding: gzip` whose body inflates to `size` zeros."""

        def handler(_request: RecordedRequest) -> Response:
            length, chunks = gzip_bomb_chunks(size)
            headers = [("Content-Type", "application/xml"), ("Content-Encoding", "gzip")]
            return Response(200, headers, chunks, content_length=length)

        self.route(path, handler=handler)

    def route_huge_body(self, path: str, size: int = 64 << 20, *, length: bool = True) -> None:
        """Answer with `size` bytes generated lazily; `length=False` omits Content-Length."""

        def handler(_request: RecordedRequest) -> Response:
            return Response(200, _xml(), zero_chunks(size), content_length=size if length else None)

        self.route(path, handler=handler)

    def route_truncated(self, path: str, body: bytes, declared: int | None = None) -> None:
        """Announce `declared` bytes (default len(body)*2+1), send `body`, then hang up."""
        announced = declared if declared is not None else len(body) * 2 + 1
        self.route_response(path, Response(200, _xml(), body, content_length=announced))

    def route_redirect(self, path: str, location: str, status: int = 302) -> None:
        """Redirect `path` to `location` (absolute or relative) with `status`."""
        self.route(path, status=status, headers={"Location": location})

    def route_redirect_chain(
        self,
        path: str,
        statuses: Sequence[int],
        target: str,
    ) -> list[str]:
        """Chain redirects from `path` through intermediate hops to `target`.

        `statuses[i]` is the status of the i-th hop: `path` → `path`/hop1 → ... → target.
        Returns the list of paths that redirect (the first is `path`).
        """
        hops = [path] + [f"{path.rstrip('/')}/hop{i}" for i in range(1, len(statuses))]
        for i, (hop, status) in enumerate(zip(hops, statuses, strict=True)):
            nxt = hops[i + 1] if i + 1 < len(hops) else target
            self.route_redirect(hop, nxt, status)
        return hops

    def route_redirect_loop(self, path: str, other: str | None = None, status: int = 302) -> None:
        """`path` → `other` → `path` → ... forever (`other` defaults to path + "/loop")."""
        other = other or f"{path.rstrip('/')}/loop"
        self.route_redirect(path, other, status)
        self.route_redirect(other, path, status)

    # -- serving -----------------------------------------------------------------------

    def _handle(self, rh: _RequestHandler) -> None:
        request = RecordedRequest(
            method=rh.command,
            path=rh.path,
            headers=Headers(rh.headers.items()),
            time=time.monotonic(),
            client=(str(rh.client_address[0]), int(rh.client_address[1])),
        )
        with self._lock:
            self._requests.append(request)
            fn = self._routes.get(rh.path) or self._routes.get(rh.path.split("?", 1)[0])
        if rh.command == "POST":
            _drain_request_body(rh)
        if fn is not None:
            response = _as_response(fn(request))
        else:
            response = self._static(request)
        self._send(rh, response)

    def _static(self, request: RecordedRequest) -> Response:
        file = self._file_for(request.path)
        if file is None:
            return Response(404, {"Content-Type": "text/plain"}, b"not found")
        data = file.read_bytes()
        mtime = file.stat().st_mtime
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = {
            "Content-Type": CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream"),
            "ETag": etag,
            "Last-Modified": formatdate(mtime, usegmt=True),
        }
        if _not_modified(request.headers, etag, int(mtime)):
            return Response(304, headers)
        return Response(200, headers, data)

    def _file_for(self, target: str) -> Path | None:
        if self.root is None:
            return None
        rel = target.split("?", 1)[0].lstrip("/")
        root = self.root.resolve()
        file = (root / rel).resolve()
        if root not in file.parents or not file.is_file():
            return None
        return file

    def _send(self, rh: _RequestHandler, response: Response) -> None:
        if response.delay and self._stopping.wait(response.delay):
            rh.close_connection = True
            return
        body = response.body
        length = response.content_length
        if length is None and isinstance(body, bytes | bytearray):
            length = len(body)
        items = _header_items(response.headers)
        rh.send_response_only(response.status)
        if not any(name.lower() == "date" for name, _ in items):
            rh.send_header("Date", rh.date_time_string())
        for name, value in items:
            rh.send_header(name, value)
        if length is not None:
            rh.send_header("Content-Length", str(length))
        else:
            rh.send_header("Connection", "close")
        rh.end_headers()
        if rh.command == "HEAD" or response.status in (204, 304):
            return
        sent = self._write_body(rh, body, response.chunk_delay)
        if length is None or sent != length:
            rh.close_connection = True

    def _write_body(self, rh: _RequestHandler, body: Body, chunk_delay: float) -> int:
        chunks: Iterable[bytes] = [bytes(body)] if isinstance(body, bytes | bytearray) else body
        sent = 0
        try:
            for chunk in chunks:
                if chunk_delay and self._stopping.wait(chunk_delay):
                    break
                rh.wfile.write(chunk)
                rh.wfile.flush()
                sent += len(chunk)
        except (ConnectionError, OSError):
            rh.close_connection = True
        return sent


def _xml() -> dict[str, str]:
    return {"Content-Type": "application/xml"}


def _header_items(headers: HeaderInput) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def _as_response(value: Reply) -> Response:
    if isinstance(value, Response):
        return value
    status, headers, body = value
    return Response(status, headers, body)


def _sequence_handler(
    responses: list[Reply],
) -> Handler:
    if not responses:
        raise ValueError("route: empty response list")
    lock = threading.Lock()
    state = {"next": 0}

    def handler(_request: RecordedRequest) -> Reply:
        with lock:
            index = min(state["next"], len(responses) - 1)
            state["next"] += 1
        return responses[index]

    return handler


def _not_modified(headers: Headers, etag: str, mtime: int) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",")]
        return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)
    ims = headers.get("if-modified-since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False
    return mtime <= int(since.timestamp())


def _drain_request_body(rh: _RequestHandler) -> None:
    length = int(rh.headers.get("Content-Length") or 0)
    if length:
        rh.rfile.read(length)
