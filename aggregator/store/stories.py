"""Story rows: saving grouping decisions and reading stories with their coverage."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Executable,
    Row,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from aggregator.models import Entry, Story, StoryAssignment, StoryLabel
from aggregator.store.entries import _latest_query, entries_from_rows, stories_of
from aggregator.store.schema import entries, feeds, stories


def save_assignments(
    conn: Connection,
    assignments: Sequence[StoryAssignment],
    labels: Sequence[StoryLabel],
    merges: Sequence[tuple[int, int]] = (),
) -> None:
    """Record each entry's story and why it joined, apply story merges
    (``(survivor, absorbed)`` pairs, in order, after the assignments), then refresh
    the touched stories' labels and counts from their entries.
    """
    left: list[int] = []  # the stories the entries were in: a move leaves one
    if assignments:
        left = stories_of(conn, entries.c.id.in_([a.entry_id for a in assignments]))
        conn.execute(
            update(entries)
            .where(entries.c.id == bindparam("entry_id"))
            .values(
                story_id=bindparam("story_id"),
                group_score=bindparam("score"),
                group_terms=bindparam("terms"),
            ),
            [
                {
                    "entry_id": a.entry_id,
                    "story_id": a.story_id,
                    "score": a.score,
                    "terms": json.dumps(list(a.shared_terms)),
                }
                for a in assignments
            ],
        )
        duplicates = [a for a in assignments if a.duplicate_of is not None]
        if duplicates:
            conn.execute(
                update(entries)
                .where(entries.c.id == bindparam("entry_id"), entries.c.duplicate_of.is_(None))
                .values(duplicate_of=bindparam("original")),
                [{"entry_id": a.entry_id, "original": a.duplicate_of} for a in duplicates],
            )
        detected = [a for a in assignments if a.language is not None]
        if detected:
            conn.execute(
                update(entries)
                .where(entries.c.id == bindparam("entry_id"))
                .values(detected_language=bindparam("detected")),
                [{"entry_id": a.entry_id, "detected": a.language} for a in detected],
            )
    for survivor, absorbed in merges:
        merge_stories(conn, survivor, absorbed)
    gone = {absorbed for _, absorbed in merges}
    touched = {a.story_id for a in assignments} | {label.story_id for label in labels}
    touched |= {survivor for survivor, _ in merges} | set(left)
    _refresh(conn, touched - gone, {label.story_id: label for label in labels})


def merge_stories(conn: Connection, survivor: int, absorbed: int) -> None:
    """Move every entry of story ``absorbed`` to ``survivor`` and delete the absorbed
    story's row (its id lives on only as an alias inside the grouping index). The
    survivor's counts are refreshed by the caller (``save_assignments`` does).
    """
    if survivor == absorbed:
        return
    conn.execute(update(entries).where(entries.c.story_id == absorbed).values(story_id=survivor))
    conn.execute(delete(stories).where(stories.c.id == absorbed))


def own_report() -> ColumnElement[bool]:
    """Whether an entry is a report of its own in its story: its feed is listed in the
    config (a removed source leaves the stories it reported in, as it leaves the merged
    outputs), and it is not a copy, at the same link, of a listed feed's entry of the
    story (`duplicate_of`: one page carried by a site's two feeds, or by a feed that
    gathers others'). A story counts and lists such a page once, under the feed that
    brought it first. Wire copy that outlets publish at addresses of their own stays one
    report per outlet (see `models.own_reports`)."""
    original, original_feed, own_feed = entries.alias("original"), feeds.alias(), feeds.alias()
    repeats = exists().where(
        original.c.id == entries.c.duplicate_of,
        original.c.story_id == entries.c.story_id,
        original.c.link_hash == entries.c.link_hash,
        original_feed.c.id == original.c.feed_id,
        original_feed.c.in_config.is_(True),
    )
    listed = exists().where(own_feed.c.id == entries.c.feed_id, own_feed.c.in_config.is_(True))
    return and_(listed, or_(entries.c.duplicate_of.is_(None), ~repeats))


def recount_stories_of(conn: Connection, feed_ids: Sequence[int]) -> None:
    """Recount the stories the feeds reported in: they left the config or came back."""
    if not feed_ids:
        return
    story_ids = stories_of(conn, entries.c.feed_id.in_(list(feed_ids)))
    for start in range(0, len(story_ids), RECOUNT_BATCH):
        _refresh(conn, set(story_ids[start : start + RECOUNT_BATCH]), {})


RECOUNT_BATCH = 1000  # story ids per recount statement (SQLite binds each one)


_COUNTS = ("entry_count", "source_count", "first_seen_at", "last_updated_at")
_LABEL = ("headline", "headline_entry_id", "terms", "language")


def _refresh(conn: Connection, story_ids: set[int], labels: dict[int, StoryLabel]) -> None:
    """Recount the stories' entries and sources (the feeds of their own reports, see
    `own_report`) and write their labels: one executemany per kind of write (an update
    with or without a new label, an insert). A story left with no entry (its last one
    moved to another story, or pruned) is deleted.
    """
    if not story_ids:
        return
    sources = func.count(func.distinct(case((own_report(), entries.c.feed_id))))
    stats = conn.execute(
        select(
            entries.c.story_id,
            func.count().label("entry_count"),
            sources.label("source_count"),
            func.min(entries.c.first_seen_at).label("first_seen_at"),
            func.max(entries.c.first_seen_at).label("last_updated_at"),
        )
        .where(entries.c.story_id.in_(story_ids))
        .group_by(entries.c.story_id)
    ).all()
    empty = story_ids - {row.story_id for row in stats}
    if empty:
        conn.execute(delete(stories).where(stories.c.id.in_(sorted(empty))))
    existing = set(conn.scalars(select(stories.c.id).where(stories.c.id.in_(story_ids))))
    writes: dict[tuple[bool, bool], list[dict[str, Any]]] = {}
    for row in stats:
        label = labels.get(row.story_id)
        exists = row.story_id in existing
        values = _story_values(row, label)
        if label is None and not exists:  # a new row needs a label, if only blank
            values.update(headline="", headline_entry_id=None, terms="[]", language=None)
        writes.setdefault((exists, label is not None or not exists), []).append(values)
    for (exists, labelled), rows in writes.items():
        conn.execute(_story_write(exists, labelled), rows)


def _story_write(exists: bool, labelled: bool) -> Executable:
    """The executemany statement that updates (``exists``) or inserts story rows,
    their label columns included when ``labelled``."""
    columns = _COUNTS + (_LABEL if labelled else ())
    values: dict[str, Any] = {column: bindparam(column) for column in columns}
    if not exists:
        return insert(stories).values({"id": bindparam("story_id"), **values})
    return update(stories).where(stories.c.id == bindparam("story_id")).values(values)


def _story_values(row: Row[Any], label: StoryLabel | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "story_id": row.story_id,
        "entry_count": row.entry_count,
        "source_count": row.source_count,
        "first_seen_at": row.first_seen_at,
        "last_updated_at": row.last_updated_at,
    }
    if label is not None:
        values.update(
            headline=label.headline,
            headline_entry_id=label.headline_entry_id,
            terms=json.dumps(list(label.terms)),
            language=label.language,
        )
    return values


def refresh_after_prune(conn: Connection, story_ids: Sequence[int]) -> None:
    """Recount stories that lost entries (drop those left with none); a story whose
    headline entry went takes the title of its earliest published entry left as its
    headline, until grouping labels it again."""
    if not story_ids:
        return
    _refresh(conn, set(story_ids), {})
    member = entries.alias("member")
    oldest = (
        select(member.c.id, member.c.title)
        .where(member.c.story_id == stories.c.id)
        .order_by(member.c.published_at, member.c.id)
        .limit(1)
    )
    headline_gone = ~exists().where(
        entries.c.id == stories.c.headline_entry_id, entries.c.story_id == stories.c.id
    )
    conn.execute(
        update(stories)
        .where(stories.c.id.in_(story_ids), headline_gone)
        .values(
            headline_entry_id=oldest.with_only_columns(member.c.id).scalar_subquery(),
            headline=oldest.with_only_columns(member.c.title).scalar_subquery(),
        )
    )


def clear(conn: Connection) -> None:
    """Forget every grouping decision (before regrouping from scratch)."""
    conn.execute(update(entries).values(story_id=None, group_score=None, group_terms=None))
    conn.execute(delete(stories))


def get_story(conn: Connection, story_id: int) -> Story | None:
    row = conn.execute(select(stories).where(stories.c.id == story_id)).first()
    if row is None:
        return None
    return _to_story(row, _sources(conn, [story_id]).get(story_id, ()))


def get_story_entries(conn: Connection, story_id: int) -> list[Entry]:
    """Every entry of a story (duplicates included), oldest first."""
    query = (
        _latest_query(feed_id=None, tag=None, originals_only=False)
        .where(entries.c.story_id == story_id)
        .order_by(entries.c.published_at, entries.c.id)
    )
    return entries_from_rows(conn, conn.execute(query).all())


def _sources(conn: Connection, story_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    if not story_ids:
        return {}
    title = func.coalesce(feeds.c.title, feeds.c.feed_title, feeds.c.url)
    query = (
        select(entries.c.story_id, title)
        .join(feeds, feeds.c.id == entries.c.feed_id)
        .where(entries.c.story_id.in_(story_ids), own_report())
        .order_by(entries.c.first_seen_at, entries.c.id)
    )
    found: dict[int, list[str]] = {}
    for story_id, name in conn.execute(query):
        found.setdefault(story_id, []).append(name)
    return {key: tuple(dict.fromkeys(names)) for key, names in found.items()}


def _to_story(row: Row[Any], sources: tuple[str, ...]) -> Story:
    return Story(
        id=row.id,
        headline=row.headline,
        headline_entry_id=row.headline_entry_id,
        terms=tuple(json.loads(row.terms)),
        language=row.language,
        first_seen_at=row.first_seen_at,
        last_updated_at=row.last_updated_at,
        entry_count=row.entry_count,
        source_count=row.source_count,
        sources=sources,
    )
