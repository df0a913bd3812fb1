"""Read-only queries for the web: a cheap store version for response caches, keyset
paging of entries and stories, stories' coverage, why entries were grouped, entries per
day for sparklines, and totals for metrics. Nothing here writes.

Keyset paging orders entries by (published_at, id) and stories by (last_updated_at, id),
newest first; a page is addressed by the id of the row it starts after (`before`, older
rows) or before (`after`, newer rows), so pages stay stable while new rows arrive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, literal, or_, select

from aggregator.models import COVERED_SOURCES, Entry, Story
from aggregator.store import feeds as feed_rows
from aggregator.store.entries import (
    _latest_query,
    count_entries,
    entries_from_rows,
    has_removed_sources,
)
from aggregator.store.schema import entries, feed_tags, feeds, stories
from aggregator.store.stories import _sources, _to_story, own_report


@dataclass(frozen=True)
class GroupReason:
    """Why an entry joined its story, as grouping recorded it."""

    score: float | None
    terms: tuple[str, ...]


@dataclass(frozen=True)
class EntryQuery:
    """Which entries a page shows: the scope, a time window and the keyset cursor."""

    limit: int
    before: int | None = None  # entry id: rows older than it
    after: int | None = None  # entry id: rows newer than it
    feed_id: int | None = None  # one source, duplicates included
    tag: str | None = None
    story_id: int | None = None  # one story's coverage, duplicates included
    since: datetime | None = None
    content: bool = True  # False: content_html comes back empty (pages show summaries)


def version(conn: Connection) -> tuple[Any, ...]:
    """A cheap value that changes whenever what the web shows changes.

    Every sub-select is answered from an index or a small table: new and pruned entries
    move the entry id bounds; every saved fetch (and so every edited entry) moves the
    newest `last_fetch_at`; grouping moves the stories' newest update and count; a
    source leaving the config (or coming back) moves the sum of the listed sources' ids.
    """
    row = conn.execute(
        select(
            select(func.max(entries.c.id)).scalar_subquery(),
            select(func.min(entries.c.id)).scalar_subquery(),
            select(func.max(feeds.c.last_fetch_at)).scalar_subquery(),
            select(func.count()).select_from(feeds).scalar_subquery(),
            select(func.sum(feeds.c.id)).where(feeds.c.in_config.is_(True)).scalar_subquery(),
            select(func.max(stories.c.last_updated_at)).scalar_subquery(),
            select(func.count()).select_from(stories).scalar_subquery(),
        )
    ).one()
    return tuple(row)


def _cursor(conn: Connection, entry_id: int) -> tuple[datetime, int] | None:
    row = conn.execute(
        select(entries.c.published_at, entries.c.id).where(entries.c.id == entry_id)
    ).first()
    return (row.published_at, row.id) if row else None


def get_entries(conn: Connection, query: EntryQuery) -> list[Entry]:
    """A page of entries, newest first. An unknown cursor id gives an empty page."""
    return entries_from_rows(conn, _entry_rows(conn, query))


def _without_content(statement: Any) -> Any:
    """The same rows with an empty content_html: what the HTML pages show is the
    plain-text summary, and full contents can be tens of kilobytes an entry.
    """
    columns = [
        literal("").label("content_html") if column.name == "content_html" else column
        for column in statement.selected_columns
    ]
    return statement.with_only_columns(*columns, maintain_column_froms=False)


def _entry_rows(
    conn: Connection, query: EntryQuery, removed: bool | None = None
) -> Sequence[Row[Any]]:
    """`removed`: whether some source left the config (`has_removed_sources`), when the
    caller already knows; else asked here, for merged lists only."""
    if query.story_id is not None:
        statement = _listed_members().where(entries.c.story_id == query.story_id)
    else:
        if query.feed_id is not None:
            removed = False  # a source's own list shows all its entries
        elif removed is None:
            removed = has_removed_sources(conn)
        statement = _latest_query(query.feed_id, query.tag, removed=removed)
    if query.since is not None:
        statement = statement.where(entries.c.published_at >= query.since)
    newest_first = (entries.c.published_at.desc(), entries.c.id.desc())
    if query.before is not None or query.after is not None:
        cursor = _cursor(conn, query.before if query.before is not None else query.after or 0)
        if cursor is None:
            return []
        published, entry_id = cursor
        if query.before is not None:
            statement = statement.where(
                or_(
                    entries.c.published_at < published,
                    and_(entries.c.published_at == published, entries.c.id < entry_id),
                )
            ).order_by(*newest_first)
        else:
            statement = statement.where(
                or_(
                    entries.c.published_at > published,
                    and_(entries.c.published_at == published, entries.c.id > entry_id),
                )
            ).order_by(entries.c.published_at, entries.c.id)
    else:
        statement = statement.order_by(*newest_first)
    if not query.content:
        statement = _without_content(statement)
    rows = conn.execute(statement.limit(query.limit)).all()
    return rows[::-1] if query.after is not None else rows


def get_stories(
    conn: Connection,
    limit: int,
    before: int | None = None,
    after: int | None = None,
    min_sources: int = COVERED_SOURCES,
    tag: str | None = None,
    since: datetime | None = None,
) -> list[Story]:
    """A page of stories with at least `min_sources` sources, newest-updated first."""
    statement = select(stories).where(stories.c.source_count >= min_sources)
    if since is not None:
        statement = statement.where(stories.c.last_updated_at >= since)
    if tag is not None:
        statement = statement.where(_has_tag(tag))
    newest_first = (stories.c.last_updated_at.desc(), stories.c.id.desc())
    anchor_id = before if before is not None else after
    if anchor_id is not None:
        anchor = conn.execute(
            select(stories.c.last_updated_at, stories.c.id).where(stories.c.id == anchor_id)
        ).first()
        if anchor is None:
            return []
        at, story_id = anchor
        if before is not None:
            older = or_(
                stories.c.last_updated_at < at,
                and_(stories.c.last_updated_at == at, stories.c.id < story_id),
            )
            statement = statement.where(older).order_by(*newest_first)
        else:
            newer = or_(
                stories.c.last_updated_at > at,
                and_(stories.c.last_updated_at == at, stories.c.id > story_id),
            )
            statement = statement.where(newer).order_by(stories.c.last_updated_at, stories.c.id)
    else:
        statement = statement.order_by(*newest_first)
    rows = conn.execute(statement.limit(limit)).all()
    if after is not None:
        rows = rows[::-1]
    names = _sources(conn, [row.id for row in rows])
    return [_to_story(row, names.get(row.id, ())) for row in rows]


def get_top_stories(
    conn: Connection,
    limit: int,
    min_sources: int = COVERED_SOURCES,
    tag: str | None = None,
    since: datetime | None = None,
) -> list[Story]:
    """The most covered stories (most sources, then newest)."""
    rows = _top_story_rows(conn, limit, min_sources, tag, since, ())
    names = _sources(conn, [row.id for row in rows])
    return [_to_story(row, names.get(row.id, ())) for row in rows]


def _top_story_rows(
    conn: Connection,
    limit: int,
    min_sources: int,
    tag: str | None,
    since: datetime | None,
    exclude: Sequence[int],
) -> Sequence[Row[Any]]:
    statement = select(stories).where(stories.c.source_count >= min_sources)
    if since is not None:
        statement = statement.where(stories.c.last_updated_at >= since)
    if tag is not None:
        statement = statement.where(_has_tag(tag))
    if exclude:
        statement = statement.where(stories.c.id.not_in(list(exclude)))
    statement = statement.order_by(
        stories.c.source_count.desc(), stories.c.last_updated_at.desc(), stories.c.id.desc()
    ).limit(limit)
    return conn.execute(statement).all()


def _has_tag(tag: str) -> Any:
    """The story has an entry from a feed tagged `tag`. Correlated, so the planner walks
    stories in the wanted order (ix_stories_top) and probes each one's entries by the
    story index, instead of listing the story of every entry of the tag's feeds.
    """
    return (
        select(entries.c.id)
        .join(feed_tags, feed_tags.c.feed_id == entries.c.feed_id)
        .where(entries.c.story_id == stories.c.id, feed_tags.c.tag == tag)
        .exists()
    )


def _listed_members() -> Any:
    """Entries with their feed's titles, copies included, of the sources the config
    lists: what a story shows of its coverage (a removed source leaves its stories)."""
    return _latest_query(None, None, originals_only=False).where(feeds.c.in_config.is_(True))


def get_story_coverage(conn: Connection, story_ids: Sequence[int]) -> dict[int, list[Entry]]:
    """Every entry of each story (duplicates included) from a source the config lists,
    oldest first."""
    return _by_story(story_ids, entries_from_rows(conn, _coverage_rows(conn, story_ids)))


def _coverage_rows(conn: Connection, story_ids: Sequence[int]) -> Sequence[Row[Any]]:
    if not story_ids:
        return []
    statement = (
        _listed_members()
        .where(entries.c.story_id.in_(list(story_ids)))
        .order_by(entries.c.published_at, entries.c.id)
    )
    return conn.execute(statement).all()


def get_story_outlets(
    conn: Connection, stories: Sequence[tuple[int, int | None]], outlets: int
) -> dict[int, list[Entry]]:
    """Per story (its id and headline entry id), what `_outlet_rows` reads, oldest first."""
    ids = [story_id for story_id, _ in stories]
    return _by_story(ids, entries_from_rows(conn, _outlet_rows(conn, stories, outlets)))


def _outlet_rows(
    conn: Connection, stories: Sequence[tuple[int, int | None]], outlets: int
) -> Sequence[Row[Any]]:
    """Of each story (its id and headline entry id), the headline entry and the first
    own report (`own_report`) of each of its first `outlets` + 1 feeds (oldest first,
    without contents): what a story block on `/` and an item of the stories feed show.
    Reading every entry instead took 11,000 rows and most of `/`'s 1.8 s with 3,000
    feeds, whose big stories hold hundreds of entries each.
    """
    if not stories:
        return []
    by_feed = (
        select(
            entries.c.id,
            entries.c.story_id,
            entries.c.published_at,
            func.row_number()
            .over(
                partition_by=(entries.c.story_id, entries.c.feed_id),
                order_by=(entries.c.published_at, entries.c.id),
            )
            .label("in_feed"),
        )
        .where(entries.c.story_id.in_([story_id for story_id, _ in stories]), own_report())
        .subquery()
    )
    firsts = (
        select(
            by_feed.c.id,
            func.row_number()
            .over(
                partition_by=by_feed.c.story_id,
                order_by=(by_feed.c.published_at, by_feed.c.id),
            )
            .label("outlet"),
        )
        .where(by_feed.c.in_feed == 1)
        .subquery()
    )
    firsts_shown = select(firsts.c.id).where(firsts.c.outlet <= outlets + 1)
    # the ids first, then their rows: with one statement (the ids as a subquery OR the
    # headline ids) PostgreSQL scanned every entry (0.49 s at 173,000 entries), and with
    # a UNION instead SQLite did (0.85 s); two short statements use the indexes on both
    shown = set(conn.execute(firsts_shown).scalars())
    shown.update(entry_id for _, entry_id in stories if entry_id is not None)
    statement = (
        _listed_members()
        .where(entries.c.id.in_(sorted(shown)))
        .order_by(entries.c.published_at, entries.c.id)
    )
    return conn.execute(_without_content(statement)).all()


def _by_story(story_ids: Sequence[int], found: Sequence[Entry]) -> dict[int, list[Entry]]:
    coverage: dict[int, list[Entry]] = {story_id: [] for story_id in story_ids}
    for entry in found:
        if entry.story_id is not None:
            coverage[entry.story_id].append(entry)
    return coverage


@dataclass(frozen=True)
class DigestQuery:
    """What the digest on `/` shows: top stories, a section per tag (its top stories not
    shown above and its newest entries), and a page of the newest entries.
    """

    latest: EntryQuery  # the page of newest entries (its cursor: no stories, no sections)
    tag: str | None  # only this tag: no sections
    stories_since: datetime
    top_stories: int
    section_stories: int
    section_entries: int
    outlets: int  # a story's other outlets listed under its lead (see _outlet_rows)


@dataclass(frozen=True)
class DigestRows:
    tags: list[str]  # every tag, alphabetically
    top: list[Story]
    sections: dict[str, list[Story]]  # tag -> its top stories, none of them shown before
    section_entries: dict[str, list[Entry]]  # tag -> its newest entries
    coverage: dict[int, list[Entry]]  # story id -> its entries, oldest first
    latest: list[Entry]


def get_digest(conn: Connection, query: DigestQuery) -> DigestRows:
    """Everything the digest shows, read in one transaction (one snapshot of the store),
    without entries' full contents; the tags and other sources of all its entries, and
    the source names of all its stories, are each read in one query.
    """
    tags = get_tags(conn)
    removed = has_removed_sources(conn)  # once for the digest's entry lists
    first_page = query.latest.before is None and query.latest.after is None
    top: Sequence[Row[Any]] = []
    sections: dict[str, Sequence[Row[Any]]] = {}
    entry_rows: dict[str, Sequence[Row[Any]]] = {}
    if first_page:
        top = _top_story_rows(
            conn, query.top_stories, COVERED_SOURCES, query.tag, query.stories_since, ()
        )
        shown = {row.id for row in top}
        for name in tags if query.tag is None else []:
            rows = _top_story_rows(
                conn,
                query.section_stories,
                COVERED_SOURCES,
                name,
                query.stories_since,
                sorted(shown),
            )
            shown.update(row.id for row in rows)
            sections[name] = rows
            wanted = EntryQuery(
                query.section_entries, tag=name, since=query.latest.since, content=False
            )
            entry_rows[name] = _entry_rows(conn, wanted, removed)
    story_rows = [*top, *(row for rows in sections.values() for row in rows)]
    story_ids = [row.id for row in story_rows]
    names = _sources(conn, story_ids)
    latest = _entry_rows(conn, replace(query.latest, content=False), removed)
    heads = [(row.id, row.headline_entry_id) for row in story_rows]
    lists = [_outlet_rows(conn, heads, query.outlets), latest, *entry_rows.values()]
    everything = entries_from_rows(conn, [row for rows in lists for row in rows])
    split: list[list[Entry]] = []
    for rows in lists:
        split.append(everything[: len(rows)])
        everything = everything[len(rows) :]
    stories_of = {row.id: _to_story(row, names.get(row.id, ())) for row in story_rows}
    return DigestRows(
        tags=tags,
        top=[stories_of[row.id] for row in top],
        sections={name: [stories_of[row.id] for row in rows] for name, rows in sections.items()},
        section_entries=dict(zip(entry_rows, split[2:], strict=True)),
        coverage=_by_story(story_ids, split[0]),
        latest=split[1],
    )


def get_tags(conn: Connection) -> list[str]:
    """Every tag a feed listed in the config carries, alphabetically."""
    statement = (
        select(feed_tags.c.tag)
        .join(feeds, feeds.c.id == feed_tags.c.feed_id)
        .where(feeds.c.in_config.is_(True))
        .distinct()
        .order_by(feed_tags.c.tag)
    )
    return list(conn.execute(statement).scalars())


def get_group_reasons(conn: Connection, story_id: int) -> dict[int, GroupReason]:
    """For each entry of a story: its similarity score and the terms it shared."""
    statement = select(entries.c.id, entries.c.group_score, entries.c.group_terms).where(
        entries.c.story_id == story_id
    )
    return {
        row.id: GroupReason(row.group_score, tuple(json.loads(row.group_terms or "[]")))
        for row in conn.execute(statement)
    }


def get_daily_counts(conn: Connection, since: datetime) -> dict[int, dict[date, int]]:
    """Entries per feed per day (by published date, UTC) since `since`."""
    day = func.date(entries.c.published_at)
    statement = (
        select(entries.c.feed_id, day.label("day"), func.count())
        .where(entries.c.published_at >= since)
        .group_by(entries.c.feed_id, day)
    )
    found: dict[int, dict[date, int]] = {}
    for feed_id, value, count in conn.execute(statement):
        when = value if isinstance(value, date) else date.fromisoformat(str(value))
        found.setdefault(feed_id, {})[when] = count
    return found


def count_covered_stories(conn: Connection) -> int:
    """Stories of two or more sources: those pages show as coverage (the others are
    single entries: old news, or an entry no other has matched yet)."""
    statement = select(func.count()).where(stories.c.source_count >= COVERED_SOURCES)
    return int(conn.execute(statement).scalar_one())


def get_totals(conn: Connection) -> dict[str, int]:
    """Totals for /healthz and /metrics: feeds, broken feeds, entries, entries the
    grouping has yet to read (a count that keeps rising means no worker is grouping),
    stories."""
    count = select(func.count())
    return {
        "feeds": conn.execute(count.select_from(feeds)).scalar_one(),
        "broken_feeds": conn.execute(count.where(feed_rows.broken())).scalar_one(),
        "entries": count_entries(conn),
        "ungrouped_entries": conn.execute(count.where(entries.c.story_id.is_(None))).scalar_one(),
        "stories": conn.execute(count.select_from(stories)).scalar_one(),
        "covered_stories": count_covered_stories(conn),
    }


def get_metrics(conn: Connection) -> dict[str, Any]:
    """`get_totals` and more for /metrics: feeds by status and disabled, the newest fetch."""
    by_status = {
        (status or "new"): count
        for status, count in conn.execute(
            select(feeds.c.last_status, func.count()).group_by(feeds.c.last_status)
        )
    }
    return {
        **get_totals(conn),
        "feeds_by_status": by_status,
        "disabled_feeds": conn.execute(
            select(func.count()).where(
                feeds.c.disabled_reason.is_not(None), feeds.c.in_config.is_(True)
            )
        ).scalar_one(),
        "newest_fetch": conn.execute(select(func.max(feeds.c.last_fetch_at))).scalar_one(),
    }
