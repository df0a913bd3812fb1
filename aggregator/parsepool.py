"""Parsing in a process pool, so that both cores work when parsing is the bottleneck.

`ParsePool` wraps a `concurrent.futures.ProcessPoolExecutor` started with the *spawn*
method (no fork of a process holding threads, sockets or database connections); each
child imports the parser once, in its initialiser. `ParsePool.parse` returns exactly
what `aggregator.parse.parse_feed` returns, and raises the same `ParseError`.
Documents smaller than `inline_max_bytes` are parsed in the calling thread: for them
the round trip to a child costs more than the parse (see `bench/poll.py threshold`).

What crosses the process boundary, and why that is safe: multiprocessing pickles the
call's arguments in the parent and the result in the child. The feed's bytes travel
*inside* a pickle the parent built (as a `bytes` value, never interpreted as a
pickle), and the parent only ever unpickles what our own child produced: a frozen
`ParsedFeed` of our own dataclasses, or a `_Failure` carrying a `ParseError`'s url and
message. No byte from a feed is ever unpickled, and nothing pickled is stored.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from aggregator.exceptions import ParseError
from aggregator.models import ParsedFeed
from aggregator.parse import parse_feed

INLINE_MAX_BYTES = 4 * 1024
"""Documents up to this size are parsed in the calling thread (measured: below ~4 KB
the IPC round trip, ~0.3-0.5 ms, is larger than the parse itself)."""

DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class _Failure:
    """A `ParseError` raised in a child, as plain data (exceptions lose fields in pickle)."""

    url: str
    message: str


_WARM_UP = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
    b"<title>x</title><link>https://example.org/x</link><description>&lt;p&gt;y&lt;/p&gt;"
    b"</description><pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate></item></channel></rss>"
)


def _init_worker() -> None:
    """Runs once in each child (importing this module imported the parser): one tiny
    parse fills feedparser's and the sanitiser's lazy caches before real work arrives."""
    parse_feed(_WARM_UP, url="https://example.org/", fetched_at=datetime.now(UTC))


def _parse_in_child(
    data: bytes, url: str, content_type: str | None, fetched_at: datetime, max_entries: int
) -> ParsedFeed | _Failure:
    try:
        return parse_feed(
            data, url=url, content_type=content_type, fetched_at=fetched_at, max_entries=max_entries
        )
    except ParseError as exc:
        return _Failure(exc.url, exc.message or str(exc))


def _ping() -> int:
    return 0


def _unwrap(result: ParsedFeed | _Failure) -> ParsedFeed:
    if isinstance(result, _Failure):
        raise ParseError(result.url, result.message)
    return result


class ParsePool:
    """A pool of parser processes.

    Args:
        workers: child processes (default 2, one per core of the reference machine).
        inline_max_bytes: documents up to this size are parsed in the calling thread.

    Use it as a context manager, or call `close()`; both wait for the children to exit.
    """

    def __init__(
        self, workers: int = DEFAULT_WORKERS, inline_max_bytes: int = INLINE_MAX_BYTES
    ) -> None:
        self.workers = workers
        self.inline_max_bytes = inline_max_bytes
        self._executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
        )

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> ParsePool:
        """Start every child now (they otherwise start on the first submissions)."""
        futures = [self._pool().submit(_ping) for _ in range(self.workers * 2)]
        for future in futures:
            future.result()
        return self

    def submit(
        self,
        data: bytes,
        url: str,
        content_type: str | None,
        fetched_at: datetime,
        max_entries: int = 500,
    ) -> Future[ParsedFeed | _Failure]:
        """Send one document to a child; `result(future)` turns the answer into a feed."""
        return self._pool().submit(
            _parse_in_child, data, url, content_type, fetched_at, max_entries
        )

    @staticmethod
    def result(future: Future[ParsedFeed | _Failure]) -> ParsedFeed:
        """The `ParsedFeed` of a submitted parse. Raises: ParseError, as `parse_feed`."""
        return _unwrap(future.result())

    def parse(
        self,
        data: bytes,
        url: str,
        content_type: str | None,
        fetched_at: datetime,
        max_entries: int = 500,
    ) -> ParsedFeed:
        """Parse like `parse_feed` (same result, same `ParseError`), in a child unless
        the document is small. Blocks the calling thread until the result is back."""
        if len(data) <= self.inline_max_bytes:
            return parse_feed(
                data,
                url=url,
                content_type=content_type,
                fetched_at=fetched_at,
                max_entries=max_entries,
            )
        return self.result(self.submit(data, url, content_type, fetched_at, max_entries))

    def close(self) -> None:
        """Cancel queued parses, let running ones finish, and wait for the children."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            raise RuntimeError("parsepool: the pool is closed")
        return self._executor
