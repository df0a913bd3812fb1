"""The digest on `/`: top stories, then a section per tag ("More from world": the tag's
top stories and newest entries), then the newest single entries.

Each headline appears once on the page: an entry shown inside a story (or with the same
title as one already shown) is left out of the later blocks, and the store already
leaves out entries that repeat another feed's article (`duplicate_of`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aggregator.models import Entry, Story
from aggregator.render import STORY_OUTLETS
from aggregator.store import Store
from aggregator.store.pages import DigestQuery, EntryQuery
from aggregator.web.common import Page, Paging, paginate

TOP_STORIES = 8
SECTION_STORIES = 3
SECTION_ENTRIES = 5


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
class Digest:
    top: list[StoryBlock]
    sections: list[Section]
    latest: Page[Entry]


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
        latest=EntryQuery(paging.limit + 1, paging.before, paging.after, tag=tag, since=since),
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
    page = paginate(rows.latest, paging, lambda entry: entry.id)
    latest = Page(seen.take(page.items), page.older, page.newer)
    return Digest(top, sections, latest), rows.tags


def _block(story: Story, coverage: Sequence[Entry], seen: Seen) -> StoryBlock:
    """The story's lead (its headline entry) and the first entry of its first
    `STORY_OUTLETS` other outlets (`coverage`: what `pages.get_digest` read of it)."""
    lead = next((e for e in coverage if e.id == story.headline_entry_id), None)
    if lead is None and coverage:
        lead = coverage[0]
    outlets = {lead.feed_id} if lead else set()
    others = []
    for entry in coverage:
        if entry.feed_id not in outlets:
            outlets.add(entry.feed_id)
            others.append(entry)
    for entry in coverage:
        seen.add(entry)
    seen.add_title(story.headline)
    listed = others[:STORY_OUTLETS]
    more = max(0, story.source_count - (1 if lead else 0) - len(listed))
    return StoryBlock(story, lead, tuple(listed), more)
