"""The digest on `/`: top stories, then a section per tag ("More from world": the tag's
top stories and newest entries), then the newest single entries.

In the newest entries, a run of one source's entries (a feed that publishes a batch at
once, or a newly added feed whose entries carry no date and so all take the time they
were first seen) shows its first `RUN_SHOWN` and links to the rest on the source's page,
so that one feed cannot fill the page.

Each headline appears once on the page: an entry shown inside a story (or with the same
title as one already shown) is left out of the later blocks, and the store already
leaves out entries that repeat another feed's article (`duplicate_of`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aggregator.models import Entry, Story, own_reports
from aggregator.render import STORY_OUTLETS
from aggregator.store import DigestQuery, EntryQuery, Store
from aggregator.web.common import Page, Paging, paginate

TOP_STORIES = 8
SECTION_STORIES = 3
SECTION_ENTRIES = 5
RUN_SHOWN = 3  # entries of one source shown in a row in the newest entries; more fold
FOLD_READ = 4  # pages' worth of rows read for the newest entries, to fill folded pages


@dataclass(frozen=True)
class StoryBlock:
    """A story with its lead entry, one entry from each of its first other outlets,
    and how many more outlets cover it."""

    story: Story
    lead: Entry | None
    others: tuple[Entry, ...]
    more: int = 0


@dataclass(frozen=True)
class Section:
    tag: str
    stories: list[StoryBlock]
    entries: list[Entry]


@dataclass(frozen=True)
class Run:
    """Consecutive newest entries of one source: those shown, and how many more of
    them the page leaves to the source's own page (after the last one shown)."""

    shown: list[Entry]
    hidden: int = 0

    @property
    def last(self) -> Entry:
        return self.shown[-1]


@dataclass(frozen=True)
class Digest:
    top: list[StoryBlock]
    sections: list[Section]
    latest: Page[Entry]
    latest_runs: list[Run]  # the page's newest entries as shown, runs folded


@dataclass
class Seen:
    """What the page already shows. An entry whose title another shown entry or story
    has is left out (the same headline from two outlets); untitled entries (micro-posts)
    are told apart by their ids only."""

    entries: set[int] = field(default_factory=set)
    stories: set[int] = field(default_factory=set)
    titles: set[str] = field(default_factory=set)

    def fresh(self, entry: Entry) -> bool:
        return (
            entry.id not in self.entries
            and (entry.story_id is None or entry.story_id not in self.stories)
            and _title_key(entry.title) not in self.titles
        )

    def add(self, entry: Entry) -> None:
        self.entries.add(entry.id)
        self.add_title(entry.title)

    def add_title(self, title: str) -> None:
        if key := _title_key(title):
            self.titles.add(key)

    def take(self, entries: Iterable[Entry], limit: int | None = None) -> list[Entry]:
        taken: list[Entry] = []
        for entry in entries:
            if limit is not None and len(taken) >= limit:
                break
            if self.fresh(entry):
                self.add(entry)
                taken.append(entry)
        return taken


def _title_key(title: str) -> str:
    return " ".join(title.casefold().split())


def build_digest(
    store: Store,
    paging: Paging,
    tag: str | None,
    since: datetime | None,
    stories_since: datetime,
) -> tuple[Digest, list[str]]:
    """The digest and every tag (for the filter); on pages after the first, only the
    newest entries. The store reads it all in one transaction.
    """
    query = DigestQuery(
        latest=EntryQuery(_latest_read(paging), paging.before, paging.after, tag=tag, since=since),
        tag=tag,
        stories_since=stories_since,
        top_stories=TOP_STORIES,
        section_stories=SECTION_STORIES,
        section_entries=SECTION_ENTRIES * 4,  # some may be shown above already
        outlets=STORY_OUTLETS,
    )
    rows = store.get_digest(query)
    seen = Seen()
    seen.stories.update(story.id for story in rows.top)
    seen.stories.update(story.id for stories in rows.sections.values() for story in stories)
    top = [_block(story, rows.coverage.get(story.id, []), seen) for story in rows.top]
    sections: list[Section] = []
    for name, stories in rows.sections.items():
        blocks = [_block(story, rows.coverage.get(story.id, []), seen) for story in stories]
        entries = seen.take(rows.section_entries.get(name, []), SECTION_ENTRIES)
        if blocks or entries:
            sections.append(Section(name, blocks, entries))
    latest, runs = _latest(rows.latest, paging, seen)
    return Digest(top, sections, latest, runs), rows.tags


def _latest_read(paging: Paging) -> int:
    """Rows to read for the newest entries: `FOLD_READ` pages' worth going older (runs
    fold, see `_latest`), one page and its sentinel going newer."""
    if paging.after is not None:
        return paging.limit + 1
    return paging.limit * FOLD_READ + 1


def _latest(rows: Sequence[Entry], paging: Paging, seen: Seen) -> tuple[Page[Entry], list[Run]]:
    """The page of newest entries not shown above, and its runs as shown. Going older,
    rows are taken until the page's lines (entries shown, and one line per folded run)
    fill ``paging.limit``, so a folded run does not leave the page short; going newer,
    one page of rows."""
    # rows of one source (a tag of one feed, or a flood longer than the rows read) are
    # left whole: folding would hide them behind a link with nothing else to show
    fold_after = RUN_SHOWN if len({entry.feed_id for entry in rows}) > 1 else len(rows)
    if paging.after is not None:
        page = paginate(rows, paging, lambda entry: entry.id)
        newer_items = seen.take(page.items)
        return Page(newer_items, page.older, page.newer), runs_of(newer_items, fold_after)
    available = rows[: len(rows) - 1] if len(rows) == _latest_read(paging) else rows
    taken: list[Entry] = []
    lines = run = consumed = 0
    for entry in available:
        if seen.fresh(entry):
            run = run + 1 if taken and taken[-1].feed_id == entry.feed_id else 1
            grows = run <= fold_after + 1  # a fold line takes the place of the rest
            if lines + grows > paging.limit:
                break
            lines += grows
            seen.add(entry)
            taken.append(entry)
        consumed += 1
    more = consumed < len(rows)
    older = available[consumed - 1].id if more and consumed else None
    newer = available[0].id if paging.before is not None and available else None
    return Page(taken, older, newer), runs_of(taken, fold_after)


def runs_of(entries: Sequence[Entry], shown: int = RUN_SHOWN) -> list[Run]:
    """`entries` as runs of one source each, a run longer than ``shown`` + 1 cut to its
    first ``shown`` (folding a single entry would save nothing)."""
    runs: list[Run] = []
    start = 0
    for end in range(1, len(entries) + 1):
        if end < len(entries) and entries[end].feed_id == entries[start].feed_id:
            continue
        run = list(entries[start:end])
        if len(run) > shown + 1:
            runs.append(Run(run[:shown], len(run) - shown))
        else:
            runs.append(Run(run))
        start = end
    return runs


def _block(story: Story, coverage: Sequence[Entry], seen: Seen) -> StoryBlock:
    """The story's lead (its headline entry) and the first entry of its first
    `STORY_OUTLETS` other outlets (`coverage`: what `pages.get_digest` read of it), an
    article carried by several feeds once."""
    for entry in coverage:
        seen.add(entry)
    coverage = own_reports(coverage)
    lead = next((e for e in coverage if e.id == story.headline_entry_id), None)
    if lead is None and coverage:
        lead = coverage[0]
    outlets = {lead.feed_id} if lead else set()
    others = []
    for entry in coverage:
        if entry.feed_id not in outlets:
            outlets.add(entry.feed_id)
            others.append(entry)
    seen.add_title(story.headline)
    listed = others[:STORY_OUTLETS]
    more = max(0, story.source_count - (1 if lead else 0) - len(listed))
    return StoryBlock(story, lead, tuple(listed), more)
