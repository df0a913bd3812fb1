"""The worker: an APScheduler 3.11 timer whose jobs are short ticks. APScheduler is only
a clock; what is due lives in the store (`feeds.next_check_at`), so any number of
workers can share one PostgreSQL store and a restart never re-polls early.

Each tick: reload the config if its file changed (a new source is polled in the same
tick, a removed one stops being polled and keeps its entries), poll what is due, and
write a heartbeat that `/healthz` reads: at the tick's start and end, and in between
whenever a tick interval has passed and the poll or the grouping has made progress, so a
long tick (the first poll of thousands of feeds) does not look like a dead worker. Run it
as `aggregator worker` or `python -m aggregator.scheduler`; never inside web workers.

A worker keeps its parser processes (`parse_processes`, started for big polls) across
ticks and stops them when it exits (`close`). Embedded in the web process (`aggregator
run`, `start_background`) it parses in a thread: the web process starts no processes.

SIGTERM (what systemd, Docker and Procfile hosts send) or Ctrl-C stops a worker cleanly
(`request_stop`): the tick in progress claims and fetches no more feeds, saves the
fetches in flight (each within `request_timeout`), gives the leases of the feeds it
claimed and did not fetch back at once, and groups no further batch; then the parser
processes are stopped and the process exits. Whatever was stored is kept and the next
worker picks up the rest. A second signal stops at once (leases then run out by
themselves, as after a crash).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from aggregator.config import Config, Settings, file_stamp, load_config
from aggregator.exceptions import ConfigError, StoreError
from aggregator.grouper import Grouper
from aggregator.models import PollSummary
from aggregator.store import Store
from aggregator.update import Parsers, PollOptions, poll_due

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)  # retention runs this often, by one worker at a time
CLOCK_CHECK_SECONDS = 5.0  # how often the worker checks that its jobs are due in time
CLOCK_STEP_SECONDS = 10.0  # a job due this much beyond its interval restarts the timing
FORGET_WORKERS_AFTER = timedelta(days=1)  # a worker silent this long is gone: its row too


def poll_options(config: Config, resolver: Any = None) -> PollOptions:
    settings = config.settings
    return PollOptions(
        fetch=settings.fetch_options(),
        default_interval=settings.default_interval,
        min_interval=settings.min_interval,
        max_interval=settings.max_interval,
        max_entries=settings.max_entries_per_feed,
        lease=timedelta(seconds=settings.lease_seconds),
        parse_processes=settings.parse_processes,
        retention=settings.retention(),
        resolver=resolver,
    )


def lower_priority(increment: int) -> None:
    """Lower this process's CPU priority by `increment` (nice), where the OS allows it.

    Polling is background work: on a machine it shares with the web process, the page
    a reader waits for should get the CPU first (R20: `/` under a writing poller).
    Parser processes started later inherit it.
    """
    if increment > 0 and hasattr(os, "nice"):
        os.nice(increment)


def settle_heap() -> None:
    """Exempt what exists now (modules, classes, the store and its engine: all of it lives
    as long as the process) from the garbage collector's full collections.

    A worker runs for months, and each full collection walks every tracked object: at
    start-up some 67,000 of them, 0.03 s a walk, in the middle of whatever poll set it
    off. Collected once first, so no garbage is exempted; what is created later (polls,
    the grouping index) is collected as usual.
    """
    gc.collect()
    gc.freeze()


COLLECT_AFTER_GROUPING = 1_000
"""Entries grouped in one tick after which the worker collects garbage at once."""


def settle_after_grouping(grouped: int | None) -> None:
    """Run the full garbage collection that a big grouping run has made due, now,
    between ticks.

    The grouping index keeps what it learns for the stories' window: after a first poll
    of tens of thousands of entries, hundreds of thousands of objects. CPython runs a
    full collection once long-lived objects grew by a quarter, so the next one would
    land in the middle of the next poll (0.13 s of a 0.85 s round of 1,000 unchanged
    feeds, `bench/poll.py`). Collecting here resets that count.
    """
    if grouped is not None and grouped >= COLLECT_AFTER_GROUPING:
        gc.collect()


def _grouping_settings(settings: Settings) -> tuple[object, ...]:
    return (
        settings.group_window,
        settings.group_threshold,
        settings.group_min_cosine,
        settings.group_embeddings,
    )


class _SkippedWhileRunning(logging.Filter):
    """Drops APScheduler's warning that a job was skipped because its last run is still
    going. A tick longer than the tick interval is expected (the first poll of a big
    config runs for minutes); the next tick starts when it ends, and the warning came
    every interval meanwhile, eight times in a first poll of 3,000 feeds."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


_SKIPPED_WHILE_RUNNING = _SkippedWhileRunning()


class Worker:
    """Polls due feeds on every tick and keeps the store in line with the config file.

    `clock` (monotonic seconds) spaces the heartbeats written during a tick.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        resolver: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._resolver = resolver
        self._clock = clock
        self._beat_at = -math.inf  # `clock` at the last heartbeat written
        self._seen = file_stamp(config.path)
        self._ticks = 0
        self._embedded = False
        self.grouper = Grouper.from_settings(store, self.name, config.settings)
        self.parsers = Parsers(config.settings.parse_processes)
        self._stop = threading.Event()
        self._scheduler: BaseScheduler | None = None  # set by `schedule`
        store.sync_sources(config.sources, datetime.now(UTC))

    @property
    def stopping(self) -> bool:
        """Whether the worker was told to stop (`request_stop`)."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Finish the tick in progress early and start no other (see the module)."""
        if not self._stop.is_set():
            log.info("worker: stopping; saving the feeds in flight (again to stop at once)")
        self._stop.set()

    def close(self) -> None:
        """Stop the parser processes, if any (they finish the document in hand)."""
        self.parsers.close()

    def reload_config(self) -> bool:
        """Reload the config when its file changed; keep the old one if the new is invalid."""
        current = file_stamp(self.config.path)
        if current == self._seen:
            return False
        self._seen = current
        try:
            config = load_config(self.config.path)
        except ConfigError as e:
            log.error("worker: config not reloaded, keeping the previous one: %s", e)
            return False
        before, self.config = self.config.settings, config
        self._apply_changed_settings(before, config.settings)
        wanted = Parsers(config.settings.parse_processes)
        if wanted.processes != self.parsers.processes and not self._embedded:
            self.parsers.close()
            self.parsers = wanted
        self.store.sync_sources(config.sources, datetime.now(UTC))
        log.info("worker: config reloaded, %d sources", len(config.sources))
        return True

    def _apply_changed_settings(self, before: Settings, after: Settings) -> None:
        """What a reloaded config changes besides the sources: the tick's interval (the
        heartbeat promises it), and grouping's settings (a new grouper, which
        warm-starts from the stored stories with them)."""
        if after.tick_interval != before.tick_interval and self._scheduler is not None:
            self._scheduler.reschedule_job("tick", trigger="interval", seconds=after.tick_interval)
            log.info("worker: ticking every %ss", after.tick_interval)
        if _grouping_settings(after) != _grouping_settings(before):
            self.grouper = Grouper.from_settings(self.store, self.name, after)
            log.info("worker: grouping settings changed; grouping goes on with them")

    def tick(self, now: datetime | None = None) -> PollSummary:
        """One tick: reload config, poll what is due, group new entries into stories,
        record the heartbeat.
        """
        if self.stopping:
            return PollSummary(())
        self._ticks += 1
        self._heartbeat()
        self.reload_config()
        started = time.monotonic()
        summary = poll_due(
            self.store,
            poll_options(self.config, self._resolver),
            owner=f"{self.name}/{self._ticks}",
            now=now,
            progress=self._keep_alive,
            parsers=self.parsers,
            stopping=self._stop.is_set,
        )
        poll = (time.monotonic() - started, len(summary.results))
        if not self.stopping:  # (a first run would warm its index up first)
            grouped = self.grouper.run(now, progress=self._keep_alive, stopping=self._stop.is_set)
            settle_after_grouping(grouped)
        self._heartbeat(poll)
        for result in summary.results:
            if result.error:  # each failed fetch (backoff spaces a broken feed's out)
                log.warning("worker: %s: %s", result.url, result.error)
        if summary.results:
            log.info("worker: %s", summary.line())
        return summary

    def prune(self, now: datetime | None = None) -> int | None:
        """Apply the retention settings and forget the heartbeats of workers gone for a
        day, unless another worker did within the hour.

        Returns:
            The number of entries deleted, or None when another worker holds the job.
        """
        now = now or datetime.now(UTC)
        acquired, _ = self.store.acquire_lock("pruner", self.name, now, PRUNE_EVERY)
        if not acquired:
            return None
        settings = self.config.settings
        deleted = self.store.prune(now, settings.retention())
        self.store.forget_workers(now - FORGET_WORKERS_AFTER)
        if deleted:
            log.info(
                "worker: pruned %d entries older than %d days", deleted, settings.retention_days
            )
        return int(deleted)

    def _heartbeat(self, poll: tuple[float, int] | None = None) -> None:
        tick = self.config.settings.tick_interval
        self.store.record_tick(self.name, datetime.now(UTC), tick, poll)
        self._beat_at = self._clock()

    def _keep_alive(self, _progress: object = None) -> None:
        """A heartbeat in the middle of a tick, called as the poll finishes a feed and as
        the grouping saves a batch: written when a tick interval has passed since the
        last one. A tick that makes no progress (stuck) writes none and `/healthz`
        reports the worker down; a long one that does (a first poll of 3,000 feeds took
        4.5 minutes, most of it grouping) keeps it up. A failed write is logged, never
        raised: it must not fail the poll.
        """
        if self._clock() - self._beat_at < self.config.settings.tick_interval:
            return
        try:
            self._heartbeat()
        except Exception:
            log.exception("worker: heartbeat during the tick failed")

    def _safe(self, job: Any) -> Any:
        def run() -> None:
            try:
                job()
            except Exception:  # the timer must survive a failing job (e.g. database down)
                log.exception("worker: %s failed", job.__name__)

        return run

    def schedule(self, scheduler: BaseScheduler) -> BaseScheduler:
        logging.getLogger("apscheduler.scheduler").addFilter(_SKIPPED_WHILE_RUNNING)
        common = {"max_instances": 1, "coalesce": True, "next_run_time": datetime.now(UTC)}
        seconds = self.config.settings.tick_interval
        self._scheduler = scheduler
        scheduler.add_job(
            self._safe(self.tick), "interval", seconds=seconds, id="tick", name="tick", **common
        )
        scheduler.add_job(
            self._safe(self.prune),
            "interval",
            seconds=PRUNE_EVERY.total_seconds(),
            id="prune",
            name="prune",
            **common,
        )
        every = min(CLOCK_CHECK_SECONDS, seconds)
        threading.Thread(target=self._watch_clock, args=(every,), daemon=True).start()
        return scheduler

    def _watch_clock(self, every: float) -> None:
        """Until the worker stops, check that each job is due within its interval and
        restart the jobs' timing from now when one is not: APScheduler 3 times its jobs
        on the wall clock, so after a step back of the clock (an NTP step, a virtual
        machine's snapshot restored, a date set by hand) the tick waited out the step
        (30 minutes back: no tick for 30 minutes). Reading the jobs' due times, not the
        step itself, also catches a due time the scheduler wrote from the old timing."""
        while not self._stop.wait(every) and self._scheduler is not None:
            try:
                late = self._beyond_interval(self._scheduler)
                if late > CLOCK_STEP_SECONDS:
                    log.warning("worker: the clock went back %.0fs; ticking on from now", late)
                    self._restart_jobs(self._scheduler)
            except Exception as e:  # e.g. the scheduler shut down meanwhile: the next look
                log.debug("worker: clock check failed: %s", e)

    def _beyond_interval(self, scheduler: BaseScheduler) -> float:
        """How many seconds the furthest job is due beyond its interval from now."""
        now = datetime.now(UTC)
        late = 0.0
        for job_id, seconds in self._jobs():
            job = scheduler.get_job(job_id)
            if job is not None and job.next_run_time is not None:
                late = max(late, (job.next_run_time - now).total_seconds() - seconds)
        return late

    def _jobs(self) -> tuple[tuple[str, float], ...]:
        return (
            ("tick", float(self.config.settings.tick_interval)),
            ("prune", PRUNE_EVERY.total_seconds()),
        )

    def _restart_jobs(self, scheduler: BaseScheduler) -> None:
        now = datetime.now(UTC)
        for job_id, seconds in self._jobs():
            scheduler.reschedule_job(job_id, trigger="interval", seconds=seconds)
            scheduler.modify_job(job_id, next_run_time=now)

    def run_forever(self) -> None:
        """Block, ticking until SIGTERM or Ctrl-C; then stop cleanly (see the module)."""
        scheduler = self.schedule(BlockingScheduler(timezone=UTC))
        try:
            with interrupted_by_signals():
                try:
                    scheduler.start()
                except KeyboardInterrupt:
                    pass
                self.stop(scheduler)
        except KeyboardInterrupt:  # a second signal: stop at once, as a crash would
            log.warning("worker: stopped without waiting for the tick in progress")
            self.close()
            logging.shutdown()
            os._exit(1)  # not waiting for the tick's thread, as the interpreter would

    def stop(self, scheduler: BaseScheduler) -> None:
        """Stop ticking: the tick in progress ends early (see the module) and is waited
        for; then the parser processes are stopped."""
        self.request_stop()
        if scheduler.running:
            scheduler.shutdown(wait=True)
        try:
            self.grouper.release()
        except StoreError as e:  # the lease runs out by itself
            log.warning("worker: could not give up grouping: %s", e)
        self.close()
        log.info("worker: stopped")

    def start_background(self) -> BaseScheduler:
        """Tick on a background thread (for `aggregator run`), parsing in a thread: the
        web process never starts parser processes."""
        self.parsers.close()
        self.parsers = Parsers(0)
        self._embedded = True
        scheduler = self.schedule(BackgroundScheduler(timezone=UTC, daemon=True))
        scheduler.start()
        return scheduler


@contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C
    (SIGINT) does: a service manager's stop is a clean stop, not a kill. For a loop in
    the main thread that only an exception ends (APScheduler's, waitress's)."""
    with stop_on_signals(_interrupt):
        yield


def _interrupt() -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first SIGINT (Ctrl-C) or SIGTERM calls `stop` (the work in
    hand ends early and cleanly, see `poll_due`'s `stopping`), a second one raises
    KeyboardInterrupt (stop at once)."""
    asked = False

    def interrupt(_signum: int, _frame: object) -> None:
        nonlocal asked
        if asked:
            raise KeyboardInterrupt
        asked = True
        stop()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
