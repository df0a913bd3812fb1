"""The pipeline: one poll of the feeds that are due. Runs the stages in order and decides
what changed; the stages themselves know nothing of each other.

    claim due feeds with a lease, a batch at a time        store.claim_due_feeds
    (the next batch while the current one is in flight)
    for every claimed feed, concurrently:
        conditional GET with the stored validators         fetch.Fetcher.fetch
        410                → disable the feed, with the reason
        error              → error recorded on the feed, exponential backoff
        304                → new validators and next check only
        200, same body     → (hash unchanged) as 304, nothing parsed
        200, new body      → parse + normalise (off the event loop: a thread, or
                             parser processes for a big batch)     parse.parse_feed
        save entries + feed state in one transaction,
        fenced by the lease (a worker that lost it writes nothing)   Store.save_updates
    return one UpdateResult per feed; a failing feed never stops the others
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from aggregator import identity, schedule
from aggregator.config import Settings
from aggregator.exceptions import ParseError, StoreError
from aggregator.fetch import Fetcher, run_loop
from aggregator.models import (
    CUT_SHORT_WARNING,
    EntryData,
    FeedState,
    FetchOptions,
    FetchRequest,
    FetchResult,
    ParsedFeed,
    PollSummary,
    Retention,
    UpdateResult,
)
from aggregator.parsepool import INLINE_MAX_BYTES, PARSE_TIMEOUT, ParsePool
from aggregator.store import FeedUpdate, PendingSave, SaveOutcome, Store

log = logging.getLogger(__name__)

CLAIM_BATCH = 500  # feeds leased per claim; a tick claims again until nothing is due
# Feed updates written per transaction. Each transaction costs a disk sync; writing one
# feed per transaction made the store thread the bottleneck of bench/poll.py.
WRITE_BATCH = 100
IN_FLIGHT_PER_CONNECTION = 1  # feeds in the pipeline per allowed connection
LEASE_RENEWALS = 3  # a poll renews the leases it holds three times a lease
# Parser processes start for a claimed batch of at least this many feeds (starting two
# costs ~1 s of CPU, about what a thread spends parsing 100 typical feeds) and stop
# when no batch that big came for POOL_IDLE, giving their memory back.
POOL_MIN_FEEDS = 100
POOL_IDLE = timedelta(minutes=10)

Parse = Callable[..., ParsedFeed]
Parsing = tuple[ThreadPoolExecutor, Parse]  # the threads a feed parses on, and with what


DEFAULTS = Settings()


@dataclass(frozen=True)
class PollOptions:
    """What one poll needs from the settings."""

    fetch: FetchOptions
    default_interval: int = DEFAULTS.default_interval
    min_interval: int = DEFAULTS.min_interval
    max_interval: int = DEFAULTS.max_interval
    max_entries: int = DEFAULTS.max_entries_per_feed
    lease: timedelta = timedelta(seconds=DEFAULTS.lease_seconds)
    parse_processes: int = 0  # parser processes for big batches (0: parse in a thread)
    retention: Retention | None = None  # new entries retention would delete are not saved
    resolver: Any = field(default=None, compare=False)  # DNS resolver override (tests)


@dataclass(frozen=True)
class Decision:
    """What to write for one feed after its fetch (and parse)."""

    status: str
    state: FeedUpdate
    items: tuple[EntryData, ...] = ()
    error: str | None = None
    repeated_guids: int = 0  # see normalise.normalise_entries


class Parsers:
    """Where polls parse: in a thread of this process, or in a `ParsePool` of
    `processes` children (at most one per CPU) started for a batch of at least
    POOL_MIN_FEEDS feeds. The pool is kept across polls and stopped when no big batch
    came for POOL_IDLE, or by `close()`. A worker keeps one for its lifetime.
    """

    def __init__(
        self,
        processes: int,
        min_feeds: int = POOL_MIN_FEEDS,
        inline_max_bytes: int = INLINE_MAX_BYTES,
        timeout: float = PARSE_TIMEOUT,
    ) -> None:
        self.processes = max(0, min(processes, os.cpu_count() or 1))
        self.min_feeds = min_feeds
        self._inline_max_bytes = inline_max_bytes
        self._timeout = timeout
        self._pool: ParsePool | None = None
        self._used = 0.0

    @property
    def pool(self) -> ParsePool | None:
        """The running pool, if any."""
        return self._pool

    def for_batch(self, feeds: int, in_use: bool = False) -> ParsePool | None:
        """The pool to parse a batch of `feeds` with, or None to parse in a thread.
        `in_use`: an earlier batch still parses in the pool, so it is not idle.
        """
        if self.processes == 0:
            return None
        now = time.monotonic()
        if feeds < self.min_feeds:
            idle = now - self._used > POOL_IDLE.total_seconds()
            if self._pool is not None and idle and not in_use:
                self.close()
            return None
        if self._pool is None:
            self._pool = ParsePool(self.processes, self._inline_max_bytes, self._timeout)
        self._used = now
        return self._pool

    def close(self) -> None:
        """Stop the pool's processes (they finish the document in hand first)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def poll_due(
    store: Store,
    options: PollOptions,
    owner: str,
    now: datetime | None = None,
    force: bool = False,
    progress: Callable[[UpdateResult], None] | None = None,
    on_claim: Callable[[int], None] | None = None,
    parsers: Parsers | None = None,
    stopping: Callable[[], bool] | None = None,
) -> PollSummary:
    """Claim the due feeds (every pollable feed with `force`) and update them.

    Feeds are claimed in batches of CLAIM_BATCH, each a lease. The next batch is claimed
    while the current one is still in flight (once its last feeds are queued for a
    worker), so the pipeline never drains between batches; one event loop, one `Fetcher`
    (one connection pool) and one set of threads serve the whole poll.

    Args:
        store: where feeds and entries live.
        options: fetch options, intervals and limits.
        owner: a name unique to this worker run; it fences the final writes.
        now: the current time (tests pass a simulated clock).
        force: poll every enabled feed whatever its next check time.
        progress: called with each feed's result as it completes.
        on_claim: called with the number of feeds claimed by each batch, before they
            are fetched.
        parsers: where to parse (a worker passes the one it keeps); by default, parser
            processes as `options.parse_processes` says, stopped before returning.
        stopping: asked before each feed is fetched; once it says True (the worker
            was told to stop), no more feeds are claimed or fetched, the leases of
            those claimed and not yet fetched are given up, and the poll returns when
            the fetches in flight are saved.

    Returns:
        One result per claimed feed.
    """
    run = _Run(store, options, owner, now or datetime.now(UTC), force, progress, on_claim, stopping)
    own = parsers is None
    parsers = parsers or Parsers(options.parse_processes)
    try:
        results = run_loop(_poll(run, parsers))
    finally:
        if own:
            parsers.close()
    return PollSummary(tuple(results))


@dataclass(frozen=True)
class _Run:
    """One poll's fixed inputs."""

    store: Store
    options: PollOptions
    owner: str
    now: datetime
    force: bool
    progress: Callable[[UpdateResult], None] | None
    on_claim: Callable[[int], None] | None
    stopping: Callable[[], bool] | None = None
    started: float = field(default_factory=time.monotonic)

    def stopped(self) -> bool:
        """Whether the poll was told to stop (see `poll_due`)."""
        return self.stopping is not None and self.stopping()

    def clock(self) -> datetime:
        """The poll's time: `now` (which tests may set) plus the time the poll has run."""
        return self.now + timedelta(seconds=time.monotonic() - self.started)


class _Threads:
    """The poll's threads. Parsing is CPU work and the store has one writer: each gets
    its own thread so neither stalls the event loop that keeps the other fetches moving;
    reads (identity checks) have their own thread so they never wait behind a batch of
    writes. With a parser pool, two threads per child hand documents over, so a child
    never waits for one. Claims run on the store thread: they are writes too.
    """

    def __init__(self) -> None:
        self.here = ThreadPoolExecutor(1, thread_name_prefix="parse")
        self.read = ThreadPoolExecutor(1, thread_name_prefix="read")
        self.store = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._handoff: ThreadPoolExecutor | None = None

    def parsing(self, pool: ParsePool | None) -> Parsing:
        """Where and with what a batch parses: here, or handed to `pool`."""
        if pool is None:
            return self.here, _parse_here
        if self._handoff is None:
            self._handoff = ThreadPoolExecutor(2 * pool.workers, thread_name_prefix="parse")
        return self._handoff, pool.parse

    def close(self) -> None:
        """Wait for the threads' work and stop them."""
        for executor in (self.here, self.read, self.store, self._handoff):
            if executor is not None:
                executor.shutdown()


# A claimed feed waiting for a worker, with where it parses; None tells a worker to stop.
_Queued = tuple[FeedState, Parsing] | None


async def _poll(run: _Run, parsers: Parsers) -> list[UpdateResult]:
    """Claim batch after batch and update their feeds with a fixed set of workers.

    The queue between the claims and the workers holds at most one feed per worker: the
    next claim waits until the current batch has no more than that left unstarted (so a
    lease does not sit idle longer than it has to) and is made before the workers run
    dry (so no batch waits for the previous one's slowest feed).
    """
    workers = run.options.fetch.max_connections * IN_FLIGHT_PER_CONNECTION
    threads = _Threads()
    try:
        async with Fetcher(run.options.fetch, resolver=run.options.resolver) as fetcher:
            writer = _BatchWriter(run.store, run.owner, threads.store)
            queue: asyncio.Queue[_Queued] = asyncio.Queue(workers)
            results: list[UpdateResult] = []
            failures: list[BaseException] = []
            running: list[asyncio.Task[None]] = []
            held: set[int] = set()  # feeds claimed and not yet finished
            unfetched: list[int] = []  # claimed, then left alone: the poll was stopped
            renewing = asyncio.create_task(_keep_leases(run, held, threads))

            async def work() -> None:
                while (queued := await queue.get()) is not None:
                    feed, parsing = queued
                    if run.stopped():
                        unfetched.append(feed.id)
                        held.discard(feed.id)
                        continue
                    try:
                        result = await _update_feed(
                            fetcher,
                            run.store,
                            run.options,
                            run.owner,
                            feed,
                            run.now,
                            parsing,
                            threads.read,
                            writer,
                        )
                    except Exception as e:  # e.g. the store is down: stop claiming
                        failures.append(e)
                        continue  # keep draining the queue, or the claimer would wait
                    finally:
                        held.discard(feed.id)
                    results.append(result)
                    _report(run.progress, result, failures)

            try:
                try:
                    async with aclosing(_batches(run, parsers, threads)) as batches:
                        async for claimed, parsing in batches:
                            held.update(feed.id for feed in claimed)
                            for number, feed in enumerate(claimed):
                                if run.stopped():
                                    unfetched.extend(f.id for f in claimed[number:])
                                    held.difference_update(unfetched)
                                    break
                                if len(running) < workers:
                                    running.append(asyncio.create_task(work()))
                                await queue.put((feed, parsing))
                            if failures or run.stopped():
                                break  # claim no more; what is claimed is still saved
                except asyncio.CancelledError:  # interrupted: leases run out by themselves
                    for task in running:
                        task.cancel()
                    await asyncio.gather(*running, return_exceptions=True)
                    raise
                except Exception:  # a claim failed: finish what was claimed first
                    await _stop(queue, running)
                    raise
                await _stop(queue, running)
                await _release(run, unfetched, threads)
            finally:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
            if failures:
                raise failures[0]
            return results
    finally:
        threads.close()


async def _keep_leases(run: _Run, held: set[int], threads: _Threads) -> None:
    """Renew the leases of the feeds the poll holds, `LEASE_RENEWALS` times a lease.

    A claimed feed can wait in the poll longer than its lease: hundreds of feeds of one
    host behind its connection limit, or slow servers holding the connections. Once the
    lease ran out another worker would take the feed and fetch it again, and this
    poll's result would be refused. A renewal that fails is logged: the fenced writes
    keep the store right whatever happens to the leases.
    """
    loop = asyncio.get_running_loop()
    lease = run.options.lease
    while True:
        await asyncio.sleep(lease.total_seconds() / LEASE_RENEWALS)
        if not held:
            continue
        feed_ids, until = sorted(held), run.clock() + lease
        try:
            await loop.run_in_executor(
                threads.store, run.store.renew_leases, feed_ids, run.owner, until
            )
        except StoreError as e:
            log.warning("poll: could not renew the leases of %d feeds: %s", len(feed_ids), e)


async def _release(run: _Run, feed_ids: list[int], threads: _Threads) -> None:
    """Give up the leases of feeds claimed and not fetched (the poll was stopped), so
    another worker, or this one restarted, polls them at once instead of after the
    lease. Should that fail, the leases run out by themselves."""
    if not feed_ids:
        return
    log.info("poll: stopping; %d claimed feeds left for the next poll", len(feed_ids))
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(threads.store, run.store.release_feeds, feed_ids, run.owner)
    except StoreError as e:
        log.warning("poll: could not give up the leases of %d feeds: %s", len(feed_ids), e)


async def _stop(queue: asyncio.Queue[_Queued], running: list[asyncio.Task[None]]) -> None:
    """Let the workers finish the queued feeds, then stop them."""
    for _ in running:
        await queue.put(None)
    await asyncio.gather(*running)


def _report(
    progress: Callable[[UpdateResult], None] | None,
    result: UpdateResult,
    failures: list[BaseException],
) -> None:
    """Hand one result to `progress`. A failing callback stops the reports, not the poll:
    the feeds already claimed are still saved (their leases released) before it raises.
    """
    if progress is None or failures:
        return
    try:
        progress(result)
    except Exception as e:
        failures.append(e)


async def _batches(
    run: _Run, parsers: Parsers, threads: _Threads
) -> AsyncGenerator[tuple[list[FeedState], Parsing], None]:
    """Claim batch after batch (each when the caller asks for it) and say where each
    parses. Claims run on the store thread, so the event loop keeps the feeds already in
    flight moving meanwhile.
    """
    loop = asyncio.get_running_loop()
    last_id = 0
    pooled = False  # an earlier batch of this poll parses in the pool: keep it running
    while True:
        claimed = await loop.run_in_executor(
            threads.store,
            partial(
                run.store.claim_due_feeds,
                run.owner,
                run.clock(),  # the lease runs from the claim, not from the poll's start
                run.options.lease,
                CLAIM_BATCH,
                run.force,
                last_id,
            ),
        )
        if not claimed:
            return
        last_id = max(feed.id for feed in claimed)
        if run.on_claim:
            run.on_claim(len(claimed))
        pool = parsers.for_batch(len(claimed), in_use=pooled)
        pooled = pooled or pool is not None
        yield claimed, threads.parsing(pool)
        if len(claimed) < CLAIM_BATCH:
            return


async def _update_feed(
    fetcher: Fetcher,
    store: Store,
    options: PollOptions,
    owner: str,
    feed: FeedState,
    now: datetime,
    parsing: Parsing,
    read_pool: ThreadPoolExecutor,
    writer: _BatchWriter,
) -> UpdateResult:
    loop = asyncio.get_running_loop()
    parse_pool, parse = parsing
    try:
        fetched = await fetcher.fetch(_request_for(feed))
        if fetched.status == 200 and fetched.error is None:
            decision = await loop.run_in_executor(
                parse_pool, decide, feed, fetched, options, now, parse
            )
        else:  # a 304 or a failure: nothing to hash or parse, no thread hand-off
            decision = decide(feed, fetched, options, now, parse)
        rekeys: dict[str, str] = {}
        if decision.items:
            decision, rekeys = await loop.run_in_executor(
                read_pool, _apply_identity, store, feed, decision
            )
        save = PendingSave(
            feed.id, decision.state, decision.items, fetched.fetched_at, rekeys, options.retention
        )
        outcome = await writer.save(save)
    except StoreError as e:  # the database failed: the feed is polled again when due
        log.error("update: %s: %s", feed.url, e)
        await loop.run_in_executor(read_pool, store.release_feeds, [feed.id], owner)
        return UpdateResult(feed.id, feed.url, "error", error=str(e))
    except Exception as e:  # one feed's bug must never stop the batch
        log.exception("update: %s failed unexpectedly", feed.url)
        await loop.run_in_executor(read_pool, store.release_feeds, [feed.id], owner)
        return UpdateResult(feed.id, feed.url, "error", error=f"update: internal error: {e!r}")
    if not outcome.saved:
        log.warning("update: lease on %s was lost; result discarded", feed.url)
        return UpdateResult(feed.id, feed.url, "stale", error="update: lease lost")
    return UpdateResult(
        feed.id,
        feed.url,
        decision.status,
        new_entries=len(outcome.new_ids),
        changed_entries=len(outcome.changed_ids),
        error=decision.error,
    )


class _BatchWriter:
    """Writes feed updates on the store thread in batches of up to WRITE_BATCH: while
    one batch is written, the next accumulates, so a busy poll pays one disk sync per
    batch and a quiet one writes each update at once.
    """

    def __init__(self, store: Store, owner: str, pool: ThreadPoolExecutor) -> None:
        self._store = store
        self._owner = owner
        self._pool = pool
        self._pending: list[tuple[PendingSave, asyncio.Future[SaveOutcome | StoreError]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def save(self, save: PendingSave) -> SaveOutcome:
        future: asyncio.Future[SaveOutcome | StoreError] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.append((save, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        outcome = await future
        if isinstance(outcome, StoreError):
            raise outcome
        return outcome

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[:WRITE_BATCH], self._pending[WRITE_BATCH:]
            saves = [save for save, _ in batch]
            try:
                outcomes = await loop.run_in_executor(
                    self._pool, self._store.save_updates, self._owner, saves
                )
            except Exception as e:  # e.g. the database is down: every waiter learns it
                outcomes = [StoreError(f"store: {e!r}") for _ in saves]
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                future.set_result(outcome)
            await loop.run_in_executor(self._pool, _refresh_statistics, self._store)


def _refresh_statistics(store: Store) -> None:
    """After a batch is saved, let the store refresh the planner's statistics should the
    entries stored so far call for it (a first poll filling an empty table, see
    `Store.refresh_statistics`). Stale statistics slow a poll down; they never stop it."""
    try:
        store.refresh_statistics()
    except StoreError as e:
        log.warning("poll: could not refresh the entries table's statistics: %s", e)


def _apply_identity(
    store: Store, feed: FeedState, decision: Decision
) -> tuple[Decision, dict[str, str]]:
    """Key the entries by the feed's identity rule, switching it when guids prove unstable."""
    links = [item.link for item in decision.items if item.link]
    resolved = identity.resolve(
        feed.id_rule,
        decision.items,
        store.get_keys_by_link(feed.id, links),
        decision.repeated_guids,
    )
    if resolved.note is None:
        return replace(decision, items=resolved.items), resolved.rekeys
    log.warning("update: %s: %s", feed.url, resolved.note)
    state = replace(decision.state, id_rule=resolved.rule, last_error=resolved.note)
    return replace(decision, items=resolved.items, state=state), resolved.rekeys


def _request_for(feed: FeedState) -> FetchRequest:
    return FetchRequest(
        feed_id=feed.id,
        url=feed.url,
        etag=feed.etag,
        last_modified=feed.last_modified,
        allow_private_addresses=feed.allow_private_addresses,
    )


def _parse_here(
    data: bytes, url: str, content_type: str | None, fetched_at: datetime, max_entries: int
) -> ParsedFeed:
    from aggregator.parse import parse_feed  # imported by the first poll that parses here

    return parse_feed(
        data, url=url, content_type=content_type, fetched_at=fetched_at, max_entries=max_entries
    )


def decide(
    feed: FeedState,
    fetched: FetchResult,
    options: PollOptions,
    now: datetime | None = None,
    parse: Parse = _parse_here,
) -> Decision:
    """Turn one fetch into the feed's new state and the entries to save (parsing if needed,
    with `parse`: `parse_feed`'s arguments, positionally).

    The next check time counts from `now` (the poll's clock, which tests may set ahead)
    or from the fetch time, whichever is later.
    """
    clock = max(now, fetched.fetched_at) if now else fetched.fetched_at
    if fetched.status == 410:
        return _gone(feed, fetched)
    if fetched.error is not None or fetched.status not in (200, 304):
        return _failed(
            feed, fetched, options, clock, fetched.error or f"fetch: HTTP {fetched.status}"
        )
    if fetched.status == 304:
        return _unchanged(feed, fetched, options, clock, "not_modified")
    body = fetched.body or b""
    body_hash = hashlib.sha256(body).hexdigest()
    if body_hash == feed.body_hash:
        return _unchanged(feed, fetched, options, clock, "unchanged")
    try:
        parsed = parse(
            body, fetched.final_url, fetched.content_type, fetched.fetched_at, options.max_entries
        )
    except ParseError as e:
        return _failed(feed, fetched, options, clock, e.message or str(e))
    return _parsed(feed, fetched, options, clock, parsed, body_hash)


def _next_check(
    feed: FeedState, options: PollOptions, clock: datetime, outcome: str, **hints: Any
) -> datetime | None:
    return schedule.next_check_at(
        clock,
        outcome=outcome,
        interval=feed.interval or options.default_interval,
        min_interval=options.min_interval,
        max_interval=options.max_interval,
        **hints,
    )


def _common(feed: FeedState, fetched: FetchResult) -> dict[str, Any]:
    return {
        "url": fetched.permanent_url if fetched.permanent_url != feed.url else None,
        "last_fetch_at": fetched.fetched_at,
        "http_status": fetched.status or None,
    }


def _gone(feed: FeedState, fetched: FetchResult) -> Decision:
    reason = "HTTP 410 Gone: the publisher removed this feed; remove it from the config"
    state = FeedUpdate(
        **_common(feed, fetched),
        etag=feed.etag,
        last_modified=feed.last_modified,
        body_hash=feed.body_hash,
        next_check_at=None,
        last_status="gone",
        last_error=reason,
        error_count=feed.error_count + 1,
        backoff_count=feed.backoff_count,
        disabled_reason=reason,
        keep_document_fields=True,
    )
    return Decision("gone", state, error=reason)


def _failed(
    feed: FeedState, fetched: FetchResult, options: PollOptions, clock: datetime, error: str
) -> Decision:
    errors = feed.error_count + 1
    # the backoff doubles on the errors it decides the wait of: an answer with
    # Retry-After (the server said when to come back) counts as an error, not here
    backoff = feed.backoff_count + (fetched.retry_after is None)
    state = FeedUpdate(
        **_common(feed, fetched),
        # Keep the old validators: the next fetch must not be a 304 for a body we never read.
        etag=feed.etag,
        last_modified=feed.last_modified,
        body_hash=feed.body_hash,
        next_check_at=_next_check(
            feed,
            options,
            clock,
            "error",
            error_count=backoff,
            failing_since=feed.last_success_at or feed.created_at,
            retry_after=fetched.retry_after,
        ),
        last_status="error",
        last_error=error,
        error_count=errors,
        backoff_count=backoff,
        keep_document_fields=True,
    )
    return Decision("error", state, error=error)


def _unchanged(
    feed: FeedState, fetched: FetchResult, options: PollOptions, clock: datetime, status: str
) -> Decision:
    state = FeedUpdate(
        **_common(feed, fetched),
        etag=fetched.etag or feed.etag,
        last_modified=fetched.last_modified or feed.last_modified,
        body_hash=feed.body_hash,
        next_check_at=_next_check(
            feed, options, clock, status, error_count=0, cache_seconds=fetched.cache_seconds
        ),
        last_success_at=fetched.fetched_at,
        last_status=status,
        error_count=0,
        keep_document_fields=True,
    )
    return Decision(status, state)


def _parsed(
    feed: FeedState,
    fetched: FetchResult,
    options: PollOptions,
    clock: datetime,
    parsed: ParsedFeed,
    body_hash: str,
) -> Decision:
    # a document cut short is no basis for the next conditional request: its validators
    # would answer 304 (or its hash match) until the server's version changes, leaving
    # out the skipped entry meanwhile, for good if it leaves the document first; and it
    # is fetched again soon, as the entries the cut left out are the oldest, the next
    # to leave the document (once: a server that always cuts is asked at its interval)
    whole = not (parsed.warning or "").startswith(CUT_SHORT_WARNING)
    again_soon = not whole and not (feed.last_error or "").startswith(CUT_SHORT_WARNING)
    state = FeedUpdate(
        **_common(feed, fetched),
        feed_title=parsed.title,
        site_link=parsed.link,
        language=parsed.language,
        etag=fetched.etag if whole else feed.etag,
        last_modified=fetched.last_modified if whole else feed.last_modified,
        body_hash=body_hash if whole else feed.body_hash,
        next_check_at=_next_check(
            feed,
            options,
            clock,
            "ok",
            error_count=0,
            cache_seconds=fetched.cache_seconds,
            ttl_seconds=parsed.ttl_seconds,
            incomplete=again_soon,
        ),
        last_success_at=fetched.fetched_at,
        last_status="ok",
        last_error=parsed.warning,
        error_count=0,
    )
    return Decision("ok", state, parsed.entries, repeated_guids=parsed.repeated_guids)
