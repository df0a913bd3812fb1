"""Parsing in child processes, so that both cores work when parsing is the bottleneck.

`ParsePool.parse` returns exactly what `aggregator.parse.parse_feed` returns and raises
the same `ParseError`; documents up to `inline_max_bytes` are parsed in the calling
thread (for them the round trip costs more than the parse, see `bench/poll.py
threshold`). Each child is a plain `python -c` subprocess (no fork of a process holding
threads, sockets or database connections; nothing of the parent's `__main__` is
imported) that imports the parser once and answers one document at a time over its
stdin/stdout pipes. Because a child works on one document at a time, the pool knows
which document a child was given when it died:

- a child that exits or is killed while parsing (a crash in C code, the OOM killer)
  turns into `ParseError("parse: the parser process crashed ...")` for *that* document;
  the child is replaced on the next parse and the other documents are not affected;
- a child that takes longer than `timeout` seconds is killed and its document gets
  `ParseError("parse: gave up ...")`;
- a child found dead *between* documents is replaced before it is given one.

What crosses the process boundary, and why that is safe: no pickle (RELIABILITY S10).
The parent sends a JSON header it built (URL, Content-Type, fetch time, entry cap)
followed by the feed's bytes, raw; the child answers with JSON of plain values (strings,
numbers, null, lists), which the parent turns back into our dataclasses field by field
(datetimes travel as ISO strings). JSON can only ever make plain values, so even a
child subverted by a hostile document cannot make the parent build or run anything.

The children exit when their stdin closes: on `close()`, and also when the parent dies
without closing (the pipe's end closes with it), so no child outlives its parent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

from aggregator.exceptions import ParseError
from aggregator.models import Enclosure, EntryData, ParsedFeed

INLINE_MAX_BYTES = 4 * 1024
"""Documents up to this size are parsed in the calling thread (measured: below ~4 KB
the IPC round trip, ~0.3-0.5 ms, is larger than the parse itself)."""

DEFAULT_WORKERS = 2
PARSE_TIMEOUT = 120.0  # seconds a child may spend on one document
START_TIMEOUT = 120.0  # seconds a new child may take to import the parser
STOP_TIMEOUT = 10.0  # seconds a closing child gets before it is killed

_HEADER = struct.Struct("!QQ")  # lengths of the JSON part and of the raw bytes after it
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_CHILD_CODE = "from aggregator.parsepool import child_main; child_main()"
_READY = "ready"

_WARM_UP = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
    b"<title>x</title><link>https://example.org/x</link><description>&lt;p&gt;y&lt;/p&gt;"
    b"</description><pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate></item></channel></rss>"
)


# --- plain values: what crosses the pipes ---------------------------------------------


def _kinds(cls: type) -> tuple[tuple[str, str], ...]:
    """(field name, kind) of a dataclass: "datetime", "enclosures", "entries" or "plain"
    (str, int, None or a tuple of str), from the annotations."""
    found = []
    for f in dataclasses.fields(cls):
        annotation = str(f.type)
        if "datetime" in annotation:
            kind = "datetime"
        elif "Enclosure" in annotation:
            kind = "enclosures"
        elif "EntryData" in annotation:
            kind = "entries"
        else:
            kind = "plain"
        found.append((f.name, kind))
    return tuple(found)


_ENTRY_KINDS = _kinds(EntryData)
_FEED_KINDS = _kinds(ParsedFeed)


def _encode(obj: Any, kinds: tuple[tuple[str, str], ...]) -> list[Any]:
    values = []
    for name, kind in kinds:
        value = getattr(obj, name)
        if value is None or kind == "plain":
            values.append(value)
        elif kind == "datetime":
            values.append(value.isoformat())
        elif kind == "enclosures":
            values.append([[e.url, e.type, e.length] for e in value])
        else:
            values.append([_encode(entry, _ENTRY_KINDS) for entry in value])
    return values


def _decode(values: list[Any], cls: Any, kinds: tuple[tuple[str, str], ...]) -> Any:
    if not isinstance(values, list) or len(values) != len(kinds):
        raise ValueError(f"parsepool: malformed {cls.__name__} from a parser process")
    fields: dict[str, Any] = {}
    for (name, kind), value in zip(kinds, values, strict=True):
        if value is None:
            fields[name] = None
        elif kind == "plain":
            fields[name] = tuple(value) if isinstance(value, list) else value
        elif kind == "datetime":
            fields[name] = datetime.fromisoformat(value)
        elif kind == "enclosures":
            fields[name] = tuple(Enclosure(*item) for item in value)
        else:
            fields[name] = tuple(_decode(item, EntryData, _ENTRY_KINDS) for item in value)
    return cls(**fields)


def _frame(value: Any, raw: bytes = b"") -> bytes:
    """A message: JSON of plain values, then `raw` bytes as they are. Strings may hold
    lone surrogates (entry keys can), hence "surrogatepass"."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    blob = text.encode("utf-8", "surrogatepass")
    return _HEADER.pack(len(blob), len(raw)) + blob + raw


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    """`size` bytes, or None when the stream ends first."""
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _read_frame(stream: IO[bytes]) -> tuple[Any, bytes] | None:
    """(the JSON value, the raw bytes) of one message, or None when the stream ends."""
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    size, raw_size = _HEADER.unpack(header)
    blob = _read_exact(stream, size)
    raw = _read_exact(stream, raw_size) if raw_size else b""
    if blob is None or raw is None:
        return None
    return json.loads(blob.decode("utf-8", "surrogatepass")), raw


# --- the child ------------------------------------------------------------------------


def child_main() -> None:
    """A parser process: read a request from stdin, answer on stdout, until stdin ends."""
    # the parent decides when we stop (closing our stdin): Ctrl-C and a service
    # manager's SIGTERM reach the whole process group, and the parent stops cleanly
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print in a library must not corrupt the replies
    requests = sys.stdin.buffer
    from aggregator.parse import parse_feed

    parse_feed(_WARM_UP, url="https://example.org/", fetched_at=datetime.now(UTC))
    try:
        _answer(replies, _READY)
        _serve_requests(requests, replies)
    except BrokenPipeError:  # the parent is gone (killed): nobody to answer
        os._exit(0)  # not flushing the replies at exit, which would only fail again


def _answer(replies: BinaryIO, reply: Any) -> None:
    replies.write(_frame(reply))
    replies.flush()


def _serve_requests(requests: BinaryIO, replies: BinaryIO) -> None:
    from aggregator.parse import parse_feed

    while (request := _read_frame(requests)) is not None:
        (url, content_type, fetched_at, max_entries), data = request
        try:
            parsed = parse_feed(
                data,
                url=url,
                content_type=content_type,
                fetched_at=datetime.fromisoformat(fetched_at),
                max_entries=max_entries,
            )
            reply: list[Any] = ["ok", _encode(parsed, _FEED_KINDS)]
        except ParseError as exc:
            reply = ["error", exc.url, exc.message or str(exc)]
        except Exception as exc:  # a parser bug: this document fails, the child goes on
            reply = ["error", url, f"parse: the parser failed ({type(exc).__name__}: {exc})"]
        _answer(replies, reply)


# --- the parent -----------------------------------------------------------------------


class _Gone(Exception):
    """The child died or was killed; the message says why, for the feed's status."""


class _Child:
    """One parser process and its pipes; used by one thread at a time."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin: IO[bytes] = self.process.stdin
        self._stdout: IO[bytes] = self.process.stdout
        self._ready = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self) -> None:
        if not self._ready:
            reply = self._reply(START_TIMEOUT, "starting")
            if reply != _READY:
                self.kill()
                raise _Gone("parse: a parser process did not start")
            self._ready = True

    def call(self, request: bytes, timeout: float) -> Any:
        """Send one framed request; the reply's JSON value. Raises: _Gone."""
        self.wait_ready()
        try:
            self._stdin.write(request)
            self._stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died("before it read the document") from None
        return self._reply(timeout, "parsing")

    def _reply(self, timeout: float, doing: str) -> Any:
        readable, _, _ = select.select([self._stdout], [], [], timeout)
        if not readable:
            self.kill()
            raise _Gone(f"parse: gave up after {timeout:g} s (the parser process was stopped)")
        reply = _read_frame(self._stdout)
        if reply is None:
            raise self._died(f"while {doing}")
        return reply[0]

    def _died(self, when: str) -> _Gone:
        self.kill()
        code = self.process.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return _Gone(f"parse: the parser process crashed ({how}) {when} this document")

    def stop(self) -> int | None:
        """Close stdin (the child exits) and wait; kill it if it does not. Exit code."""
        try:
            self._stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
        self._stdout.close()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self._stdin, self._stdout):
            try:
                pipe.close()
            except OSError:
                pass


_CLOSED = object()  # put in the slot queue when the pool closes: waiters give up


class ParsePool:
    """A pool of parser processes, started on first use (or by `start()`).

    Args:
        workers: child processes (default 2, one per core of the reference machine).
        inline_max_bytes: documents up to this size are parsed in the calling thread.
        timeout: seconds a child may spend on one document before it is killed.

    `parse` may be called from several threads at once; each call holds one child.
    Use the pool as a context manager, or call `close()`; both wait for the children.
    """

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        inline_max_bytes: int = INLINE_MAX_BYTES,
        timeout: float = PARSE_TIMEOUT,
    ) -> None:
        if workers < 1:
            raise ValueError("parsepool: workers must be at least 1")
        self.workers = workers
        self.inline_max_bytes = inline_max_bytes
        self.timeout = timeout
        self.exit_codes: list[int | None] = []  # of the children stopped by close()
        self._slots: queue.LifoQueue[Any] = queue.LifoQueue()
        for _ in range(workers):
            self._slots.put(None)  # None: this slot's child is not started yet
        self._lock = threading.Lock()
        self._children: set[_Child] = set()
        self._busy: set[int] = set()
        self._closed = False

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pids(self) -> tuple[int, ...]:
        """Process ids of the live children."""
        with self._lock:
            return tuple(sorted(child.pid for child in self._children if child.alive()))

    @property
    def busy_pids(self) -> tuple[int, ...]:
        """Process ids of the children working on a document now."""
        with self._lock:
            return tuple(sorted(self._busy))

    def start(self) -> ParsePool:
        """Start every child now and wait until each has imported the parser."""
        taken = [self._take() for _ in range(self.workers)]
        try:
            for index, child in enumerate(taken):
                taken[index] = child = child or self._spawn()
                child.wait_ready()
        except _Gone as gone:
            raise RuntimeError(str(gone)) from None
        finally:
            for child in taken:
                self._slots.put(child)
        return self

    def parse(
        self,
        data: bytes,
        url: str,
        content_type: str | None,
        fetched_at: datetime,
        max_entries: int = 500,
    ) -> ParsedFeed:
        """Parse like `parse_feed` (same result, same `ParseError`), in a child unless
        the document is small. Blocks the calling thread until the result is back.

        Raises:
            ParseError: as `parse_feed`, and when the child crashed or timed out on
                this document.
            RuntimeError: the pool is closed.
        """
        if len(data) <= self.inline_max_bytes:
            from aggregator.parse import parse_feed  # not imported unless needed

            return parse_feed(
                data,
                url=url,
                content_type=content_type,
                fetched_at=fetched_at,
                max_entries=max_entries,
            )
        request = _frame([url, content_type, fetched_at.isoformat(), max_entries], data)
        child = self._take()
        try:
            if child is None or not child.alive():
                child = self._replace(child)
            with self._lock:
                self._busy.add(child.pid)
            try:
                reply = child.call(request, self.timeout)
            finally:
                with self._lock:
                    self._busy.discard(child.pid)
        except _Gone as gone:
            raise ParseError(url, str(gone)) from None
        finally:
            self._slots.put(child if child is not None and child.alive() else None)
        return self._unwrap(reply)

    @staticmethod
    def _unwrap(reply: Any) -> ParsedFeed:
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == "error":
            raise ParseError(str(reply[1]), str(reply[2]))
        if not (isinstance(reply, list) and len(reply) == 2 and reply[0] == "ok"):
            raise ValueError("parsepool: malformed reply from a parser process")
        feed: ParsedFeed = _decode(reply[1], ParsedFeed, _FEED_KINDS)
        return feed

    def close(self) -> None:
        """Wait for running parses, stop every child, refuse further work."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        taken = [self._slots.get() for _ in range(self.workers)]
        for child in taken:
            if child is not None and child is not _CLOSED:
                self.exit_codes.append(child.stop())
                with self._lock:
                    self._children.discard(child)
        for _ in range(self.workers):
            self._slots.put(_CLOSED)

    def _take(self) -> _Child | None:
        if self._closed:
            raise RuntimeError("parsepool: the pool is closed")
        child = self._slots.get()
        if child is _CLOSED:
            self._slots.put(_CLOSED)
            raise RuntimeError("parsepool: the pool is closed")
        result: _Child | None = child
        return result

    def _spawn(self) -> _Child:
        child = _Child()
        with self._lock:
            self._children.add(child)
        return child

    def _replace(self, child: _Child | None) -> _Child:
        if child is not None:
            child.kill()
            with self._lock:
                self._children.discard(child)
        return self._spawn()
