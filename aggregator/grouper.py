"""Runs story grouping over the store: the worker's grouping step and `regroup`.

`group.StoryIndex` decides (pure, in memory); this module feeds it the entries the
store has not grouped yet and saves what it decided. One worker groups at a time: the
step holds the store's named lease "grouper". A worker that takes the lease over from
another rebuilds its index from the store's recent grouped entries first (warm start),
so its decisions continue the other's; a worker that finds the lease held by another
lets its own index go (it is stale from then on).

    take the "grouper" lease (or skip: another worker is grouping)
    if another worker grouped since we last did, or we never did: warm start
        (replay the recent assignments, queue again the second looks still waiting)
    expire quiet stories (by the clock, then by the stream time of each batch)
    for each ungrouped entry, oldest first: index.add → assignment
        (an entry already older than the window when first seen — the back
        catalogue of a newly added feed — is a story of its own, outside the index)
    save assignments, recounts and the labels of the stories founded, in one transaction
    when the run ends: save the labels of the other stories it touched (each once)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from aggregator.config import Settings
from aggregator.group import (
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW,
    Assignment,
    GroupItem,
    StoryIndex,
    embeds_language,
    grouping_language,
)
from aggregator.models import EntryText, StoryAssignment, StoryLabel, is_backlog
from aggregator.store import Store

log = logging.getLogger(__name__)

BATCH = 2000  # ungrouped entries read and saved per transaction
LABEL_BATCH = 2000  # story labels saved per transaction when a run ends
LEASE = timedelta(minutes=5)
WARM_START_LIMIT = 200_000  # most entries replayed into a fresh index


def item_of(entry: EntryText) -> GroupItem:
    """What grouping needs to know of a stored entry."""
    return GroupItem(
        entry_id=entry.id,
        title=entry.title,
        summary=entry.summary,
        link=entry.link,
        source=str(entry.feed_id),
        published_at=entry.first_seen_at,
        language=entry.language,
    )


def _stored(decided: Assignment) -> StoryAssignment:
    """An index decision (or a second look's move) as the store records it."""
    return StoryAssignment(
        entry_id=decided.entry_id,
        story_id=decided.story_id,
        score=decided.score,
        shared_terms=tuple(decided.shared_terms),
        duplicate_of=decided.duplicate_of,
        language=decided.language,
    )


def _load_embedder() -> Callable[[str], Sequence[float]]:
    from aggregator.embed import load_embedder  # torch only when the config asks for it

    return load_embedder()


class Grouper:
    """Groups a store's new entries into stories, one worker at a time."""

    def __init__(
        self,
        store: Store,
        name: str,
        window: timedelta | None = None,
        threshold: float | None = None,
        min_cosine: float | None = None,
        embedder: Callable[[str], Sequence[float]] | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.window = window
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        # None: the index's default (MIN_COSINE); see StoryIndex for the embedding stage.
        self.min_cosine = min_cosine
        # Optional semantic stage (aggregator.embed.load_embedder()); None keeps
        # grouping pure Python. A callable with prime(titles) embeds each batch at once.
        self.embedder = embedder
        self._index: StoryIndex | None = None
        # Active stories changed in this run whose saved label predates the change. A
        # story is labelled when it is founded (so that no reader sees one without a
        # headline) and then once when the run ends, not after every batch that
        # touched it: a first poll's big stories were relabelled in each of its ~30
        # batches (13,146 labels for 3,348 stories, a tenth of its grouping time).
        self._unlabelled: set[int] = set()
        # Of the entries the last run grouped, those kept out of stories as old news
        # (`is_backlog`): each a single entry, never coverage (told apart by `poll`).
        self.kept_apart = 0

    @classmethod
    def from_settings(cls, store: Store, name: str, settings: Settings) -> Grouper:
        """A grouper as the config asks; with `group_embeddings` the optional semantic
        stage is loaded (`group_min_cosine` then applies to the entries it does not
        embed; the others take EMBED_MIN_COSINE).
        Loading the config already refused `group_embeddings` without its extra."""
        embedder = _load_embedder() if settings.group_embeddings else None
        return cls(
            store,
            name,
            window=timedelta(seconds=settings.group_window),
            threshold=settings.group_threshold,
            min_cosine=settings.group_min_cosine,
            embedder=embedder,
        )

    @property
    def index(self) -> StoryIndex | None:
        """The index kept between runs (None before the first run); read-only use."""
        return self._index

    def _new_index(self) -> StoryIndex:
        return StoryIndex(
            window=self.index_window,
            threshold=self.threshold,
            min_cosine=self.min_cosine,
            embedder=self.embedder,
        )

    def _prime(self, entries: Iterable[EntryText]) -> None:
        """Embed the titles of a batch at once, of the entries the stage embeds (in its
        model's language: `group.embeds_language`); the model is the costly part."""
        prime = getattr(self.embedder, "prime", None)
        if prime is not None:
            prime([e.title for e in entries if embeds_language(grouping_language(item_of(e)))])

    @property
    def index_window(self) -> timedelta:
        """The grouping window in force (`window`, or the index's default)."""
        return self.window or DEFAULT_WINDOW

    def run(
        self,
        now: datetime | None = None,
        progress: Callable[[int], None] | None = None,
        stopping: Callable[[], bool] | None = None,
    ) -> int | None:
        """Group every ungrouped entry; once ``stopping`` says True, stop after the batch
        in hand (the rest stays ungrouped for the next run, its labels saved).

        Returns:
            How many entries were grouped, or None when another worker holds the lease.
        """
        now = now or datetime.now(UTC)
        acquired, previous = self.store.acquire_lock("grouper", self.name, now, LEASE)
        if not acquired:
            # another worker groups now: this index is stale (should the lease come back,
            # a warm start rebuilds it), so it is not kept: hundreds of MB in a worker
            # that no longer groups
            self._index = None
            return None
        if self._index is None or previous not in (None, self.name):
            self._index = self._warm_start(now)
            # The labels in the store may be stale: the worker that saved them may have
            # died or lost the lease before its run ended and labelled what it changed.
            if not self._save_labels(self._index, self._index.active_story_ids):
                return self._lost(0)
        return self._group_pending(self._index, progress, stopping)

    def _group_pending(
        self,
        index: StoryIndex,
        progress: Callable[[int], None] | None,
        stopping: Callable[[], bool] | None = None,
    ) -> int:
        index.expire(datetime.now(UTC))
        grouped = self.kept_apart = 0
        while not (stopping and stopping()) and (batch := self.store.get_ungrouped(BATCH)):
            if not self._group_batch(index, batch, last=len(batch) < BATCH):
                return self._lost(grouped)
            grouped += len(batch)
            if progress:
                progress(len(batch))
        if not self._save_labels(index, self._unlabelled):
            return self._lost(grouped)
        return grouped

    def release(self) -> None:
        """Give up grouping (the worker stops): another worker's next run takes over at
        once instead of after the lease, and warm-starts its own index."""
        self.store.release_lock("grouper", self.name)
        self._index = None

    def _lost(self, grouped: int) -> int:
        """Forget the index once a save found the lease taken: another worker groups
        now (its warm start relabels the stories whose labels this run left unsaved)."""
        log.warning("group: lost the grouper lease; another process groups now")
        self._index = None
        self._unlabelled = set()
        return grouped

    def regroup(self, progress: Callable[[int], None] | None = None) -> int:
        """Forget every story and group all entries again from scratch.

        Takes the grouper lease from whichever worker holds it (that worker's unsaved
        decisions are then refused by the fence) and gives it back at the end, so the
        worker warm-starts from the new stories.
        """
        self.store.clear_stories(lock=("grouper", self.name, datetime.now(UTC) + LEASE))
        self._index = self._new_index()
        self._unlabelled = set()
        try:
            return self._group_pending(self._index, progress)
        finally:
            self.store.release_lock("grouper", self.name)

    def _warm_start(self, now: datetime) -> StoryIndex:
        index = self._new_index()
        since = now - index.window
        recent = self.store.get_grouped_since(since, WARM_START_LIMIT)
        recent = [entry for entry in recent if not is_backlog(entry, index.window)]
        self._prime(recent)
        for entry in recent:
            index.add(item_of(entry), story_id=entry.story_id)
        looks = _resume_looks(index, recent)
        log.info("group: warm start from %d recent entries (%d second looks)", len(recent), looks)
        self._unlabelled = set()
        return index

    def _group_batch(self, index: StoryIndex, batch: Sequence[EntryText], last: bool) -> bool:
        """Group and save one batch; `last`: no batch follows (so the run's stories
        are labelled with it). Returns False when the lease was lost."""
        assignments = []
        touched: set[int] = set()
        labels: dict[int, StoryLabel] = {}
        backlog = [entry for entry in batch if is_backlog(entry, index.window)]
        current = [entry for entry in batch if not is_backlog(entry, index.window)]
        if current:
            # Stream time: a long run of old entries (a regroup, a worker back after
            # days) leaves the stories it passes, so the index follows the window, not
            # the archive; a story this run changed is labelled before it leaves.
            now = current[0].first_seen_at
            labels = self._take_labels(index, _leaving(index, self._unlabelled, now))
            index.expire(now)
        self._prime(current)
        for entry in current:
            decided = index.add(item_of(entry))
            assignments.append(_stored(decided))
            touched.add(decided.story_id)
        # Entries the second look moved to another story (decided in this batch or
        # an earlier one): saved as new assignments, after the batch's own; the
        # stories they left are relabelled and recounted.
        moves = index.drain_moves()
        for move in moves:
            assignments.append(_stored(move.assignment))  # a move is never a duplicate
            touched |= {move.assignment.story_id, move.left}
        # An entry moved in the batch that added it: only its last assignment counts.
        assignments = list({a.entry_id: a for a in assignments}.values())
        # Merges made while grouping this batch (an older story absorbed a younger
        # one); the store re-points the absorbed stories' entries, in order.
        merges = index.drain_merges()
        live = {index.resolve(story_id) for story_id in touched}
        live |= {survivor for survivor, _ in merges}
        live = {index.resolve(story_id) for story_id in live}
        if moves:  # a move drained late (no batch followed it) can name an expired story
            live &= set(index.active_story_ids)
        self._unlabelled |= live
        if last and len(self._unlabelled) <= LABEL_BATCH:  # else `_save_labels` does
            labels |= self._take_labels(index, self._unlabelled)
        else:
            founded = {a.story_id for a in assignments if a.story_id == a.entry_id}
            labels |= self._take_labels(index, live & founded)
        singles = [_single(entry) for entry in backlog]
        self.kept_apart += len(singles)
        assignments += [assignment for assignment, _ in singles]
        saved = [*labels.values(), *(label for _, label in singles)]
        return self.store.save_assignments(assignments, saved, fence=self._fence(), merges=merges)

    def _fence(self) -> tuple[str, str, datetime]:
        return ("grouper", self.name, datetime.now(UTC) + LEASE)

    def _take_labels(self, index: StoryIndex, story_ids: Iterable[int]) -> dict[int, StoryLabel]:
        """Label the stories (by the ids they now go by; those no longer active are
        skipped) and strike them from the stories waiting for a label."""
        wanted = list(story_ids)
        self._unlabelled.difference_update(wanted)
        live = {index.resolve(story_id) for story_id in wanted}
        self._unlabelled -= live
        ids = sorted(s for s in live if index.last_updated(s) is not None)
        return {story_id: self._label(index, story_id) for story_id in ids}

    def _save_labels(self, index: StoryIndex, story_ids: Iterable[int]) -> bool:
        """Label and save the stories, `LABEL_BATCH` a transaction; False when the
        lease was lost."""
        wanted = sorted(story_ids)
        for start in range(0, len(wanted), LABEL_BATCH):
            labels = self._take_labels(index, wanted[start : start + LABEL_BATCH])
            if labels and not self.store.save_assignments(
                [], list(labels.values()), fence=self._fence()
            ):
                return False
        return True

    @staticmethod
    def _label(index: StoryIndex, story_id: int) -> StoryLabel:
        label = index.label(story_id)
        return StoryLabel(
            story_id=story_id,
            headline=label.headline,
            headline_entry_id=label.headline_entry_id,
            terms=tuple(label.terms),
            language=label.language,
        )


def _leaving(index: StoryIndex, story_ids: Iterable[int], now: datetime) -> list[int]:
    """The stories that `index.expire(now)` would drop (quiet for longer than the
    window)."""
    cutoff = now - index.window
    return [s for s in story_ids if (last := index.last_updated(s)) and last < cutoff]


def _resume_looks(index: StoryIndex, replayed: Sequence[EntryText]) -> int:
    """Queue again the second looks that may still have been waiting when the index
    was last saved; returns how many.

    The store does not record which looks were made. A look comes `second_look` after
    an entry arrived, at the first grouping run from then on, so an entry that arrived
    later than `second_look` before the newest replayed one cannot have had it yet
    (the newest arrived before the last run). Entries that arrived between that bound
    and the last run's time minus `second_look` may have had their look already; they
    get another, which at worst moves an entry the stories have since come to fit
    better. None is lost: each entry gets its look at least once.
    """
    if index.second_look is None or not replayed:
        return 0
    bound = max(entry.first_seen_at for entry in replayed) - index.second_look
    waiting = [e for e in replayed if e.first_seen_at > bound and e.group_score is not None]
    return sum(index.resume_look(item_of(e), e.group_score or 0.0) for e in waiting)


def _single(entry: EntryText) -> tuple[StoryAssignment, StoryLabel]:
    """The assignment and label of a story of one entry kept out of the index
    (`is_backlog`); an entry that declares no language gets the one its text is written
    in, as an entry grouped in the index does."""
    detected = grouping_language(item_of(entry)) if entry.language is None else None
    assignment = StoryAssignment(entry.id, entry.id, 0.0, (), language=detected)
    label = StoryLabel(
        story_id=entry.id,
        headline=entry.title,
        headline_entry_id=entry.id,
        terms=(),
        language=entry.language or detected,
    )
    return assignment, label
