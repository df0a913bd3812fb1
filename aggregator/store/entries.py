"""Entry rows: saving new and changed entries of one feed in bulk, and reading the
newest entries for pages and merged feeds.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from aggregator.models import Enclosure, Entry, EntryData, EntryText, Retention
from aggregator.store.schema import entries, entry_tags, feed_tags, feeds, stories


@dataclass(frozen=True)
class SavedEntries:
    new_ids: tuple[int, ...]  # in the order of the items given
    changed_ids: tuple[int, ...]


STALE_HASH = ""
"""A stored content hash that no entry has: set by a migration that rewrote a stored field
(0007 cleaned links), so that the next fetch refreshes the row without counting an edit."""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _row_values(entry: EntryData, now: datetime) -> dict[str, Any]:
    return {
        "title": entry.title,
        "link": entry.link,
        "updated_at": entry.updated_at or entry.published_at or now,
        "author": entry.author,
        "summary": entry.summary,
        "content_html": entry.content_html,
        "image_url": entry.image_url,
        "enclosures": json.dumps(
            [{"url": e.url, "type": e.type, "length": e.length} for e in entry.enclosures]
        ),
        "language": entry.language,
        "content_hash": entry.content_hash,
        "link_hash": key_hash(entry.link) if entry.link else None,
    }


def keys_by_link(conn: Connection, feed_id: int, links: Sequence[str]) -> list[tuple[str, str]]:
    hashes = [key_hash(link) for link in links]
    rows = conn.execute(
        select(entries.c.key, entries.c.link).where(
            entries.c.feed_id == feed_id, entries.c.link_hash.in_(hashes)
        )
    )
    return [(key, link) for key, link in rows]


def rekey(conn: Connection, feed_id: int, rekeys: Mapping[str, str]) -> None:
    """Rename stored keys of a feed; an entry whose new key is taken was a duplicate made
    by unstable guids, and is deleted.
    """
    for old, new in rekeys.items():
        taken = conn.execute(
            select(entries.c.id).where(
                entries.c.feed_id == feed_id, entries.c.key_hash == key_hash(new)
            )
        ).first()
        stale = (entries.c.feed_id == feed_id) & (entries.c.key_hash == key_hash(old))
        if taken is None:
            conn.execute(update(entries).where(stale).values(key=new, key_hash=key_hash(new)))
        else:
            doomed = select(entries.c.id).where(stale).scalar_subquery()
            conn.execute(
                update(entries).where(entries.c.duplicate_of == doomed).values(duplicate_of=None)
            )
            conn.execute(delete(entries).where(stale))


def _mark_duplicates(conn: Connection, feed_id: int, rows: list[dict[str, Any]]) -> None:
    """Point each new entry whose canonical link another feed already has at that
    feed's original entry, so merged outputs show the article once.

    A link that several items of one feed carry (a podcast's episodes all pointing at
    the show's home page) does not name an article: it makes no duplicates. Nor is a
    `catalogue` entry an original: merged outputs leave it out, and its copy with it.
    """
    counts = Counter(row["link_hash"] for row in rows if row["link_hash"])
    unique = {link_hash for link_hash, count in counts.items() if count == 1}
    if not unique:
        return
    # Filter on the link hash only, so the planner uses its index; originals are picked
    # in Python (an index on the mostly-NULL duplicate_of would be scanned instead).
    columns = (entries.c.id, entries.c.feed_id, entries.c.link_hash, entries.c.duplicate_of)
    candidates = conn.execute(
        select(*columns, entries.c.catalogue).where(
            entries.c.link_hash.in_(unique), entries.c.feed_id != feed_id
        )
    ).all()
    shared = Counter((other, link_hash) for _, other, link_hash, _, _ in candidates)
    originals: dict[str, int] = {}
    for entry_id, other, link_hash, duplicate_of, catalogue in candidates:
        if shared[other, link_hash] > 1 or catalogue:
            continue  # that feed's items share the link; a back catalogue is not shown
        if duplicate_of is None and entry_id < originals.get(link_hash, entry_id + 1):
            originals[link_hash] = entry_id
    for row in rows:
        row["duplicate_of"] = originals.get(row["link_hash"])  # of unique links only


def save_entries(
    conn: Connection,
    feed_id: int,
    items: Sequence[EntryData],
    now: datetime,
    retention: Retention | None = None,
) -> SavedEntries:
    """Insert new entries and update changed ones (by content hash) of one feed.

    An edited entry keeps its row, id and first-seen time; its `updated_at` moves on. A
    row whose hash a migration cleared (`STALE_HASH`) is refreshed without counting as
    edited: its `updated_at` stays.
    Entries without a date get the first-seen time as their published date. With
    `retention`, a new entry that `prune` would delete (see `_beyond_retention`) is not
    inserted: otherwise every item that a feed's document still holds after retention
    deleted it would come back as a new entry (a new id, first seen again) each time
    the document changed, and be deleted again within the hour.
    """
    if not items:  # a 304, an error: nothing to look up (one query less per feed)
        return SavedEntries((), ())
    unique = {key_hash(item.key): item for item in items}  # last copy of a repeated key wins
    existing = {
        row.key_hash: (row.id, row.content_hash)
        for row in conn.execute(
            select(entries.c.id, entries.c.key_hash, entries.c.content_hash).where(
                entries.c.feed_id == feed_id, entries.c.key_hash.in_(list(unique))
            )
        )
    }
    catalogue = _catalogue(conn, feed_id, unique, existing)
    new_rows: list[dict[str, Any]] = []
    new_tags: list[tuple[str, ...]] = []
    changed_rows: list[dict[str, Any]] = []
    refreshed_rows: list[dict[str, Any]] = []
    tags_by_id: dict[int, tuple[str, ...]] = {}
    # New rows are inserted from the document's end to its start: feeds list their
    # newest entry first, so entries that share a published time (none given: the time
    # first seen; or one date for a whole batch) get ids that keep the document's order
    # under "newest first, then the higher id". Inserted in document order, an undated
    # feed's entries showed bottom-up, its oldest on top.
    for hashed, item in reversed(unique.items()):
        values = _row_values(item, now)
        if hashed not in existing:
            new_rows.append(
                {
                    **values,
                    "feed_id": feed_id,
                    "key": item.key,
                    "key_hash": hashed,
                    "published_at": item.published_at or now,
                    "first_seen_at": now,
                    "catalogue": hashed in catalogue,
                }
            )
            new_tags.append(item.tags)
        elif existing[hashed][1] == STALE_HASH:  # rewritten by a migration: not an edit
            values.pop("updated_at")
            refreshed_rows.append({**values, "row_id": existing[hashed][0]})
        elif existing[hashed][1] != item.content_hash:
            entry_id = existing[hashed][0]
            changed_rows.append({**values, "row_id": entry_id, "updated_at": now})
            tags_by_id[entry_id] = item.tags
    if retention is not None and new_rows:
        doomed = _beyond_retention(
            conn, feed_id, new_rows, now - retention.max_age, retention.keep_min
        )
        new_rows = [row for i, row in enumerate(new_rows) if i not in doomed]
        new_tags = [tags for i, tags in enumerate(new_tags) if i not in doomed]
    _mark_duplicates(conn, feed_id, new_rows)
    new_ids = _insert_entries(conn, new_rows)
    changed_ids = _update_entries(conn, changed_rows)
    _update_entries(conn, refreshed_rows)
    tags_by_id.update(zip(new_ids, new_tags, strict=True))
    _replace_entry_tags(conn, tags_by_id)
    return SavedEntries(tuple(reversed(new_ids)), tuple(changed_ids))  # in document order


CATALOGUE_SHOWN = 3
"""Undated entries of a source's first poll that merged outputs show (its document's
first, mostly its newest); the rest are `catalogue`."""


def _catalogue(
    conn: Connection, feed_id: int, unique: dict[str, EntryData], existing: dict[str, Any]
) -> set[str]:
    """The key hashes of the new entries that are a new source's undated back catalogue:
    those without a date in its first poll (nothing of the feed stored yet), but the
    document's first `CATALOGUE_SHOWN`. They would all take the time of that poll and
    fill the merged feeds as news of that minute (118 of Japan Times' 2016 articles took
    47 of `/feed.atom`'s 50 items when the feed was added)."""
    undated = [hashed for hashed, item in unique.items() if item.published_at is None]
    if len(undated) <= CATALOGUE_SHOWN or existing:
        return set()
    if conn.execute(select(exists().where(entries.c.feed_id == feed_id))).scalar():
        return set()
    return set(undated[CATALOGUE_SHOWN:])


def _beyond_retention(
    conn: Connection, feed_id: int, rows: Sequence[dict[str, Any]], cutoff: datetime, keep_min: int
) -> set[int]:
    """Positions of the new `rows` that `prune(conn, cutoff, keep_min)` would delete
    once inserted: published before `cutoff`, and not among the feed's `keep_min` newest
    counting the stored entries and the new rows. `prune` ranks by date, then id (newest
    first); inserted rows get higher ids than stored ones, in the order of `rows`.

    Leaving out a row never lets an older one in: each left-out row has `keep_min`
    kept entries newer than itself, so every row older than it has them too.
    """
    old = [i for i, row in enumerate(rows) if row["published_at"] < cutoff]
    if not old:
        return set()
    newest_stored = conn.execute(
        select(entries.c.published_at)
        .where(entries.c.feed_id == feed_id)
        .order_by(entries.c.published_at.desc())
        .limit(keep_min)
    ).scalars()
    # ranking keys, newest first: (date, 1, position) for new rows, (date, 0, 0) stored
    ranked = sorted(
        [(date, 0, 0) for date in newest_stored]
        + [(row["published_at"], 1, i) for i, row in enumerate(rows)],
        reverse=True,
    )
    kept = {key[2] for key in ranked[:keep_min] if key[1]}
    return {i for i in old if i not in kept}


def _insert_entries(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert one feed's new entries; their ids, in the order of `rows`."""
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        result = conn.execute(
            insert(entries).returning(entries.c.id, sort_by_parameter_order=True), rows
        )
        return list(result.scalars())
    # On SQLite, RETURNING in row order makes SQLAlchemy send one INSERT per row, and
    # its per-row parameter handling was most of the store's CPU in bench/poll.py: the
    # rows go to the driver in one executemany, converted by the columns' own bind
    # processors (same stored format), and the ids come back by (feed, key hash).
    statement, processors = _sqlite_insert(conn, tuple(rows[0]))
    conn.exec_driver_sql(
        statement,
        [tuple(row[name] if p is None else p(row[name]) for name, p in processors) for row in rows],
    )
    found = conn.execute(
        select(entries.c.key_hash, entries.c.id).where(
            entries.c.feed_id == rows[0]["feed_id"],
            entries.c.key_hash.in_([row["key_hash"] for row in rows]),
        )
    )
    ids = {key_hash: entry_id for key_hash, entry_id in found}
    return [ids[row["key_hash"]] for row in rows]


_SQLITE_INSERTS: dict[tuple[str, ...], tuple[str, tuple[tuple[str, Any], ...]]] = {}


def _sqlite_insert(
    conn: Connection, columns: tuple[str, ...]
) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The driver-level INSERT of these entry columns and each column's bind processor."""
    found = _SQLITE_INSERTS.get(columns)
    if found is None:
        given = columns
        columns = tuple(c.name for c in entries.columns if c.name in given)  # table order
        if len(columns) != len(given):
            raise ValueError(f"store: unknown entry columns {sorted(set(given) - set(columns))}")
        dialect = conn.dialect
        statement = str(insert(entries).compile(dialect=dialect, column_keys=list(columns)))
        processors = tuple(
            (name, entries.c[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in columns
        )
        found = _SQLITE_INSERTS[given] = (statement, processors)
    return found


def _update_entries(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    if not rows:
        return []
    columns = [key for key in rows[0] if key != "row_id"]
    statement = (
        update(entries)
        .where(entries.c.id == bindparam("row_id"))
        .values({column: bindparam(column) for column in columns})
    )
    conn.execute(statement, rows)
    return [row["row_id"] for row in rows]


def _replace_entry_tags(conn: Connection, tags_by_id: dict[int, tuple[str, ...]]) -> None:
    if not tags_by_id:
        return
    conn.execute(delete(entry_tags).where(entry_tags.c.entry_id.in_(list(tags_by_id))))
    rows = [
        {"entry_id": entry_id, "tag": tag[:200]}
        for entry_id, tags in tags_by_id.items()
        for tag in dict.fromkeys(tags)
    ]
    if rows:
        conn.execute(insert(entry_tags), rows)


def _latest_query(
    feed_id: int | None, tag: str | None, originals_only: bool = True, removed: bool = False
) -> Any:
    """Entries with their feed's titles: of one feed, or merged (`originals_only`: each
    article once); `removed`: some sources left the config (`has_removed_sources`), whose
    entries merged outputs leave out."""
    feed_title = func.coalesce(feeds.c.title, feeds.c.feed_title, feeds.c.url)
    query = select(
        entries,
        feed_title.label("feed_display_title"),
        feeds.c.url.label("feed_url"),
        feeds.c.site_link.label("feed_link"),
    ).join(feeds, feeds.c.id == entries.c.feed_id)
    if feed_id is not None:
        query = query.where(entries.c.feed_id == feed_id)
    elif originals_only:  # merged outputs show an article once, with its other sources listed
        query = query.where(entries.c.duplicate_of.is_(None), entries.c.catalogue.is_(False))
        if removed:
            # only sources the config still lists: a removed source's entries are kept
            # (re-adding it brings them back) but no longer merged, unless a listed
            # source repeats the article (shown once, as before, "also in" that source)
            query = query.where(or_(feeds.c.in_config.is_(True), _repeated_by_listed()))
    if tag is not None:
        tagged = select(feed_tags.c.feed_id).where(feed_tags.c.tag == tag)
        query = query.where(entries.c.feed_id.in_(tagged))
    return query


def has_removed_sources(conn: Connection) -> bool:
    """Whether a source has left the config (its entries stay stored). Asked first, so
    that merged reads pay for the removed sources' filter only when there are some."""
    return bool(conn.execute(select(exists().where(feeds.c.in_config.is_(False)))).scalar())


def _repeated_by_listed() -> Any:
    """Whether a source the config lists carries a copy of the entry (`duplicate_of`)."""
    copy, source = entries.alias("copy"), feeds.alias("copy_source")
    return exists().where(
        copy.c.duplicate_of == entries.c.id,
        source.c.id == copy.c.feed_id,
        source.c.in_config.is_(True),
    )


def get_latest(
    conn: Connection,
    limit: int,
    offset: int = 0,
    feed_id: int | None = None,
    tag: str | None = None,
) -> list[Entry]:
    """The newest entries, newest first, in a stable order (published time, then id)."""
    query = (
        _latest_query(feed_id, tag, removed=feed_id is None and has_removed_sources(conn))
        .order_by(entries.c.published_at.desc(), entries.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return entries_from_rows(conn, conn.execute(query).all())


def entries_from_rows(conn: Connection, rows: Sequence[Row[Any]]) -> list[Entry]:
    """Entries (with tags and other sources) from rows of `_latest_query`."""
    ids = [row.id for row in rows]
    tags = _entry_tags(conn, ids)
    also_in = _also_in(conn, ids)
    sources = _story_sources(conn, {row.story_id for row in rows if row.story_id is not None})
    return [
        _to_entry(row, tags.get(row.id, ()), also_in.get(row.id, ()), sources.get(row.story_id, 0))
        for row in rows
    ]


def _story_sources(conn: Connection, story_ids: set[int]) -> dict[int, int]:
    """How many sources each story covers (a story of one source is not shown as
    coverage)."""
    if not story_ids:
        return {}
    query = select(stories.c.id, stories.c.source_count).where(stories.c.id.in_(sorted(story_ids)))
    return {story_id: count for story_id, count in conn.execute(query)}


def _also_in(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """For each entry, the titles of the other feeds that carry the same article."""
    if not ids:
        return {}
    feed_title = func.coalesce(feeds.c.title, feeds.c.feed_title, feeds.c.url)
    query = (
        select(entries.c.duplicate_of, feed_title)
        .join(feeds, feeds.c.id == entries.c.feed_id)
        .where(entries.c.duplicate_of.in_(ids), feeds.c.in_config.is_(True))
        .order_by(entries.c.id)
    )
    found: dict[int, list[str]] = {}
    for original, title in conn.execute(query):
        found.setdefault(original, []).append(title)
    return {key: tuple(dict.fromkeys(titles)) for key, titles in found.items()}


_TEXT_COLUMNS = (  # named as `EntryText`'s fields
    entries.c.id,
    entries.c.feed_id,
    entries.c.title,
    entries.c.summary,
    entries.c.link,
    entries.c.first_seen_at,
    entries.c.published_at,
    # declared, else read off the text when it was grouped: a warm start need not
    # read it again
    func.coalesce(entries.c.language, entries.c.detected_language).label("language"),
    entries.c.story_id,
    entries.c.group_score,
    entries.c.catalogue,
)


def get_ungrouped(conn: Connection, limit: int) -> list[EntryText]:
    query = (
        select(*_TEXT_COLUMNS)
        .where(entries.c.story_id.is_(None))
        .order_by(entries.c.id)
        .limit(limit)
    )
    return [EntryText(**row._mapping) for row in conn.execute(query)]


def get_grouped_since(conn: Connection, since: datetime, limit: int) -> list[EntryText]:
    query = (
        select(*_TEXT_COLUMNS)
        .where(entries.c.story_id.is_not(None), entries.c.first_seen_at >= since)
        .order_by(entries.c.id.desc())
        .limit(limit)
    )
    newest_first = [EntryText(**row._mapping) for row in conn.execute(query)]
    return newest_first[::-1]


def prunable(conn: Connection, cutoff: datetime, keep_min: int) -> list[int]:
    """The entries published before `cutoff`, except each listed feed's `keep_min`
    newest, oldest first. A feed that stopped publishing keeps its newest entries however
    old they get; one removed from the config keeps none beyond the cutoff."""
    rank = (
        func.row_number()
        .over(
            partition_by=entries.c.feed_id,
            order_by=(entries.c.published_at.desc(), entries.c.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(entries.c.id, entries.c.published_at, feeds.c.in_config, rank)
        .join(feeds, feeds.c.id == entries.c.feed_id)
        .subquery()
    )
    kept = and_(ranked.c.rank <= keep_min, ranked.c.in_config.is_(True))
    statement = (
        select(ranked.c.id)
        .where(ranked.c.published_at < cutoff, ~kept)
        .order_by(ranked.c.published_at, ranked.c.id)
    )
    return list(conn.scalars(statement))


def delete_entries(conn: Connection, ids: Sequence[int]) -> list[int]:
    """Delete the entries (entries that repeated one become originals themselves).

    Returns:
        The stories they were in (their counts need refreshing).
    """
    if not ids:
        return []
    touched = stories_of(conn, entries.c.id.in_(ids))
    conn.execute(update(entries).where(entries.c.duplicate_of.in_(ids)).values(duplicate_of=None))
    conn.execute(delete(entries).where(entries.c.id.in_(ids)))
    return touched


def stories_of(conn: Connection, which: ColumnElement[bool]) -> list[int]:
    """The stories (ids, ascending) that the entries `which` selects are in."""
    statement = select(entries.c.story_id).where(which, entries.c.story_id.is_not(None)).distinct()
    return sorted(conn.scalars(statement))


def count_entries(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(entries)).scalar_one()


def _entry_tags(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    if not ids:
        return {}
    query = select(entry_tags.c.entry_id, entry_tags.c.tag).where(entry_tags.c.entry_id.in_(ids))
    tags: dict[int, list[str]] = {}
    for entry_id, tag in conn.execute(query):
        tags.setdefault(entry_id, []).append(tag)
    return {entry_id: tuple(sorted(values)) for entry_id, values in tags.items()}


def _to_entry(
    row: Row[Any], tags: tuple[str, ...], also_in: tuple[str, ...] = (), story_sources: int = 0
) -> Entry:
    return Entry(
        id=row.id,
        feed_id=row.feed_id,
        key=row.key,
        title=row.title,
        link=row.link,
        published_at=row.published_at,
        updated_at=row.updated_at,
        first_seen_at=row.first_seen_at,
        author=row.author,
        summary=row.summary,
        content_html=row.content_html,
        image_url=row.image_url,
        tags=tags,
        enclosures=tuple(Enclosure(**item) for item in json.loads(row.enclosures)),
        language=row.language or row.detected_language,  # declared, else read off the text
        feed_title=row.feed_display_title,
        feed_url=row.feed_url,
        feed_link=row.feed_link,
        story_id=row.story_id,
        story_sources=story_sources,
        also_in=also_in,
        group_score=row.group_score,
        group_terms=tuple(json.loads(row.group_terms)) if row.group_terms else (),
        duplicate_of=row.duplicate_of,
        catalogue=row.catalogue,
    )
