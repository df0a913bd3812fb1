"""Incremental story grouping: when ten outlets report the same event, one story.

Entries arrive one at a time. Each entry is turned into a sparse feature vector
(word unigrams, word bigrams and character 4-grams of its title and summary,
weighted by sublinear term frequency and an IDF learned online from the stream)
and compared with the centroids of the *active* stories that share at least one
word term with it (an inverted index over active stories, so the cost does not
grow with the archive). The entry joins the best story whose score reaches the
threshold, or founds a new story whose id is the entry's own id.

Two refinements revisit decisions inside the active window (never the archive): an
older story absorbs a younger one when an entry matches both and their centroids
have converged (story merging), and an entry that joined on weak evidence is decided
again once a day later, against the stories as they have grown (second look); it may
move to another story or to one of its own. Story ids of growing stories never change.

Before any text comparison two exact signals are checked: an entry whose
canonical link, or whose normalised title (from another feed), is already in an
active story joins that story and is marked as a duplicate of the earlier entry.

Languages never share a story: an entry's language is the one it declares or, when it
declares none, the one its text is written in (``aggregator.langid``); an entry whose
language is unknown matches any.

Stories leave the active set once no entry has joined them for ``window``.
Everything is in memory; the caller persists assignments and warm-starts an
index by replaying stored assignments with ``add(item, story_id=...)``.

The constants below were chosen on ``shared/data/stories/dev.tsv`` with
``bench/grouping.py`` (thresholds picked on one half of the stories, checked on
the other); ``docs/grouping.md`` has the numbers.
"""

from __future__ import annotations

import functools
import heapq
import math
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stop_words import LANGUAGE_MAPPING, get_stop_words

from aggregator.langid import identify

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW",
    "Assignment",
    "GroupItem",
    "Move",
    "StoryIndex",
    "StoryLabel",
    "canonical_link",
    "function_words",
    "grouping_language",
    "title_key",
]

# Stories quiet for longer than this leave the active set (DESIGN.md: "say 72 h").
DEFAULT_WINDOW = timedelta(hours=72)

# Minimum score (centroid cosine x size bonus x time factor) to join a story.
# Chosen on half A of dev.tsv's stories (B-cubed F1 averaged over 5 replay
# orders): 0.05-0.09 is a plateau (0.74-0.77), best 0.765 at 0.07 together with
# CHAR_WEIGHT 0.5 and SIZE_BONUS 0.3. See docs/grouping.md.
DEFAULT_THRESHOLD = 0.07

# A story scores 0 for an entry whose plain cosine with its centroid is below
# MIN_COSINE, whatever the size bonus: without it a 200-entry story needed only
# cosine 0.027 (0.07 / 2.59) and absorbed loosely related headlines. 5-order
# mean B-cubed F1 (half A / half B / whole): none 0.765/0.908/0.794; 0.04
# 0.765/0.908/0.795; 0.05 0.763/0.908/0.800; 0.06 0.774/0.915/0.806; 0.07
# 0.769/0.912/0.821; 0.08 0.743/0.900/0.824; 0.10 0.696/0.874/0.802. Chosen on
# half A: 0.06.
MIN_COSINE = 0.06

# Score multiplier 1 + SIZE_BONUS * ln(size): big stories are likelier homes for
# an ambiguous headline. Half A F1, one order: 0.0 -> 0.71, 0.2 -> 0.75; 5-order
# mean at the best threshold: 0.2 -> 0.763, 0.3 -> 0.765.
SIZE_BONUS = 0.3
# Share of that bonus a story gets from an entry sharing only one word with it: one
# generic word ("things", "again", "market") was the commonest wrong join into a big
# story. 5-order mean B-cubed F1 (whole / half A / half B), P of the whole file:
# 1.0 (full bonus) 0.806 / 0.774 / 0.915, P 0.802; 0.5 -> 0.818 / 0.774 / 0.921,
# P 0.822; 0.25 -> 0.818 / 0.772 / 0.920. Half A does not move; chosen for the
# whole file's precision and the held-out half. See docs/grouping.md.
ONE_WORD_BONUS_SHARE = 0.5

# Word features an entry whose summary adds `SUMMARY_WORDS` words or more to its
# headline must share with a story to join it; a headline alone (or with a summary that
# repeats it) needs one. With a summary an entry brings some forty words, and two
# reports of one event share its names, places and what happened; one shared word among
# them is a coincidence: the only story of several feeds that a first poll of the
# 273-feed real-world corpus made joined "Buried alive in the shadow of a Kyushu
# volcano" (Japan Times) to "Interview: Shadow and a world where 5 companies own all
# data" (Nextcloud) on "shadow" alone, score 0.095 over a threshold of 0.07, and the
# digest showed it as its top story. dev.tsv has headlines only: its scores are the
# same. See docs/grouping.md, item 17.
SUMMARY_MIN_SHARED_WORDS = 2
SUMMARY_WORDS = 5

# Weight of the character 4-gram block relative to word features. Char grams
# bridge spelling variants ("MtGox" / "Mt. Gox", "hacker" / "hacked").
# Half A F1: one order 0.0 -> 0.73, 0.3 -> 0.75, 0.5 -> 0.77; 5-order mean at
# the best threshold 0.3 -> 0.758, 0.5 -> 0.765.
CHAR_WEIGHT = 0.5
CHAR_NGRAM = 4

# Summary text counts less than the title (titles are written to identify the
# event; summaries add context and boilerplate). Not measurable on dev.tsv,
# which has titles only.
SUMMARY_WEIGHT = 0.5

# Of a summary, only the first SUMMARY_TOKENS words (the lede) count, as words and
# bigrams without character grams (those bridge spelling variants in headlines).
# Not measurable on dev.tsv (titles only); chosen for cost: on bench/poll.py's
# corpus (summaries ~300 characters) grouping took 1.2-1.45 CPU s per 1,000 entries
# with whole summaries, 0.66-0.79 with this cap, 0.3 with none (18,496 entries,
# all in one window, /tmp profile of 2026-11-25). Titles decide on dev.tsv: F1 unchanged.
SUMMARY_TOKENS = 30

# Time factor 1 / (1 + gap / TIME_SCALE), gap = time since the story's last
# entry. Mild on purpose: with 72 h windows it costs a story at most 1/2.
TIME_SCALE = timedelta(hours=72)

# Stop using a term to fetch candidates when more than this many active stories
# contain it (it is too common to be a clue); the candidates it would add are
# still reachable through the entry's rarer terms. Bounds the cost per entry.
MAX_POSTING = 400

# A term held by up to this many active stories keeps their ids in a tuple, beyond in a
# set (memory only: candidates are ranked by weight and id, whatever the order).
# bench/poll.py's first poll (21,769 entries grouped; /tmp replay): max RSS 307 -> 294 MB.
SMALL_POSTING = 16

# At most this many candidate stories are scored per entry: those sharing the most of
# the entry's weight. With summaries, an entry shares some word with most of hundreds
# of active stories; scoring them all cost 6-12 ms per entry (bench/poll.py's corpus,
# 450 active stories). Capped at 32: 2 ms, 99.75 % of 6,000 entries end in the same
# story as uncapped (64: 99.98 %), and dev.tsv's F1 is unchanged on all five orders
# (its headlines never reach the cap). See docs/grouping.md, "Summaries (cost)".
MAX_CANDIDATES = 32

# Stems of this many distinct words are remembered (words repeat across entries).
STEM_CACHE_SIZE = 65_536
FOLD_CACHE_SIZE = 65_536  # folded words (accents stripped), as for stems

# Centroids keep at most MAX_CENTROID_TERMS features (the lightest are pruned
# down to PRUNE_TO), bounding memory and scoring cost for very large stories.
MAX_CENTROID_TERMS = 600
PRUNE_TO = 450

# IDF = ln((docs + IDF_PRIOR_DOCS) / (df + 0.5)): the prior pretends the index
# has seen this many documents without the term, so a cold index does not treat
# a word shared by its first two entries as common. Half A F1 (5 orders): 1 ->
# 0.765, 20 -> 0.763, 100 -> 0.757 at threshold 0.07; 20 lets 2-3 entries group.
IDF_PRIOR_DOCS = 20.0

# Document frequencies are halved every `window` of stream time (72 h), or after
# DF_HALF_LIFE entries when those come sooner (a first poll of many feeds), so IDF
# follows the recent stream and the vocabulary is that of a few windows. Halving every
# 50,000 entries only, a worker of 300 feeds (5,400 entries a day, bench/soak.py) kept
# nine days of vocabulary (most of it seen once) and grew by steps to 538 MB in 20 days;
# now 474 MB. dev.tsv's replay spans 48 h and 3,149 entries: never halved either way.
DF_HALF_LIFE = 50_000

# See _norm2: a story's norm follows the stream's size exactly; its terms' document
# frequencies are read again when the stream grew by this factor since the last
# time. dev.tsv whole F1 / 5-order mean: 1.05 0.852 / 0.829, 1.2 0.852 / 0.829,
# 1.5 0.850 / 0.830 (before the norm followed the stream's size, 1.2 gave 0.838
# whole); 1.2 took grouping of bench/poll.py's corpus from 98 to 74 CPU s.
NORM_REFRESH_GROWTH = 1.2

# See _norm2: at least this many new entries between full recomputes
# of a story's document frequencies. 500 cost 0.03 whole-file F1 on dev.tsv (stale
# norms early in a cold stream, measured before the norm followed the stream's
# size), so the growth rule alone decides.
NORM_REFRESH_DOCS = 0

# Members whose vectors are kept for choosing the headline (the most recent
# ones); the centroid itself is the sum over all members.
MAX_MEMBERS_KEPT = 200

# Story merging: after an entry joins story S, each of the MERGE_CANDIDATES
# other stories the entry scored at least MERGE_ENTRY_FACTOR x threshold against
# is merged with S when the two centroids' IDF-weighted cosine reaches
# MERGE_THRESHOLD (0 disables merging). The older story absorbs the younger,
# whose id becomes an alias. On since the fifth round: earlier rounds scored the
# story id each entry got *when it was added*, so the entries of an absorbed
# story kept its old id and every merge looked like a split (bench/grouping.py
# now scores the final stories, as the store keeps them). Scored that way,
# 5-order mean B-cubed F1 (whole / half A / half B): off 0.818 / 0.774 / 0.921;
# 0.12 0.815 / 0.818 / 0.936; 0.15 0.823 / 0.811 / 0.936; 0.2 0.825 / 0.793 /
# 0.930; 0.25 0.822 / 0.781 / 0.922. With the second look (SECOND_LOOK): 0.12
# 0.822 / 0.822 / 0.937; 0.15 0.829 / 0.818 / 0.939. Half A is flat between
# 0.12 and 0.15 (0.004, within order noise); 0.15 keeps the whole file's
# precision (0.800 against 0.781). See docs/grouping.md.
MERGE_THRESHOLD = 0.15
MERGE_ENTRY_FACTOR = 1.0
MERGE_CANDIDATES = 3

# Second look: an entry grouped by its text is looked at again once, SECOND_LOOK
# (stream time) after it arrived, against the stories as they are then. It is
# scored against its own story without itself (leave one out) and against the
# other candidates; it moves to another story that scores higher and reaches the
# threshold, or, when nothing (its own story included) reaches the threshold and
# it did not found its story, out to a story of its own (id = its entry id).
# Early decisions are made against stories of one or two entries; a day later the
# stories say what they are about. Link and title duplicates, replays, entries
# that other entries duplicate, and lone entries are not moved; an entry leaves to
# a story of its own only when its id names no story yet (not the founder), so
# story ids stay stable. Only active stories are touched. 5-order mean B-cubed F1
# with merging at 0.15 (whole / half A / half B): no second look 0.823 / 0.811 /
# 0.936; 8 h 0.827 / 0.815 / 0.936; 24 h 0.829 / 0.818 / 0.939; 48 h (looks
# at the end of the 48 h replay) 0.827 / 0.817 / 0.937. None disables it.
SECOND_LOOK: timedelta | None = timedelta(hours=24)
# Only entries that joined with a score below SECOND_LOOK_BELOW (or founded a
# story) get a second look: a clear join is not revisited. For cost: on
# bench/grouping.py --cost a fifth of the entries are looked at. 5-order means
# (whole / half A / half B): every entry 0.829 / 0.818 / 0.939; below 1.0 0.829 /
# 0.817 / 0.939; 0.5 0.829 / 0.817 / 0.939; 0.3 0.829 / 0.816 / 0.939; 0.15
# 0.827 / 0.815 / 0.939.
SECOND_LOOK_BELOW = 0.3

# Optional semantic stage (``aggregator.embed``; off unless an embedder is
# given): each candidate story's score gains EMBED_WEIGHT x (cosine of the
# entry's sentence embedding with the story's mean embedding - EMBED_FLOOR),
# so a paraphrase lifts a weak word match and an unrelated headline that shares
# a word loses it. Candidates still come from the word index. Chosen on half A
# of dev.tsv with all-MiniLM-L6-v2 (one order, B-cubed F1 A / B / whole):
# weight 0.3 floor 0.4 0.796/0.929/0.838; 0.2/0.4 0.793/0.929/0.831; 0.3/0.5
# 0.781/0.913/0.836; 0.3/0.45 0.788/0.915/0.840; without the stage
# 0.767/0.924/0.806. See docs/grouping.md.
EMBED_WEIGHT = 0.3
EMBED_FLOOR = 0.4
# With embeddings the MIN_COSINE floor is not needed (the embedding term does
# its job of keeping loosely related headlines out of big stories, and the
# floor costs recall). Half A, order 0, weight 0.3 floor 0.4: min cosine 0.06
# -> 0.796, 0.03 -> 0.820, 0.02 -> 0.821, 0.0 -> 0.821 (whole 0.839 -> 0.852).
# Mean of 5 orders with the stage (whole / A / B): 0.855 / 0.808 / 0.935.
EMBED_MIN_COSINE = 0.0
# Merging with the stage: two stories merge when their centroid cosine plus
# EMBED_MERGE_WEIGHT x (the cosine of their summed title embeddings -
# EMBED_MERGE_FLOOR) reaches EMBED_MERGE_THRESHOLD, so headlines that mean the same
# lift a merge and ones that do not veto it. Until the eighteenth session the stage
# turned merging off (it had not been measured with it), and the default method,
# which merges, had caught up with it: order 0 whole 0.853 against the default's
# 0.852, held-out half B 0.936 against 0.952. B-cubed F1, half A / half B / whole,
# order 0 and (mean of 5 orders): no merging 0.820 (0.807) / 0.936 (0.933) / 0.853
# (0.855); weight 0.3 floor 0.5 at 0.12 0.842 (0.840) / 0.964 (0.959) / 0.850
# (0.843); at 0.15 0.838 (0.837) / 0.951 (0.954) / 0.868 (0.851); at 0.18 0.836
# (0.834) / 0.943 (0.943) / 0.865 (0.859); weight 0.5 at 0.15 0.842 (0.841) / 0.950
# (0.951) / 0.853 (0.847); floor 0.6 at 0.15 as floor 0.5 at 0.18. Half A is flat
# within order noise from 0.12 to 0.18 (0.834-0.841); 0.15 keeps the whole file's
# precision. The second look stays off with the stage: with it, 0.841 (0.838) /
# 0.947 (0.951) / 0.861 (0.847), no gain. See docs/grouping.md.
EMBED_MERGE_THRESHOLD = 0.15
EMBED_MERGE_WEIGHT = 0.3
EMBED_MERGE_FLOOR = 0.5
# With the stage the one-word bonus is not cut (ONE_WORD_BONUS_SHARE): the embedding term
# already tells a generic-word match from a paraphrase. Order 0 with the stage (whole / A / B):
# share 0.5 -> 0.848 / 0.814 / 0.928; 1.0 (no cut) -> 0.852 / 0.821 / 0.936.
EMBED_ONE_WORD_BONUS_SHARE = 1.0
# The bundled model (all-MiniLM-L6-v2) was trained on English, and every measurement
# above is on English headlines. Other languages' titles come out close to each other
# whatever they say: in `bench/grouping.py --realfeeds --timeline` with the stage on,
# Spanish, Italian and French feeds' entries piled into single stories of their own
# feed (13 entries of "cabalgata, niños", 11-14 of "roma, primavera"; feeds with more than
# half of their entries in one story 15-17 against 9 without the stage). So only
# entries in the model's language are embedded; the others are grouped as without the
# stage (its constants too: MIN_COSINE, ONE_WORD_BONUS_SHARE).
EMBED_LANGUAGES = frozenset({"en"})

# Label: this many key terms (highest tf-idf in the centroid).
KEY_TERMS = 3

# Shared terms reported by explain(): at most this many.
MAX_SHARED_TERMS = 5

_STOPWORDS = frozenset(
    """a about after all also amid an and any are as at be been before being but by
    can could did do does down during for from get gets got had has have he her here
    him his how i if in into is it its just may might more most my new no not now of
    off on or our out over s says said say she so some t than that the their them
    then there these they this those to up us via vs was we were what when where who
    why will with would you your""".split()
)
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_WEB_ADDRESS = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S*", re.IGNORECASE)
LANGUAGE_STOPWORDS_CACHE = 64  # stopword sets kept, one per language tag
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "es", "ed", "ly", "s")
_TRACKING_PARAMS = re.compile(r"^(utm_\w+|fbclid|gclid|mc_cid|mc_eid|ref|cmpid|ncid|rss|track)$")
_TRAILING_SOURCE = re.compile(r"\s+[-|–—]\s+[^-|–—]{1,40}$")


@dataclass(frozen=True)
class GroupItem:
    """One entry to group."""

    entry_id: int
    title: str
    summary: str
    link: str | None
    source: str  # feed identity
    published_at: datetime  # aware UTC
    language: str | None


class Assignment(NamedTuple):
    """Where an entry went and why. (A named tuple: the index keeps each active entry's
    as a plain tuple, see `StoryIndex._remember`.)"""

    entry_id: int
    story_id: int
    score: float  # 1.0 for link/title duplicates and replays; else the join score
    shared_terms: tuple[str, ...]
    new_story: bool
    duplicate_of: int | None  # earlier entry of the same article inside the story
    merged: tuple[int, ...] = ()  # story ids absorbed into story_id by this entry
    language: str | None = None  # read off the text (`grouping_language`): none declared


class Move(NamedTuple):
    """An entry the second look moved: its new assignment and the story it left."""

    assignment: Assignment
    left: int  # the story the entry was in


@dataclass(frozen=True)
class StoryLabel:
    """How a story is shown: representative headline plus key terms."""

    headline: str
    terms: tuple[str, ...]
    sources: int
    first_seen: datetime
    last_updated: datetime
    headline_entry_id: int | None = None  # the member whose title is the headline
    language: str | None = None


@dataclass
class _Member:
    entry_id: int
    title: str
    published_at: datetime
    tf: dict[str, float]


@dataclass
class _Story:
    story_id: int
    language: str | None
    first_seen: datetime
    last_updated: datetime
    centroid: dict[str, float] = field(default_factory=dict)
    members: list[_Member] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)
    titles: set[str] = field(default_factory=set)
    surface: dict[str, str] = field(default_factory=dict)
    size: int = 0
    entry_ids: list[int] = field(default_factory=list)
    # The squared norm of the IDF-weighted centroid, sum of (m (L - g))^2 over terms
    # (mass m, L = ln(docs + prior), g = ln(df + 0.5)), kept as three sums so that
    # it is exact for the current L whatever L was when they were summed:
    # L^2 * sq - 2 L * sq_g + sq_g2 (see `StoryIndex._norm2`)
    sq: float = 0.0  # sum of m^2
    sq_g: float = 0.0  # sum of m^2 g
    sq_g2: float = 0.0  # sum of m^2 g^2
    norm_at: float = -1.0  # document count at the last full recompute of g; -1 = stale
    aliases: set[int] = field(default_factory=set)  # ids of stories absorbed into this one
    embedding: list[float] | None = None  # sum of member sentence embeddings (optional stage)


def canonical_link(link: str | None) -> str | None:
    """Return a canonical form of ``link`` for same-article detection.

    Lower-cases scheme and host, drops ``www.``, the fragment, tracking query
    parameters (``utm_*``, ``fbclid``...) and a trailing slash; ``http`` and
    ``https`` are treated alike.

    Args:
        link: The entry link, or None.

    Returns:
        The canonical link, or None when there is no usable link.
    """
    if not link or not link.strip():
        return None
    parts = urlsplit(link.strip())
    if not parts.netloc:
        return None
    host = parts.netloc.lower().removeprefix("www.")
    query = [(k, v) for k, v in parse_qsl(parts.query) if not _TRACKING_PARAMS.match(k.lower())]
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("http", host, path, urlencode(sorted(query)), ""))


def title_key(title: str) -> str:
    """Return the normalised title used to spot the same article from another feed.

    Case, accents, punctuation and a trailing `` - Publisher`` are ignored.

    Args:
        title: The entry title.

    Returns:
        Space-joined lower-case tokens (empty when the title has no words).
    """
    text = _TRAILING_SOURCE.sub("", title.strip())
    return " ".join(_tokens(text))


def _tokens(text: str) -> list[str]:
    """The words of `text`, casefolded and without accents; web addresses in it are not
    words (their "https", "www", "com" and path parts glued unrelated entries)."""
    if "://" in text or "www." in text:
        text = _WEB_ADDRESS.sub(" ", text)
    folded = text.replace("’", "'")
    if folded.isascii():  # nothing to decompose or strip (most English text)
        return _TOKEN.findall(folded.casefold())
    # word by word, each folded once (cached): NFKD never reorders or joins across
    # a space, so this equals folding the whole text, without a per-character
    # Python loop over every text that holds one accent or dash
    return _TOKEN.findall(" ".join(map(_fold_word, folded.split(" "))))


@functools.lru_cache(maxsize=FOLD_CACHE_SIZE)
def _fold_word(word: str) -> str:
    """`word` casefolded and compatibility-decomposed, without combining marks."""
    if word.isascii():
        return word.casefold()
    folded = unicodedata.normalize("NFKD", word).casefold()
    return "".join(ch for ch in folded if not unicodedata.combining(ch))


@functools.lru_cache(maxsize=STEM_CACHE_SIZE)
def _stem(word: str) -> str:
    """Light suffix stripping: 'hackers', 'hacked', 'hacking' -> 'hack'."""
    word = word.removesuffix("'s").replace("'", "")
    for suffix in _SUFFIXES:
        if len(word) >= len(suffix) + 4 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if suffix in ("ies", "ied"):
                word += "y"
            break
    if len(word) > 4 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]
    return word


def grouping_language(item: GroupItem) -> str | None:
    """The language an entry is grouped in: the one it (or its feed) declares, else the
    one its title and summary lede are written in when that is clear
    (`aggregator.langid`), else None, which matches any language."""
    if item.language is not None:
        return item.language
    return identify(" ".join([item.title, *item.summary.split()[:SUMMARY_TOKENS]]))


def function_words(item: GroupItem) -> frozenset[str]:
    """The tokens left out of an entry's features besides `_STOPWORDS`: the function words
    of its language (`grouping_language`, see `_language_stopwords`)."""
    return _language_stopwords(grouping_language(item))


@functools.lru_cache(maxsize=LANGUAGE_STOPWORDS_CACHE)
def _language_stopwords(language: str | None) -> frozenset[str]:
    """The function words of a language other than English, as tokens (folded like any
    text), from the `stop-words` package; empty for English (`_STOPWORDS`, kept short
    and measured on dev.tsv, covers it), no language or an unknown one.

    Without them, an article or preposition of a language that is rare in the stream
    has a high IDF, and every entry in that language shared it with every other: the
    real-world feeds grouped at once made a story of 311 French, Spanish and undeclared
    entries whose key terms were "de", "la", "les", "sur", "et".
    """
    primary = _primary_language(language)
    if primary in ("", "en") or primary not in LANGUAGE_MAPPING:
        return frozenset()
    return _listed_function_words(primary)


def _primary_language(language: str | None) -> str:
    """A language tag's primary subtag, lower-case ("pt_BR" -> "pt"); "" for none."""
    return (language or "").replace("_", "-").split("-")[0].lower()


@functools.cache
def _listed_function_words(primary: str) -> frozenset[str]:
    """The `stop-words` package's list for a primary language tag, as tokens."""
    return frozenset(token for word in get_stop_words(primary) for token in _tokens(word))


def _text_features(
    text: str,
    weight: float,
    out: dict[str, float],
    surface: dict[str, str],
    max_tokens: int | None = None,
    char_grams: bool = True,
    stop: frozenset[str] = frozenset(),
) -> None:
    """Add word, bigram, joined-short-pair and char-gram counts of ``text`` to ``out``
    (of its first ``max_tokens`` tokens when given), leaving out the tokens in ``stop``
    (the function words of the text's language, see `_language_stopwords`)."""
    raw = _tokens(text)[:max_tokens]
    words: list[str] = []
    keys: list[str] = []
    for token in raw:
        if token in stop:
            continue
        word = _word(token)
        if word is None:
            continue
        stem, key, shown = word
        words.append(stem)
        keys.append(key)
        surface.setdefault(key, shown)
    get = out.get
    for key in keys:
        out[key] = get(key, 0.0) + weight
    for first, second in zip(words, words[1:], strict=False):
        key = f"b:{first} {second}"
        out[key] = get(key, 0.0) + weight  # shown as its words are: see `_shown`
    for first, second in zip(raw, raw[1:], strict=False):
        short = min(len(first), len(second)) <= 3
        if short and first not in _STOPWORDS and second not in _STOPWORDS:
            if first in stop or second in stop:
                continue
            joined = "w:" + _stem(first + second)  # "mt gox" also as "mtgox"
            out[joined] = get(joined, 0.0) + weight
    if CHAR_WEIGHT > 0 and char_grams:
        for stem in words:
            for gram in _char_grams(stem):
                out[gram] = get(gram, 0.0) + weight


@functools.lru_cache(maxsize=STEM_CACHE_SIZE)
def _word(token: str) -> tuple[str, str, str] | None:
    """A token's stem, word feature and display form; None for a stopword or a
    one-letter stem (cached: words repeat across entries)."""
    stem = _stem(token)
    if stem in _STOPWORDS or len(stem) < 2:
        return None
    return stem, "w:" + stem, token.replace("'", "")


def _shown(surface: dict[str, str], term: str) -> str | None:
    """How a word or bigram feature is shown: a word as first written in the story, a
    bigram as its two words are (bigrams keep no text of their own: at 25,000 entries
    with summaries their display strings held 17 MB); None for a character gram or a
    joined short pair, which are never shown, or a bigram whose word was pruned."""
    if term[0] == "w":
        return surface.get(term)
    if term[0] != "b":
        return None
    first, _, second = term[2:].partition(" ")
    shown_first = surface.get("w:" + first)
    shown_second = surface.get("w:" + second)
    if shown_first is None or shown_second is None:
        return None
    return f"{shown_first} {shown_second}"


def _headline_terms(title: str) -> tuple[str, ...]:
    """The word and bigram features of a headline (no character grams)."""
    counts: dict[str, float] = {}
    _text_features(title, 1.0, counts, {}, char_grams=False)
    return tuple(counts)


@functools.lru_cache(maxsize=STEM_CACHE_SIZE)
def _char_grams(stem: str) -> tuple[str, ...]:
    """The character-gram features of a word, in order (repeats kept)."""
    padded = f"<{stem}>"
    return tuple("c:" + padded[i : i + CHAR_NGRAM] for i in range(len(padded) - CHAR_NGRAM + 1))


def _unit_tf(counts: dict[str, float]) -> dict[str, float]:
    """Sublinear, block-weighted, length-normalised term frequencies."""
    tf: dict[str, float] = {}
    for term, count in counts.items():
        value = 1.0 + math.log(count) if count >= 1.0 else count
        tf[term] = value * (CHAR_WEIGHT if term[0] == "c" else 1.0)
    norm = math.sqrt(sum(v * v for v in tf.values())) or 1.0
    # one float object per distinct weight: an entry's terms share a handful (title
    # words seen once, character grams, summary words), and the centroid of the story
    # an entry starts keeps them (a float per term was 17 MB of a first poll's index)
    unit: dict[float, float] = {}
    normalised: dict[str, float] = {}
    for term, v in tf.items():
        weight = unit.get(v)
        if weight is None:
            weight = unit[v] = v / norm
        normalised[term] = weight
    return normalised


class StoryIndex:
    """Online story grouping over the active stories of a time window.

    Args:
        window: Stories quiet for longer than this leave the active set.
        threshold: Minimum score for an entry to join an existing story.
        size_bonus: Weight of the log story size in the score.
        time_scale: Scale of the mild penalty for a story's quiet time.
        merge_threshold: Merge score (the centroids' cosine, plus an embedding
            term with an embedder: see ``EMBED_MERGE_WEIGHT``) at which two stories
            merge (0: never); None takes ``MERGE_THRESHOLD``, or
            ``EMBED_MERGE_THRESHOLD`` when an embedder is given.
        min_cosine: Plain entry-centroid cosine below which a story is not a
            candidate, whatever its size bonus, for an entry scored on its words
            alone (every entry without an embedder; with one, those in a language
            it does not embed, see ``EMBED_LANGUAGES``: the others use
            ``EMBED_MIN_COSINE``); None takes ``MIN_COSINE``.
        embedder: Optional sentence embedder (title -> unit vector), e.g.
            ``aggregator.embed.load_embedder()``; None (the default) keeps the
            method pure Python.
        second_look: How long after its arrival (stream time) an entry is
            looked at again (see ``SECOND_LOOK``); None disables it. Always off
            with an embedder (measured: no gain with the stage).
    """

    def __init__(
        self,
        window: timedelta = DEFAULT_WINDOW,
        threshold: float = DEFAULT_THRESHOLD,
        size_bonus: float = SIZE_BONUS,
        time_scale: timedelta = TIME_SCALE,
        merge_threshold: float | None = None,
        min_cosine: float | None = None,
        embedder: Callable[[str], Sequence[float]] | None = None,
        second_look: timedelta | None = SECOND_LOOK,
    ) -> None:
        self.window = window
        self.threshold = threshold
        self.size_bonus = size_bonus
        self.time_scale = time_scale.total_seconds()
        if merge_threshold is None:
            merge_threshold = MERGE_THRESHOLD if embedder is None else EMBED_MERGE_THRESHOLD
        self.merge_threshold = merge_threshold
        self.second_look = second_look if embedder is None else None
        # the floor of entries scored on their words alone: all of them without an
        # embedder, those it does not embed with one (EMBED_LANGUAGES)
        self.min_cosine = MIN_COSINE if min_cosine is None else min_cosine
        # the floor and one-word bonus share of the entry being added (see `add`)
        self._floor, self._one_word = self.min_cosine, ONE_WORD_BONUS_SHARE
        self._df: dict[str, int] = {}  # term -> document frequency
        self._docs = 0.0
        self._seen = 0
        self._halved_at: datetime | None = None  # stream time of the last halving
        self._stories: dict[int, _Story] = {}
        # term -> the active stories holding it: one id, a tuple of up to
        # SMALL_POSTING ids, or a set beyond (most terms, from one story's summaries,
        # never get a second holder; a set of two takes 216 bytes, a tuple 56)
        self._postings: dict[str, int | tuple[int, ...] | set[int]] = {}
        # canonical link -> (story, entry, source), as for titles; source "" once two
        # items of one feed carried the link (it names no article)
        self._links: dict[str, tuple[int, int, str]] = {}
        self._titles: dict[str, tuple[int, int, str]] = {}  # key -> (story, entry, source)
        self._assignments: dict[int, tuple[Any, ...]] = {}  # see _remember
        self._heap: list[tuple[datetime, int]] = []
        self._aliases: dict[int, int] = {}  # absorbed story id -> survivor (while active)
        self._merges: list[tuple[int, int]] = []  # (survivor, absorbed) not yet drained
        self._last_scored: list[tuple[float, _Story]] = []
        # Entries waiting for their second look, in arrival order, and the moves it
        # made that the caller has not drained yet. Plain tuples of plain values, for
        # the garbage collector (see _remember): (arrival, entry id, title, summary,
        # link, source, language); a dict inside would keep them tracked.
        self._pending: deque[tuple[Any, ...]] = deque()
        self._moves: list[Move] = []
        self._originals: set[int] = set()  # entries that a later entry duplicates
        self.embedder = embedder
        self._vector: Sequence[float] | None = None  # embedding of the entry being added

    # ----------------------------------------------------------------- public

    @property
    def active_count(self) -> int:
        """Number of stories in the active set."""
        return len(self._stories)

    @property
    def vocabulary_size(self) -> int:
        """Number of terms with a document frequency (bounded by the halving)."""
        return len(self._df)

    @property
    def active_story_ids(self) -> tuple[int, ...]:
        """Ids of the active stories, oldest first."""
        return tuple(self._stories)

    def add(self, item: GroupItem, story_id: int | None = None) -> Assignment:
        """Group one entry.

        Args:
            item: The entry.
            story_id: When given, replay a stored assignment (warm start): the
                entry joins that story (re-created if not active) with no decision.

        Returns:
            The assignment: story id, score, shared key terms, whether the entry
            founded the story and which earlier entry it duplicates, if any.
        """
        if self._pending and story_id is None:
            self.look_again(item.published_at)
        detected = None
        if item.language is None:  # read it off the text once: features, story, looks
            detected = grouping_language(item)
            if detected is not None:
                item = replace(item, language=detected)
        counts, surface, headline = self._features(item)
        self._learn_df(counts, item.published_at)
        tf = _unit_tf(counts)
        idf = self._idfs(tf)  # fixed for the rest of this add
        link = canonical_link(item.link)
        tkey = title_key(item.title)
        duplicate = self._duplicate(item, link, tkey)
        self._last_scored = []
        self._vector = None
        self._floor, self._one_word = self.min_cosine, ONE_WORD_BONUS_SHARE
        if self.embedder is not None and embeds_language(item.language):
            self._vector = self.embedder(item.title)
            self._floor, self._one_word = EMBED_MIN_COSINE, EMBED_ONE_WORD_BONUS_SHARE
        if story_id is not None:
            story_id = self._aliases.get(story_id, story_id)
            assignment = self._replay(item, story_id, tf, idf, duplicate)
        elif duplicate is not None:
            assignment = Assignment(item.entry_id, duplicate[0], 1.0, (), False, duplicate[1])
        else:
            assignment = self._decide(item, tf, idf, _min_shared_words(counts, headline))
        if detected is not None:
            assignment = assignment._replace(language=detected)
        story = self._stories.get(assignment.story_id)
        if story is None:
            story = self._new_story(assignment.story_id, item)
        self._join(story, item, tf, idf, surface, headline, link, tkey)
        self._remember(assignment)
        if assignment.duplicate_of is not None:
            self._originals.add(assignment.duplicate_of)
        elif (
            story_id is None
            and self.second_look is not None
            and assignment.score < SECOND_LOOK_BELOW
        ):
            self._queue_look(item)
        if self._last_scored and not assignment.new_story and self.merge_threshold > 0:
            survivor, absorbed = self._merge_converged(story)
            if absorbed:
                assignment = assignment._replace(story_id=survivor, merged=absorbed)
                self._remember(assignment)
        self._last_scored = []
        return assignment

    def resume_look(self, item: GroupItem, score: float) -> bool:
        """Queue a replayed entry's second look again, as `add` queued it when it
        decided the entry with `score` (a warm start rebuilds the index from stored
        assignments, and the looks that were still waiting would otherwise be lost).

        Call it after the replay, oldest entry first, for the entries whose look may
        not have come yet; an entry gone from the index, or decided with a clear score
        (a duplicate's is 1.0), is not queued.

        Returns:
            Whether the look was queued.
        """
        if self.second_look is None or score >= SECOND_LOOK_BELOW:
            return False
        if item.entry_id not in self._assignments:
            return False
        self._queue_look(item)
        return True

    def drain_merges(self) -> list[tuple[int, int]]:
        """Return the merges made since the last call, oldest first, and forget them.

        Returns:
            ``(survivor, absorbed)`` story id pairs: every entry of ``absorbed``
            now belongs to ``survivor`` (the older story, whose id is kept).
            Apply them in order: a survivor may itself be absorbed later.
        """
        merges, self._merges = self._merges, []
        return merges

    def drain_moves(self) -> list[Move]:
        """Return the second look's moves since the last call, oldest first, and forget
        them.

        Returns:
            One `Move` per moved entry: its new assignment (story id, score, shared
            terms) and the story it left. A move can name a story that a later merge
            absorbed; apply moves before merges (``Store.save_assignments`` does).
        """
        moves, self._moves = self._moves, []
        return moves

    def look_again(self, now: datetime) -> None:
        """Give every entry that arrived `second_look` or longer before ``now`` its
        second look (``add`` and ``expire`` do this too); moves go to `drain_moves`.

        Args:
            now: The current (stream) time.
        """
        if self.second_look is None:
            return
        due = now - self.second_look
        pending = self._pending
        while pending and pending[0][0] <= due:
            when, entry_id, title, summary, link, source, language = pending.popleft()
            item = GroupItem(entry_id, title, summary, link, source, when, language)
            counts, _, headline = self._features(item)
            self._second_look(item, _unit_tf(counts), _min_shared_words(counts, headline))

    def resolve(self, story_id: int) -> int:
        """Return the id ``story_id`` now goes by (itself unless absorbed by a merge)."""
        return self._aliases.get(story_id, story_id)

    def last_updated(self, story_id: int) -> datetime | None:
        """When an entry last joined the story (it leaves the active set `window`
        later), or None when the story is not active."""
        story = self._stories.get(self.resolve(story_id))
        return story.last_updated if story is not None else None

    def expire(self, now: datetime) -> int:
        """Drop stories that have been quiet for longer than the window, then give the
        entries that are due their second look (see `look_again`).

        Args:
            now: The current time (aware UTC).

        Returns:
            How many stories left the active set.
        """
        cutoff = now - self.window
        removed = 0
        while self._heap and self._heap[0][0] < cutoff:
            last, sid = heapq.heappop(self._heap)
            story = self._stories.get(sid)
            if story is None or story.last_updated != last:
                continue  # stale heap entry: the story moved on or is gone
            self._drop(story)
            removed += 1
        self.look_again(now)  # after the drop: entries of dropped stories are skipped
        return removed

    def label(self, story_id: int) -> StoryLabel:
        """Describe an active story.

        The headline is the member title closest (cosine, current IDF) to the
        centroid; ties go to the earliest. Terms are the ``KEY_TERMS`` word or
        bigram features with the highest tf-idf in the centroid, a bigram
        hiding the unigrams it contains.

        Args:
            story_id: An active story's id.

        Returns:
            The label.

        Raises:
            KeyError: The story is not active.
        """
        story = self._stories[self._aliases.get(story_id, story_id)]
        idf = self._idfs(term for term in story.centroid if term[0] != "c")
        headline = self._headline(story, idf)
        return StoryLabel(
            headline=headline.title,
            terms=self._key_terms(story, idf),
            sources=len(story.sources),
            first_seen=story.first_seen,
            last_updated=story.last_updated,
            headline_entry_id=headline.entry_id,
            language=story.language,
        )

    def explain(self, entry_id: int) -> Assignment | None:
        """Say why an entry is where it is (its assignment, with shared terms and score).

        Args:
            entry_id: An entry added to this index whose story is still active.

        Returns:
            The entry's assignment, or None when unknown or expired.
        """
        found = self._assignments.get(entry_id)
        return Assignment._make(found) if found is not None else None

    def story_of(self, entry_id: int) -> int | None:
        """Return the story id of an entry in an active story, else None."""
        found = self.explain(entry_id)
        return found.story_id if found else None

    def members(self, story_id: int) -> tuple[int, ...]:
        """Return the entry ids of an active story in arrival order."""
        return tuple(self._stories[self._aliases.get(story_id, story_id)].entry_ids)

    # ---------------------------------------------------------------- helpers

    def _remember(self, assignment: Assignment) -> None:
        """Keep an entry's assignment as a plain tuple: the index holds one per active
        entry (tens of thousands after a first poll), and CPython stops tracking a plain
        tuple of plain values (not a named one) at its first collection, so full
        collections no longer walk them; they cost 0.12 s at 60,000 entries, in the
        middle of the next poll."""
        self._assignments[assignment.entry_id] = tuple(assignment)

    def _queue_look(self, item: GroupItem) -> None:
        """Add an entry to the second look's queue (see `look_again`). It keeps the
        entry's text and the look computes its features again: kept term weights made
        the index 9 MB larger at bench/poll.py's first poll (8,279 entries waiting;
        max RSS 294 -> 285 MB), and features cost about 5 % of an `add`."""
        self._pending.append(
            (item.published_at, item.entry_id, item.title, item.summary, item.link)
            + (item.source, item.language)
        )

    def _features(
        self, item: GroupItem
    ) -> tuple[dict[str, float], dict[str, str], tuple[str, ...]]:
        """Feature counts, display forms, and the headline's own word and bigram
        features (what `_headline_terms` gives, read off on the way)."""
        counts: dict[str, float] = {}
        surface: dict[str, str] = {}
        # `add` resolved the language (`grouping_language`): an entry the model could
        # not read is not read again here, nor at its second look
        stop = _language_stopwords(item.language)
        _text_features(item.title, 1.0, counts, surface, stop=stop)
        headline = tuple(term for term in counts if term[0] != "c")
        if item.summary:
            _text_features(
                item.summary,
                SUMMARY_WEIGHT,
                counts,
                surface,
                SUMMARY_TOKENS,
                char_grams=False,
                stop=stop,
            )
        return counts, surface, headline

    def _learn_df(self, counts: Iterable[str], now: datetime) -> None:
        self._seen += 1
        if self._halved_at is None:
            self._halved_at = now
        if self._seen >= DF_HALF_LIFE or now - self._halved_at >= self.window:
            self._seen, self._halved_at = 0, max(now, self._halved_at)
            self._docs /= 2
            # halved in ints, rounded down (a term seen once is forgotten): small ints
            # are shared objects, a float per term took 24 bytes more
            self._df = {t: c // 2 for t, c in self._df.items() if c >= 2}
        self._docs += 1
        df = self._df
        for term in counts:
            # counted in ints: the small ones are shared objects, where
            # a float per term was 11 MB of a first poll's index (465,000 terms)
            df[term] = df.get(term, 0) + 1

    def _idf(self, term: str) -> float:
        return math.log((self._docs + IDF_PRIOR_DOCS) / (self._df.get(term, 0.0) + 0.5))

    def _idfs(self, terms: Iterable[str]) -> dict[str, float]:
        """`_idf` of each term, as one loop: the hot paths (every add, every norm
        refresh) call it for hundreds of terms, and a call per term cost more than
        the arithmetic."""
        docs = self._docs + IDF_PRIOR_DOCS
        df = self._df.get
        log = math.log
        return {term: log(docs / (df(term, 0.0) + 0.5)) for term in terms}

    def _duplicate(self, item: GroupItem, link: str | None, tkey: str) -> tuple[int, int] | None:
        # Only another feed's entry is the same article, and only by a link that names
        # one: items of one feed that share a link (a podcast's episodes all pointing at
        # the show's home page) are not duplicates, and the link ("" as its source in
        # `_links`) makes none.
        found_link = self._links.get(link) if link is not None else None
        if found_link is not None and found_link[2] not in ("", item.source):
            return found_link[0], found_link[1]
        found = self._titles.get(tkey) if tkey.count(" ") >= 2 else None
        if found is not None and found[2] != item.source:
            story = self._stories[found[0]]
            if _compatible(story.language, item.language):
                return found[0], found[1]
        return None

    def _replay(
        self,
        item: GroupItem,
        story_id: int,
        tf: dict[str, float],
        idf: dict[str, float],
        dup: tuple[int, int] | None,
    ) -> Assignment:
        story = self._stories.get(story_id)
        shared = self._shared_terms(story, tf, idf) if story is not None else ()
        duplicate_of = dup[1] if dup is not None and dup[0] == story_id else None
        new = story is None and story_id == item.entry_id
        return Assignment(item.entry_id, story_id, 1.0, shared, new, duplicate_of)

    def _decide(
        self, item: GroupItem, tf: dict[str, float], idf: dict[str, float], min_words: int = 1
    ) -> Assignment:
        doc, query = _query(tf, idf)
        best: _Story | None = None
        best_score = 0.0
        scored = self._last_scored
        merging = self.merge_threshold > 0
        vector = self._vector
        for story in self._candidates(item, doc):
            score = self._score(story, query, item.published_at, min_words)
            if vector is not None and story.embedding is not None:
                score += EMBED_WEIGHT * (_cosine(vector, story.embedding) - EMBED_FLOOR)
            if merging and score >= self.threshold * MERGE_ENTRY_FACTOR:
                scored.append((score, story))
            if score > best_score or (
                score == best_score and best is not None and story.story_id < best.story_id
            ):
                best, best_score = story, score
        if best is None or best_score < self.threshold:
            return Assignment(item.entry_id, item.entry_id, best_score, (), True, None)
        shared = self._shared_terms(best, tf, idf)
        return Assignment(item.entry_id, best.story_id, best_score, shared, False, None)

    def _candidates(self, item: GroupItem, doc: dict[str, float]) -> list[_Story]:
        """The active stories (in the window, of a compatible language) sharing a
        word or bigram with the entry; beyond `MAX_CANDIDATES`, those sharing the most
        of its weight (a sum per story: far cheaper than scoring every story that
        shares one common word)."""
        shared: dict[int, float] = {}
        get = shared.get
        for term, weight in doc.items():
            posting = self._postings.get(term) if term[0] != "c" else None
            if posting is None:
                continue
            if isinstance(posting, int):
                shared[posting] = get(posting, 0.0) + weight
            elif len(posting) <= MAX_POSTING:
                for sid in posting:
                    shared[sid] = get(sid, 0.0) + weight
        ranked = _heaviest(shared, 2 * MAX_CANDIDATES)
        found = self._eligible(ranked, item)
        if len(found) < MAX_CANDIDATES and len(ranked) < len(shared):
            found = self._eligible(_heaviest(shared, len(shared)), item)  # rare
        return found

    def _eligible(self, ranked: list[tuple[int, float]], item: GroupItem) -> list[_Story]:
        """The first `MAX_CANDIDATES` of ``ranked`` in the window and of a language
        compatible with the entry's."""
        cutoff = item.published_at - self.window
        stories = self._stories
        language = item.language
        found = []
        for sid, _ in ranked:
            story = stories[sid]
            if story.last_updated >= cutoff and (
                story.language == language or _compatible(story.language, language)
            ):
                found.append(story)
                if len(found) == MAX_CANDIDATES:
                    break
        return found

    def _score(
        self, story: _Story, query: dict[str, float], when: datetime, min_words: int = 1
    ) -> float:
        centroid = story.centroid
        # the terms both hold, found in C (over the entry's ~60 terms, not the
        # centroid's ~450): most of the entry's terms are not in a given story
        common = query.keys() & centroid.keys()
        if not common:
            return 0.0
        # fsum is exact, so the dot product does not depend on the set's
        # (hash-seeded) order: the same replay gives the same decisions in every run
        dot = math.fsum([query[term] * centroid[term] for term in common])
        if dot <= 0.0:
            return 0.0
        cosine = dot / self._centroid_norm(story)
        if cosine < self._floor:
            return 0.0  # most candidates: no need to count the shared words
        words = sum([term[0] == "w" for term in common])  # shared word features
        return self._scaled(cosine, story, story.size, words, when, min_words)

    def _scaled(
        self,
        cosine: float,
        story: _Story,
        size: int,
        words: int,
        when: datetime,
        min_words: int = 1,
    ) -> float:
        """The score of a plain cosine with a story of ``size`` entries sharing
        ``words`` word features (floor, least shared words, size bonus, quiet-time
        factor)."""
        if cosine < self._floor or words < min_words:
            return 0.0
        bonus = self.size_bonus * math.log(size)
        if words < 2:
            bonus *= self._one_word
        gap = max(0.0, (when - story.last_updated).total_seconds())
        return cosine * (1.0 + bonus) / (1.0 + gap / self.time_scale)

    def _score_without(
        self,
        story: _Story,
        query: dict[str, float],
        tf: dict[str, float],
        idf: dict[str, float],
        min_words: int = 1,
    ) -> float:
        """`_score` of a member against its own story with the member taken out (leave
        one out), without changing the story. The quiet-time factor is left out: the
        story's last entry may be the member itself or a later one."""
        centroid = story.centroid
        dot = 0.0
        words = 0
        norm2 = self._centroid_norm(story) ** 2  # at the current L, as `idf` is
        for term, value in tf.items():
            mass = centroid.get(term)
            if mass is None:
                continue  # pruned from the centroid
            rest = mass - value
            norm2 += (rest * rest - mass * mass) * idf[term] ** 2
            if rest > 1e-9:
                dot += query[term] * rest
                words += term[0] == "w"
        if dot <= 0.0 or norm2 <= 0.0:
            return 0.0
        cosine = dot / math.sqrt(norm2)
        return self._scaled(cosine, story, story.size - 1, words, story.last_updated, min_words)

    def _centroid_norm(self, story: _Story) -> float:
        return math.sqrt(self._norm2(story)) or 1.0

    def _norm2(self, story: _Story) -> float:
        """The story's squared centroid norm at the current IDF.

        IDF = L - g (L = ln(docs + prior), g = ln(df + 0.5)): the story keeps sums of
        m^2, m^2 g and m^2 g^2 over its terms, so the norm follows L exactly as the
        stream grows; joins add to the sums with the g of their time, and the term
        frequencies' drift is corrected by a full recompute when the stream grew
        NORM_REFRESH_GROWTH since the last one."""
        grown = self._docs > story.norm_at * NORM_REFRESH_GROWTH + NORM_REFRESH_DOCS
        if story.norm_at < 0 or grown or self._docs < story.norm_at:
            df = self._df.get
            log = math.log
            sq = sq_g = sq_g2 = 0.0
            for term, mass in story.centroid.items():
                m2 = mass * mass
                g = log(df(term, 0.0) + 0.5)
                sq += m2
                sq_g += m2 * g
                sq_g2 += m2 * g * g
            story.sq, story.sq_g, story.sq_g2 = sq, sq_g, sq_g2
            story.norm_at = self._docs
        big_l = math.log(self._docs + IDF_PRIOR_DOCS)
        return max(big_l * (big_l * story.sq - 2.0 * story.sq_g) + story.sq_g2, 0.0)

    def _add_mass(self, story: _Story, changes: Iterable[tuple[float, float]]) -> None:
        """Add (change of m^2, IDF at the current L) pairs to the story's norm sums."""
        big_l = math.log(self._docs + IDF_PRIOR_DOCS)
        sq, sq_g, sq_g2 = story.sq, story.sq_g, story.sq_g2
        for delta, idf in changes:
            g = big_l - idf
            sq += delta
            sq_g += delta * g
            sq_g2 += delta * g * g
        story.sq, story.sq_g, story.sq_g2 = sq, sq_g, sq_g2

    def _shared_terms(
        self, story: _Story, tf: dict[str, float], idf: dict[str, float]
    ) -> tuple[str, ...]:
        """The entry's word and bigram terms that `story` holds, by contribution
        (`idf` covers the entry's terms)."""
        centroid = story.centroid
        scored = []
        for term, value in tf.items():
            if term in centroid and (shown := _shown(story.surface, term)) is not None:
                scored.append((value * centroid[term] * idf[term] ** 2, term, shown))
        scored.sort(reverse=True)
        return tuple(shown for _, _, shown in scored[:MAX_SHARED_TERMS])

    def _new_story(self, story_id: int, item: GroupItem) -> _Story:
        story = _Story(story_id, item.language, item.published_at, item.published_at)
        self._stories[story_id] = story
        return story

    def _join(
        self,
        story: _Story,
        item: GroupItem,
        tf: dict[str, float],
        idf: dict[str, float],
        surface: dict[str, str],
        headline: Iterable[str],
        link: str | None,
        tkey: str,
    ) -> None:
        # a member keeps only its headline's word and bigram weights, all that choosing
        # the story's headline reads: a fifth of the memory of its whole vector
        own = {term: tf[term] for term in headline if term in tf}
        story.members.append(_Member(item.entry_id, item.title, item.published_at, own))
        if len(story.members) > MAX_MEMBERS_KEPT:
            del story.members[0]
        story.size += 1
        story.entry_ids.append(item.entry_id)
        story.sources.add(item.source)
        if story.language is None:
            story.language = item.language
        story.first_seen = min(story.first_seen, item.published_at)
        story.last_updated = max(story.last_updated, item.published_at)
        heapq.heappush(self._heap, (story.last_updated, story.story_id))
        centroid = story.centroid
        changes = []
        for term, value in tf.items():
            old = centroid.get(term)
            if old is None:
                if term[0] != "c":
                    self._post(term, story.story_id)
                centroid[term] = value  # the entry's float itself: shared, see _unit_tf
                changes.append((value * value, idf[term]))
            else:
                centroid[term] = old + value
                changes.append((2.0 * old * value + value * value, idf[term]))
        self._add_mass(story, changes)
        for term, text in surface.items():
            story.surface.setdefault(term, text)
        if self._vector is not None:
            story.embedding = _summed(story.embedding, self._vector)
        if len(centroid) > MAX_CENTROID_TERMS:
            self._prune(story, keep_norm=story.norm_at >= 0)
        elif story.norm_at < 0:
            story.norm_at = self._docs
        if link is not None:
            known = self._links.get(link)
            if known is None:
                self._links[link] = (story.story_id, item.entry_id, item.source)
                story.links.add(link)
            elif known[2] == item.source:  # two items of one feed: not an article's link
                self._links[link] = (known[0], known[1], "")
        if tkey and tkey not in self._titles:
            self._titles[tkey] = (story.story_id, item.entry_id, item.source)
            story.titles.add(tkey)

    def _merge_converged(self, story: _Story) -> tuple[int, tuple[int, ...]]:
        """Merge ``story`` (which an entry just joined) with the stories the entry
        also matched whose centroids have converged with it; the older survives.
        """
        absorbed: list[int] = []
        current = story
        ranked = sorted(self._last_scored, key=lambda pair: (-pair[0], pair[1].story_id))
        for _, other in ranked[:MERGE_CANDIDATES]:
            if other is current or self._stories.get(other.story_id) is not other:
                continue
            if not _compatible(current.language, other.language):
                continue  # an entry of no language scores against every language's stories
            if self._merge_score(current, other) < self.merge_threshold:
                continue
            older, younger = sorted((current, other), key=lambda s: (s.first_seen, s.story_id))
            self._absorb(older, younger)
            absorbed.append(younger.story_id)
            current = older
        return current.story_id, tuple(absorbed)

    def _second_look(self, item: GroupItem, tf: dict[str, float], min_words: int = 1) -> None:
        """Decide again where an entry belongs, now that its story and the others have
        grown; move it (see ``SECOND_LOOK``) when another story scores higher."""
        entry_id = item.entry_id
        found = self._assignments.get(entry_id)
        if found is None or entry_id in self._originals:
            return  # expired, or a later entry duplicates it
        story = self._stories.get(found[1])
        if story is None or story.size < 2:
            return  # alone: nothing to compare with (merging joins lone entries)
        idf = self._idfs(tf)
        doc, query = _query(tf, idf)
        own = self._score_without(story, query, tf, idf, min_words)
        best: _Story | None = None
        best_score = 0.0
        for other in self._candidates(item, doc):
            if other is story:
                continue
            score = self._score(other, query, item.published_at, min_words)
            if score > best_score or (
                score == best_score and best is not None and other.story_id < best.story_id
            ):
                best, best_score = other, score
        if best is not None and best_score >= self.threshold and best_score > own:
            target = best
        elif own < self.threshold and best_score < self.threshold:
            if entry_id in self._stories or entry_id in self._aliases:
                return  # its id names a story already (it founded this one)
            target = self._new_story(entry_id, item)
        else:
            return
        # the entry's display forms, before taking it out drops those only it had
        surface = {t: story.surface[t] for t in tf if t in story.surface}
        link = canonical_link(item.link)
        tkey = title_key(item.title)
        self._take_out(story, item, tf, idf, link, tkey)
        self._join(target, item, tf, idf, surface, _headline_terms(item.title), link, tkey)
        new_story = target.size == 1
        shared = () if new_story else self._shared_terms(target, tf, idf)
        score = best_score if not new_story else own
        moved = Assignment(entry_id, target.story_id, score, shared, new_story, None)
        self._remember(moved)
        self._moves.append(Move(moved, story.story_id))

    def _take_out(
        self,
        story: _Story,
        item: GroupItem,
        tf: dict[str, float],
        idf: dict[str, float],
        link: str | None,
        tkey: str,
    ) -> None:
        """Remove a member (not the only one) from a story: the reverse of `_join`,
        except that the story's times and feed set are kept."""
        centroid = story.centroid
        changes = []
        for term, value in tf.items():
            mass = centroid.get(term)
            if mass is None:
                continue
            rest = mass - value
            changes.append((rest * rest - mass * mass, idf[term]))
            if rest > 1e-9:
                centroid[term] = rest
            else:
                del centroid[term]
                story.surface.pop(term, None)
                if term[0] != "c":
                    self._unpost(term, story.story_id)
        self._add_mass(story, changes)
        story.size -= 1
        story.entry_ids.remove(item.entry_id)
        story.members = [m for m in story.members if m.entry_id != item.entry_id]
        if link is not None and self._links.get(link, (0, 0, ""))[1] == item.entry_id:
            del self._links[link]
            story.links.discard(link)
        if tkey and self._titles.get(tkey, (0, 0, ""))[1] == item.entry_id:
            del self._titles[tkey]
            story.titles.discard(tkey)

    def _merge_score(self, first: _Story, second: _Story) -> float:
        """How far two stories converged: their centroids' cosine, plus, with the
        embedding stage, EMBED_MERGE_WEIGHT x (the cosine of their summed title
        embeddings - EMBED_MERGE_FLOOR)."""
        score = self._centroid_cosine(first, second)
        if first.embedding is not None and second.embedding is not None:
            cosine = _cosine(_unit(first.embedding), second.embedding)
            score += EMBED_MERGE_WEIGHT * (cosine - EMBED_MERGE_FLOOR)
        return score

    def _centroid_cosine(self, first: _Story, second: _Story) -> float:
        small, large = sorted((first.centroid, second.centroid), key=len)
        dot = 0.0
        for term, mass in small.items():
            other = large.get(term)
            if other is not None:
                dot += mass * other * self._idf(term) ** 2
        return dot / (self._centroid_norm(first) * self._centroid_norm(second))

    def _absorb(self, older: _Story, younger: _Story) -> None:
        """Move every member of ``younger`` into ``older``; ``younger`` becomes an alias."""
        sid, gone = older.story_id, younger.story_id
        centroid = older.centroid
        for term, mass in younger.centroid.items():
            if term[0] != "c":
                self._unpost(term, gone)
                if term not in centroid:
                    self._post(term, sid)
            centroid[term] = centroid.get(term, 0.0) + mass
        for term, text in younger.surface.items():
            older.surface.setdefault(term, text)
        if younger.embedding is not None:
            older.embedding = _summed(older.embedding, younger.embedding)
        members = sorted(older.members + younger.members, key=lambda m: m.published_at)
        older.members = members[-MAX_MEMBERS_KEPT:]
        older.size += younger.size
        older.entry_ids.extend(younger.entry_ids)
        older.sources |= younger.sources
        if older.language is None:
            older.language = younger.language
        older.first_seen = min(older.first_seen, younger.first_seen)
        if younger.last_updated > older.last_updated:
            older.last_updated = younger.last_updated
            heapq.heappush(self._heap, (older.last_updated, sid))
        for link in younger.links:
            self._links[link] = (sid, *self._links[link][1:])
        older.links |= younger.links
        for tkey in younger.titles:
            _, entry, source = self._titles[tkey]
            self._titles[tkey] = (sid, entry, source)
        older.titles |= younger.titles
        for entry_id in younger.entry_ids:
            found = self.explain(entry_id)
            if found is not None:
                self._remember(found._replace(story_id=sid))
        older.aliases |= younger.aliases | {gone}
        for alias in older.aliases:
            self._aliases[alias] = sid
        del self._stories[gone]
        self._merges.append((sid, gone))
        if len(centroid) > MAX_CENTROID_TERMS:
            self._prune(older)
        older.norm_at = -1.0

    def _prune(self, story: _Story, keep_norm: bool = False) -> None:
        """Keep the `PRUNE_TO` heaviest centroid terms. With `keep_norm`, the pruned
        terms' share (current IDF) is taken off the tracked norm, which the periodic
        refresh in `_centroid_norm` then corrects like any other drift; otherwise the
        norm is recomputed at the next score. (A recompute after every prune cost a
        third of the grouping time of a story with hundreds of members.)"""
        # what heapq.nlargest gives (ties in insertion order), a C sort being cheaper
        # than its Python key calls for a few hundred terms
        ranked = sorted(story.centroid.items(), key=itemgetter(1), reverse=True)
        kept = dict(ranked[:PRUNE_TO])
        pruned = ranked[PRUNE_TO:]
        for term, _mass in pruned:
            story.surface.pop(term, None)
            if term[0] != "c":
                self._unpost(term, story.story_id)
        story.centroid = kept
        if keep_norm:
            idf = self._idfs(term for term, _mass in pruned)
            self._add_mass(story, [(-mass * mass, idf[term]) for term, mass in pruned])
        if not keep_norm or self._norm2(story) <= 0.0:
            story.norm_at = -1.0

    def _post(self, term: str, story_id: int) -> None:
        posting = self._postings.get(term)
        if posting is None:
            self._postings[term] = story_id
        elif isinstance(posting, int):
            if posting != story_id:
                self._postings[term] = (posting, story_id)
        elif isinstance(posting, tuple):
            if story_id not in posting:
                if len(posting) < SMALL_POSTING:
                    self._postings[term] = (*posting, story_id)
                else:
                    self._postings[term] = {*posting, story_id}
        else:
            posting.add(story_id)

    def _unpost(self, term: str, story_id: int) -> None:
        posting = self._postings.get(term)
        if posting is None:
            return
        if isinstance(posting, int):
            if posting == story_id:
                del self._postings[term]
        elif isinstance(posting, tuple):
            if story_id in posting:
                rest = tuple(holder for holder in posting if holder != story_id)
                self._postings[term] = rest[0] if len(rest) == 1 else rest
        else:
            posting.discard(story_id)
            if not posting:
                del self._postings[term]

    def _holders(self, term: str) -> set[int]:
        """The active stories holding `term` (for tests and tools)."""
        posting = self._postings.get(term)
        if posting is None:
            return set()
        return {posting} if isinstance(posting, int) else set(posting)

    def _drop(self, story: _Story) -> None:
        del self._stories[story.story_id]
        for term in story.centroid:
            if term[0] != "c":
                self._unpost(term, story.story_id)
        for link in story.links:
            self._links.pop(link, None)
        for tkey in story.titles:
            self._titles.pop(tkey, None)
        for entry_id in story.entry_ids:
            self._assignments.pop(entry_id, None)
            self._originals.discard(entry_id)
        for alias in story.aliases:
            self._aliases.pop(alias, None)

    def _headline(self, story: _Story, idf: dict[str, float]) -> _Member:
        """The member whose title is closest to the centroid (`idf`: the current IDF
        of the centroid's word and bigram terms, all that members' titles hold)."""
        if len(story.members) == 1:
            return story.members[0]  # most stories, and nothing to compare
        norm = self._centroid_norm(story)
        best, best_sim = story.members[0], -1.0
        for member in sorted(story.members, key=lambda m: m.published_at):
            weights = {t: v * (idf[t] if t in idf else self._idf(t)) for t, v in member.tf.items()}
            length = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            dot = sum(w * story.centroid.get(t, 0.0) * idf.get(t, 0.0) for t, w in weights.items())
            sim = dot / (length * norm)
            if sim > best_sim + 1e-12:
                best, best_sim = member, sim
        return best

    def _key_terms(self, story: _Story, idf: dict[str, float]) -> tuple[str, ...]:
        """The story's `KEY_TERMS` terms of highest tf-idf (`idf`: as for `_headline`)."""
        centroid = story.centroid
        ranked = sorted([(-centroid[term] * value, term) for term, value in idf.items()])
        chosen: dict[str, str] = {}  # term: how it is shown
        hidden: set[str] = set()
        for _, term in ranked:
            if term in hidden or (shown := _shown(story.surface, term)) is None:
                continue
            if term[0] == "b":
                parts = {"w:" + p for p in term[2:].split(" ")}
                if any(c in parts for c in chosen):
                    continue
                hidden |= parts
            chosen[term] = shown
            if len(chosen) == KEY_TERMS:
                break
        return tuple(chosen.values())


_BY_WEIGHT_THEN_ID = itemgetter(1, 0)  # a (story id, shared weight) pair's sort key


def _min_shared_words(features: Iterable[str], headline: Iterable[str]) -> int:
    """Word features an entry must share with a story to join it (see
    `SUMMARY_MIN_SHARED_WORDS`), from its ``features`` and its headline's."""
    added = sum([term[0] == "w" for term in features]) - sum([t[0] == "w" for t in headline])
    return SUMMARY_MIN_SHARED_WORDS if added >= SUMMARY_WORDS else 1


def _heaviest(shared: dict[int, float], count: int) -> list[tuple[int, float]]:
    """The (story id, weight) pairs heaviest first (ties: the younger id first), at
    least the ``count`` heaviest and every pair tied with the last of them: a prefix
    of the whole ranking, found by sorting bare floats for the cut (in C, ~4x faster
    than sorting every pair by its key, for the ~800 stories an entry touches)."""
    if len(shared) > count:
        cut = sorted(shared.values(), reverse=True)[count - 1]
        pairs = [pair for pair in shared.items() if pair[1] >= cut]
    else:
        pairs = list(shared.items())
    pairs.sort(key=_BY_WEIGHT_THEN_ID, reverse=True)
    return pairs


def _query(
    tf: dict[str, float], idf: dict[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """An entry's unit tf-idf vector, and that vector weighted by IDF once more: the
    centroid side of the dot product is weighted by IDF as well."""
    weights = {t: v * idf[t] for t, v in tf.items()}
    norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
    doc = {t: w / norm for t, w in weights.items()}
    return doc, {t: w * idf[t] for t, w in doc.items()}


def _summed(total: list[float] | None, vector: Sequence[float]) -> list[float]:
    """A story's embedding sum with `vector` added (started from it when empty)."""
    if total is None:
        return [float(x) for x in vector]
    return [a + b for a, b in zip(total, vector, strict=True)]


def _unit(vector: Sequence[float]) -> list[float]:
    """`vector` scaled to length 1 (unchanged when it is all zeros)."""
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _cosine(vector: Sequence[float], total: Sequence[float]) -> float:
    """Cosine of a unit vector with a (summed, unnormalised) story vector."""
    dot = 0.0
    norm2 = 0.0
    for a, b in zip(vector, total, strict=True):
        dot += a * b
        norm2 += b * b
    return dot / math.sqrt(norm2) if norm2 > 0 else 0.0


def embeds_language(language: str | None) -> bool:
    """Whether the embedding stage embeds an entry in `language` (see
    `EMBED_LANGUAGES`); an entry whose language is unknown is not embedded."""
    return _primary_language(language) in EMBED_LANGUAGES


def _compatible(first: str | None, second: str | None) -> bool:
    """Languages match, ignoring region (``en-GB`` ~ ``en``); None matches anything."""
    if first is None or second is None:
        return True
    return first.split("-")[0].casefold() == second.split("-")[0].casefold()
