"""The store: the only package that imports SQLAlchemy.

`Store` is the facade the rest of the service uses. Each public method runs in its own
transaction and returns `aggregator.models` dataclasses, so no row or session leaves the
package. Write transactions start with `BEGIN IMMEDIATE` on SQLite.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from aggregator.exceptions import StoreError
from aggregator.models import (
    COVERED_SOURCES,
    Entry,
    EntryData,
    EntryText,
    FeedState,
    Retention,
    SourceConfig,
    Story,
    StoryAssignment,
    StoryLabel,
    WorkerBeat,
)
from aggregator.store import entries as entry_rows
from aggregator.store import feeds as feed_rows
from aggregator.store import locks as lock_rows
from aggregator.store import pages as page_rows
from aggregator.store import stories as story_rows
from aggregator.store.engine import SQLITE_BUSY_TIMEOUT_MS, make_engine
from aggregator.store.pages import DigestQuery, EntryQuery
from aggregator.store.schema import workers

__all__ = ["Store", "FeedUpdate", "PendingSave", "SaveOutcome", "DigestQuery", "EntryQuery"]

log = logging.getLogger(__name__)

PRUNE_BATCH = 1000  # entries deleted per transaction


@dataclass(frozen=True)
class FeedUpdate:
    """The new state of one feed after a fetch, written with its entries in one go."""

    url: str | None = None  # a new URL after a permanent redirect
    feed_title: str | None = None
    site_link: str | None = None
    language: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    next_check_at: datetime | None = None
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_status: str | None = None
    http_status: int | None = None
    last_error: str | None = None
    error_count: int = 0
    backoff_count: int = 0  # consecutive errors without Retry-After (the backoff's count)
    disabled_reason: str | None = None
    id_rule: str | None = None  # set to switch the feed's identity rule
    keep_document_fields: bool = False  # True when nothing was parsed (304, errors)


@dataclass(frozen=True)
class PendingSave:
    """One feed's update waiting to be written (see `Store.save_updates`)."""

    feed_id: int
    state: FeedUpdate
    items: tuple[EntryData, ...] = ()
    now: datetime | None = None
    rekeys: Mapping[str, str] | None = None
    retention: Retention | None = None  # see entries.save_entries


@dataclass(frozen=True)
class SaveOutcome:
    saved: bool  # False when the lease was lost and nothing was written
    new_ids: tuple[int, ...] = ()
    changed_ids: tuple[int, ...] = ()


ANALYZE_GROWTH = 0.5
"""Share of its rows by which the entries table changes before `Store.refresh_statistics`
analyzes it (PostgreSQL's autovacuum analyzes at 0.1 once it runs)."""
ANALYZE_MIN_ROWS = 10_000
"""Fewer changed rows never trigger it: a small table is planned well enough anyway."""
_ENTRY_CHANGES = """
    SELECT n_mod_since_analyze AS changed, n_live_tup AS rows
    FROM pg_stat_user_tables WHERE relid = 'entries'::regclass
"""


class Store:
    """Feeds, entries and worker heartbeats in SQLite (WAL) or PostgreSQL."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine = make_engine(database_url)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as e:
            raise StoreError(f"store: {e}") from e

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self._engine.connect().execution_options(sqlite_immediate=True) as conn:
                with conn.begin():
                    yield conn
        except SQLAlchemyError as e:
            raise StoreError(f"store: {e}") from e

    # planner statistics

    def refresh_statistics(self) -> bool:
        """On PostgreSQL, ANALYZE the entries table when it changed by more than
        `ANALYZE_GROWTH` of its rows (and `ANALYZE_MIN_ROWS` at least) since its
        statistics were last taken; on SQLite, nothing.

        Autovacuum does this when it runs, but may lag behind a first poll that fills an
        empty table (or be off): a table without statistics is planned as if every
        value were common, and the lookup of an entry's link among other feeds' entries
        became a sequential scan per feed. The first poll of 3,000 feeds stored 1,000
        entries/s instead of 5,000 until the table was analyzed.

        Returns:
            Whether the table was analyzed.
        """
        if self._engine.dialect.name != "postgresql":
            return False
        with self._write() as conn:
            row = conn.execute(text(_ENTRY_CHANGES)).one_or_none()
            if row is None or row.changed < max(ANALYZE_MIN_ROWS, ANALYZE_GROWTH * row.rows):
                return False
            conn.execute(text("ANALYZE entries"))
            return True

    # schema

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        from aggregator.store import migrate  # Alembic only when migrating (~12 MB)

        try:
            migrate.upgrade(self._engine)
        except SQLAlchemyError as e:
            raise StoreError(f"store: migration failed: {e}") from e

    def backup(self, target: Path) -> int:
        """Copy a SQLite store, consistently, into the new file `target` while workers
        and the web go on (SQLite's online backup: one read snapshot, WAL included).
        The copy is written beside `target` and renamed into place when complete.

        Returns:
            The size of the copy in bytes.

        Raises:
            StoreError: the store is PostgreSQL (use pg_dump), `target` exists, or the
                copy failed.
        """
        if self._engine.dialect.name != "sqlite":
            raise StoreError("store: backup copies SQLite stores; on PostgreSQL use pg_dump")
        if target.exists():
            raise StoreError(f"store: {target} exists; give a new file")
        if not target.parent.is_dir():
            raise StoreError(f"store: folder {target.parent} does not exist; create it first")
        partial = target.with_name(f".{target.name}.partial")
        try:
            with (
                closing(self._engine.raw_connection()) as raw,
                closing(sqlite3.connect(partial)) as copy,
            ):
                source = raw.driver_connection
                assert isinstance(source, sqlite3.Connection)  # the engine's SQLite driver
                source.backup(copy)
            os.replace(partial, target)
        except (sqlite3.Error, OSError) as e:
            partial.unlink(missing_ok=True)
            raise StoreError(f"store: backup to {target} failed: {e}") from e
        return target.stat().st_size

    def schema_is_current(self) -> bool:
        from aggregator.store import migrate

        return migrate.current_revision(self._engine) == migrate.head_revision()

    # feeds

    def sync_sources(self, sources: Sequence[SourceConfig], now: datetime) -> None:
        with self._write() as conn:
            story_rows.recount_stories_of(conn, feed_rows.sync_sources(conn, sources, now))

    def enable_feed(self, config_url: str, now: datetime) -> str | None:
        """Poll again a feed the service disabled (HTTP 410); see `feeds.enable`."""
        with self._write() as conn:
            return feed_rows.enable(conn, config_url, now)

    def get_feeds(self, now: datetime | None = None) -> list[FeedState]:
        with self._read() as conn:
            return feed_rows.get_feeds(conn, now=now)

    def get_feed(self, feed_id: int, now: datetime | None = None) -> FeedState | None:
        """One feed; with `now`, its entries per day counted up to then (as `get_feeds`)."""
        with self._read() as conn:
            found = feed_rows.get_feeds(conn, [feed_id], now=now)
        return found[0] if found else None

    def claim_due_feeds(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        force: bool = False,
        after_id: int = 0,
    ) -> list[FeedState]:
        """Lease due feeds to `owner`; with `force`, any feed with an id above `after_id`
        whatever its due time (see `feeds.claim_due`).
        """
        with self._write() as conn:
            return feed_rows.claim_due(conn, owner, now, lease, limit, after_id if force else None)

    def renew_leases(self, feed_ids: Sequence[int], owner: str, until: datetime) -> int:
        """Extend `owner`'s leases on `feed_ids` (those it still holds) to `until`; how
        many it still held."""
        if not feed_ids:
            return 0
        with self._write() as conn:
            return feed_rows.renew(conn, feed_ids, owner, until)

    def release_feeds(self, feed_ids: Sequence[int], owner: str) -> None:
        """Give up `owner`'s leases on `feed_ids` without polling them (an error, or a
        worker stopping): any worker may claim them at once."""
        if not feed_ids:
            return
        with self._write() as conn:
            feed_rows.release(conn, feed_ids, owner)

    def save_update(
        self,
        feed_id: int,
        owner: str,
        state: FeedUpdate,
        items: Sequence[EntryData] = (),
        now: datetime | None = None,
        rekeys: Mapping[str, str] | None = None,
        retention: Retention | None = None,
    ) -> SaveOutcome:
        """Save one feed's entries and new fetch state in one transaction, fenced by the
        lease: if `owner` no longer holds the feed, nothing is written. `rekeys` renames
        stored entry keys first (when the feed's identity rule changes). With
        `retention`, new entries that `prune` would delete are not inserted.
        """
        save = PendingSave(feed_id, state, tuple(items), now, rekeys, retention)
        outcome = self.save_updates(owner, [save])
        if isinstance(outcome[0], StoreError):
            raise outcome[0]
        return outcome[0]

    def save_updates(
        self, owner: str, saves: Sequence[PendingSave]
    ) -> list[SaveOutcome | StoreError]:
        """Save several feeds' updates in one transaction (one disk sync), each fenced
        by its lease and inside its own savepoint: a feed whose lease was lost, or whose
        save fails, writes nothing and leaves the others' saves intact.

        State-only saves (a 304 or an unchanged body: no entries, rekeys or new URL) are
        first written together, one executemany per column set in one savepoint; if any
        of them lost its lease or the write fails, that savepoint is rolled back and
        they are saved one by one like the rest, so every outcome is the same either way.
        """
        try:
            with self._write() as conn:
                return _save_all(conn, owner, saves)
        except StoreError as e:
            return [StoreError(f"store: unable to save {len(saves)} feeds: {e}") for _ in saves]

    # entries

    def get_keys_by_link(self, feed_id: int, links: Sequence[str]) -> list[tuple[str, str]]:
        """(key, link) of the feed's stored entries with one of `links`."""
        with self._read() as conn:
            return entry_rows.keys_by_link(conn, feed_id, links)

    def get_latest(
        self, limit: int = 50, offset: int = 0, feed_id: int | None = None, tag: str | None = None
    ) -> list[Entry]:
        with self._read() as conn:
            return entry_rows.get_latest(conn, limit, offset, feed_id, tag)

    def prune(self, now: datetime, retention: Retention) -> int:
        """Delete entries published more than `retention.max_age` before `now`, keeping
        each feed's `retention.keep_min` newest.

        Returns:
            How many entries were deleted.
        """
        with self._read() as conn:
            doomed = entry_rows.prunable(conn, now - retention.max_age, retention.keep_min)
        for start in range(0, len(doomed), PRUNE_BATCH):
            # a transaction a batch: one delete of a year's entries (after retention_days
            # was lowered) grew SQLite's write-ahead log by its whole size at once
            with self._write() as conn:
                touched = entry_rows.delete_entries(conn, doomed[start : start + PRUNE_BATCH])
                story_rows.refresh_after_prune(conn, touched)
        if doomed:
            self.checkpoint()
        return len(doomed)

    def checkpoint(self) -> None:
        """On SQLite, move the write-ahead log into the database and truncate it, when no
        reader needs it (else a later checkpoint that empties the log cuts it back to
        `journal_size_limit`): after a prune, the log held all it deleted. Without
        waiting: a TRUNCATE checkpoint that waits for readers holds off every writer
        meanwhile (a heartbeat waited 7.5 s behind an 8 s read). Nothing on PostgreSQL."""
        if self._engine.dialect.name != "sqlite":
            return
        self._sqlite_outside_transactions(
            "PRAGMA busy_timeout=0",
            "PRAGMA wal_checkpoint(TRUNCATE)",
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        )

    def vacuum(self) -> tuple[int, int] | None:
        """Give the space of deleted rows back to the file system (SQLite's VACUUM: the
        file is rewritten, writers wait until it is done). Returns the file's size before
        and after; None on PostgreSQL, where autovacuum does this.

        Raises:
            StoreError: the database stayed busy (a long write) or the disk is full (the
                rewrite needs room for a copy).
        """
        if self._engine.dialect.name != "sqlite":
            return None
        path = Path(self._engine.url.database or "")
        before = path.stat().st_size
        try:
            self._sqlite_outside_transactions("VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            raise StoreError(f"store: vacuum of {path} failed: {e}") from e
        return before, path.stat().st_size

    def _sqlite_outside_transactions(self, *statements: str) -> None:
        """Run SQLite statements that a transaction must not enclose (the engine begins
        one on every connection's first statement), on a pooled connection's driver."""
        with closing(self._engine.raw_connection()) as raw:
            driver = raw.driver_connection
            assert isinstance(driver, sqlite3.Connection)  # the engine's SQLite driver
            try:
                for statement in statements:
                    driver.execute(statement).close()
            except sqlite3.Error:
                raw.invalidate()  # not back to the pool with a setting changed midway
                raise

    def count_entries(self) -> int:
        with self._read() as conn:
            return entry_rows.count_entries(conn)

    # stories

    def save_assignments(
        self,
        assignments: Sequence[StoryAssignment],
        labels: Sequence[StoryLabel] = (),
        fence: tuple[str, str, datetime] | None = None,
        merges: Sequence[tuple[int, int]] = (),
    ) -> bool:
        """Save grouping decisions. With `fence` (lock name, owner, new expiry) they are
        written only while `owner` still holds the lock, which is renewed. `merges`
        are `(survivor, absorbed)` story pairs applied in order after the assignments:
        the absorbed story's entries move to the survivor and its row is deleted.

        Returns:
            False when the fence failed and nothing was written.
        """
        with self._write() as conn:
            if fence is not None and not lock_rows.renew(conn, *fence):
                return False  # the renewal matched no row: nothing was written
            story_rows.save_assignments(conn, assignments, labels, merges)
        return True

    def clear_stories(self, lock: tuple[str, str, datetime] | None = None) -> None:
        """Forget every story; with `lock` (name, owner, expiry), take that lock first,
        whoever holds it, in the same transaction.
        """
        with self._write() as conn:
            if lock is not None:
                lock_rows.take(conn, *lock)
            story_rows.clear(conn)

    def get_ungrouped(self, limit: int) -> list[EntryText]:
        """The text of entries not yet given a story, oldest first."""
        with self._read() as conn:
            return entry_rows.get_ungrouped(conn, limit)

    def get_grouped_since(self, since: datetime, limit: int) -> list[EntryText]:
        """The text of grouped entries first seen at or after `since`, oldest first;
        beyond `limit`, the newest `limit` of them (warm start)."""
        with self._read() as conn:
            return entry_rows.get_grouped_since(conn, since, limit)

    def get_stories(
        self,
        limit: int = 20,
        min_sources: int = COVERED_SOURCES,
        tag: str | None = None,
        since: datetime | None = None,
    ) -> list[Story]:
        """The most covered stories (most sources, then newest)."""
        with self._read() as conn:
            return page_rows.get_top_stories(conn, limit, min_sources, tag, since)

    def get_story(self, story_id: int) -> Story | None:
        with self._read() as conn:
            return story_rows.get_story(conn, story_id)

    def get_story_entries(self, story_id: int) -> list[Entry]:
        with self._read() as conn:
            return story_rows.get_story_entries(conn, story_id)

    # named leases

    def acquire_lock(
        self, name: str, owner: str, now: datetime, ttl: timedelta
    ) -> tuple[bool, str | None]:
        """Take or renew the lease `name` for `owner` unless someone else holds a live one.

        Returns:
            (acquired, previous owner) — the previous owner tells a grouper whether
            another worker grouped since it last did.
        """
        with self._write() as conn:
            return lock_rows.acquire(conn, name, owner, now, ttl)

    def release_lock(self, name: str, owner: str) -> None:
        with self._write() as conn:
            lock_rows.release(conn, name, owner)

    # worker heartbeats

    def record_tick(
        self,
        name: str,
        now: datetime,
        tick_seconds: float,
        poll: tuple[float, int] | None = None,
    ) -> None:
        """Write a worker's heartbeat; `poll` is (seconds, feeds) of a finished poll."""
        values: dict[str, Any] = {"last_tick_at": now, "tick_seconds": tick_seconds}
        if poll is not None:
            values.update(poll_seconds=poll[0], poll_feeds=poll[1])
        with self._write() as conn:
            found = conn.execute(update(workers).where(workers.c.name == name).values(**values))
            if found.rowcount == 0:
                conn.execute(insert(workers).values(name=name, **values))

    def get_workers(self) -> list[WorkerBeat]:
        """Every worker's last heartbeat, by name."""
        with self._read() as conn:
            rows = conn.execute(select(workers).order_by(workers.c.name))
            return [
                WorkerBeat(r.name, r.last_tick_at, r.tick_seconds, r.poll_seconds, r.poll_feeds)
                for r in rows
            ]

    def forget_workers(self, before: datetime) -> int:
        """Delete the heartbeats of workers silent since before `before` (each process
        that ever ran left one), never the newest. Returns how many went."""
        newest = select(func.max(workers.c.last_tick_at)).scalar_subquery()
        with self._write() as conn:
            gone = conn.execute(
                delete(workers).where(
                    workers.c.last_tick_at < before, workers.c.last_tick_at < newest
                )
            )
            return int(gone.rowcount)

    def last_tick(self) -> tuple[datetime, float] | None:
        """The newest worker heartbeat and that worker's tick interval."""
        with self._read() as conn:
            row = conn.execute(
                select(workers.c.last_tick_at, workers.c.tick_seconds)
                .order_by(workers.c.last_tick_at.desc())
                .limit(1)
            ).first()
        return (row.last_tick_at, row.tick_seconds) if row else None

    def counts(self) -> dict[str, int]:
        """Totals for health and metrics."""
        with self._read() as conn:
            return page_rows.get_totals(conn)

    # web reads (pages.py)

    def web_version(self) -> tuple[Any, ...]:
        """A cheap value that changes when anything the web shows changes."""
        with self._read() as conn:
            return page_rows.version(conn)

    def get_entries_page(self, query: page_rows.EntryQuery) -> list[Entry]:
        with self._read() as conn:
            return page_rows.get_entries(conn, query)

    def get_stories_page(
        self,
        limit: int,
        before: int | None = None,
        after: int | None = None,
        min_sources: int = COVERED_SOURCES,
        tag: str | None = None,
        since: datetime | None = None,
    ) -> list[Story]:
        with self._read() as conn:
            return page_rows.get_stories(conn, limit, before, after, min_sources, tag, since)

    def get_story_coverage(self, story_ids: Sequence[int]) -> dict[int, list[Entry]]:
        with self._read() as conn:
            return page_rows.get_story_coverage(conn, story_ids)

    def get_story_outlets(self, stories: Sequence[Story], outlets: int) -> dict[int, list[Entry]]:
        """Per story, its headline entry and the first entry of its first `outlets` + 1
        feeds, oldest first (see `pages.get_story_outlets`)."""
        with self._read() as conn:
            heads = [(story.id, story.headline_entry_id) for story in stories]
            return page_rows.get_story_outlets(conn, heads, outlets)

    def get_digest(self, query: page_rows.DigestQuery) -> page_rows.DigestRows:
        """What the digest on `/` shows, in one read transaction (see `pages.get_digest`)."""
        with self._read() as conn:
            return page_rows.get_digest(conn, query)

    def get_tags(self) -> list[str]:
        with self._read() as conn:
            return page_rows.get_tags(conn)

    def get_group_reasons(self, story_id: int) -> dict[int, page_rows.GroupReason]:
        with self._read() as conn:
            return page_rows.get_group_reasons(conn, story_id)

    def get_daily_counts(self, since: datetime) -> dict[int, dict[date, int]]:
        with self._read() as conn:
            return page_rows.get_daily_counts(conn, since)

    def get_metrics(self) -> dict[str, Any]:
        with self._read() as conn:
            return page_rows.get_metrics(conn)


_SAVED = SaveOutcome(saved=True)


def _save_all(
    conn: Connection, owner: str, saves: Sequence[PendingSave]
) -> list[SaveOutcome | StoreError]:
    done: dict[int, SaveOutcome] = {}
    for group in _state_only_groups(saves):
        updates = [(saves[i].feed_id, values) for i, values in group]
        if _save_states(conn, owner, updates):
            done.update(dict.fromkeys((i for i, _ in group), _SAVED))
    return [done.get(i) or _save_one(conn, owner, save) for i, save in enumerate(saves)]


def _state_only_groups(
    saves: Sequence[PendingSave],
) -> list[list[tuple[int, dict[str, Any]]]]:
    """(index, new state values) of the state-only saves that can be written together,
    grouped by column set.

    A feed saved twice in the batch is left to `_save_one`, in order: its second save
    must find the lease its first released. Saves with neither `now` nor
    `last_fetch_at` are too, so that they fail there as they always have.
    """
    seen: dict[int, int] = {}
    for save in saves:
        seen[save.feed_id] = seen.get(save.feed_id, 0) + 1
    groups: dict[tuple[str, ...], list[tuple[int, dict[str, Any]]]] = {}
    for i, save in enumerate(saves):
        if (
            not save.items
            and not save.rekeys
            and save.state.url is None
            and (save.now is not None or save.state.last_fetch_at is not None)
            and seen[save.feed_id] == 1
        ):
            values = _state_values(save.state)
            groups.setdefault(tuple(values), []).append((i, values))
    return [group for group in groups.values() if len(group) > 1]


def _save_states(
    conn: Connection, owner: str, updates: Sequence[tuple[int, dict[str, Any]]]
) -> bool:
    """Write (feed id, new state values) of state-only saves in one savepoint. False,
    with nothing written, when a lease was lost or the write failed: the caller then
    saves them one by one."""
    try:
        with conn.begin_nested() as savepoint:
            if feed_rows.fenced_updates(conn, owner, updates) != len(updates):
                savepoint.rollback()
                return False
    except SQLAlchemyError as e:
        log.debug("store: state saves in one batch failed (%s); saving them one by one", e)
        return False
    return True


def _save_one(conn: Connection, owner: str, save: PendingSave) -> SaveOutcome | StoreError:
    try:
        with conn.begin_nested():
            if not feed_rows.fenced_update(conn, save.feed_id, owner, _state_values(save.state)):
                return SaveOutcome(saved=False)
            if save.state.url is not None:
                feed_rows.flag_duplicate_subscription(conn, save.feed_id, save.state.url)
            if save.rekeys:
                entry_rows.rekey(conn, save.feed_id, save.rekeys)
            now = save.now or _required(save.state)
            saved = entry_rows.save_entries(conn, save.feed_id, save.items, now, save.retention)
    except SQLAlchemyError as e:
        return StoreError(f"store: unable to save feed {save.feed_id}: {e}")
    return SaveOutcome(True, saved.new_ids, saved.changed_ids)


def _required(state: FeedUpdate) -> datetime:
    if state.last_fetch_at is None:
        raise ValueError("store: FeedUpdate.last_fetch_at is required")
    return state.last_fetch_at


def _state_values(state: FeedUpdate) -> dict[str, Any]:
    values: dict[str, Any] = {
        "etag": state.etag,
        "last_modified": state.last_modified,
        "body_hash": state.body_hash,
        "next_check_at": state.next_check_at,
        "last_fetch_at": state.last_fetch_at,
        "last_status": state.last_status,
        "http_status": state.http_status,
        "last_error": state.last_error,
        "error_count": state.error_count,
        "backoff_count": state.backoff_count,
        "disabled_reason": state.disabled_reason,
    }
    if state.last_success_at is not None:
        values["last_success_at"] = state.last_success_at
    if state.url is not None:
        values["url"] = state.url
    if state.id_rule is not None:
        values["id_rule"] = state.id_rule
    if not state.keep_document_fields:
        values.update(
            feed_title=state.feed_title, site_link=state.site_link, language=state.language
        )
    return values
