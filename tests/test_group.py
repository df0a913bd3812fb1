"""Story grouping: what a reader of the merged feed would notice."""

from __future__ import annotations

import csv
import os
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.group import SUMMARY_TOKENS, GroupItem, StoryIndex, _heaviest, canonical_link

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

GOX = [
    ("Reuters", "Mt. Gox files for U.S. bankruptcy protection"),
    ("BBC", "Bitcoin exchange Mt. Gox seeks US bankruptcy relief"),
    ("Guardian", "MtGox files for Chapter 15 bankruptcy in the US"),
]
UNRELATED = [
    ("AP", "Zac Efron says he is up for a High School Musical reunion"),
    ("Wired", "Google releases developer kit for wearable computers"),
    ("ESPN", "Jaguars unveil plan for world's largest HD video screens"),
]


def item(
    entry_id: int,
    title: str,
    source: str = "feed",
    minutes: float = 0,
    link: str | None = None,
    language: str | None = "en",
) -> GroupItem:
    return GroupItem(
        entry_id=entry_id,
        title=title,
        summary="",
        link=link,
        source=source,
        published_at=T0 + timedelta(minutes=minutes),
        language=language,
    )


def test_same_event_from_three_outlets_is_one_story_with_three_sources() -> None:
    index = StoryIndex()
    got = [index.add(item(i, title, source, i)) for i, (source, title) in enumerate(GOX, 1)]
    assert {a.story_id for a in got} == {1}
    assert got[0].new_story and not got[1].new_story and not got[2].new_story
    label = index.label(1)
    assert label.sources == 3
    assert "gox" in " ".join(got[1].shared_terms).lower()
    assert index.explain(2) == got[1]


def test_unrelated_headlines_are_separate_stories() -> None:
    index = StoryIndex()
    got = [index.add(item(i, t, s, i)) for i, (s, t) in enumerate(GOX[:1] + UNRELATED, 1)]
    assert [a.story_id for a in got] == [1, 2, 3, 4]
    assert all(a.new_story for a in got)
    assert index.active_count == 4


def test_different_languages_are_not_joined_but_unknown_language_is() -> None:
    index = StoryIndex()
    index.add(item(1, GOX[0][1], "Reuters", language="en"))
    german = index.add(item(2, GOX[1][1], "Spiegel", 1, language="de"))
    unknown = index.add(item(3, GOX[2][1], "Blog", 2, language=None))
    assert german.new_story and german.story_id == 2
    assert unknown.story_id in (1, 2) and not unknown.new_story


def test_story_id_is_stable_as_the_story_grows() -> None:
    index = StoryIndex()
    titles = [t for _, t in GOX] + [
        "Mt. Gox bankruptcy filing in US halts lawsuits",
        "Mt. Gox US bankruptcy: what it means for bitcoin owners",
    ]
    ids = [index.add(item(10 + i, t, f"s{i}", i * 30)).story_id for i, t in enumerate(titles)]
    assert ids == [10] * len(titles)
    assert index.members(10) == tuple(range(10, 10 + len(titles)))


def test_expiry_removes_quiet_stories_from_the_active_set() -> None:
    index = StoryIndex(window=timedelta(hours=72))
    index.add(item(1, GOX[0][1], minutes=0))
    index.add(item(2, UNRELATED[0][1], minutes=60 * 48))
    assert index.expire(T0 + timedelta(hours=71)) == 0
    assert index.expire(T0 + timedelta(hours=73)) == 1
    assert index.active_story_ids == (2,)
    assert index.explain(1) is None
    # A late report of the expired event founds a new story.
    late = index.add(item(3, GOX[1][1], "BBC", 60 * 73))
    assert late.new_story and late.story_id == 3


def test_the_vocabulary_is_that_of_the_last_windows_not_of_all_time() -> None:
    """A worker that runs for weeks learns words it will never see again (names,
    typos, most word pairs of summaries); they are forgotten once they have not been
    seen for a window or two, so the index does not grow with the weeks."""
    index = StoryIndex(window=timedelta(hours=72))
    sizes = []
    for hour in range(24 * 21):  # three weeks, one entry an hour, all its words new
        words = " ".join(f"w{hour}x{k}" for k in range(6))
        index.add(item(hour + 1, f"Report {words}", minutes=60 * hour))
        if hour % 24 == 23:
            sizes.append(index.vocabulary_size)
    assert max(sizes[14:]) <= 1.05 * max(sizes[:7])  # the third week's as the first's
    assert max(sizes) < 24 * 4 * 20  # four days' terms at most (about 20 an entry)


def test_same_link_joins_the_story_and_is_marked_duplicate() -> None:
    index = StoryIndex()
    link = "https://www.example.com/news/gox?utm_source=rss#top"
    first = index.add(item(1, GOX[0][1], "Reuters", link=link))
    again = index.add(
        item(2, "Completely different wording", "Aggregator", 5, "http://example.com/news/gox/")
    )
    assert again.story_id == first.story_id
    assert again.duplicate_of == 1
    assert canonical_link(link) == canonical_link("http://example.com/news/gox/")


def test_a_link_that_items_of_one_feed_share_makes_no_duplicates() -> None:
    index = StoryIndex()
    home = "https://podcast.example/"
    first = index.add(item(1, "Episode 61: castles of Wales", "show", link=home))
    second = index.add(item(2, "Episode 62: a history of time travel", "show", 5, home))
    assert first.new_story and second.duplicate_of is None
    # nor, once two of its items carried it, with another feed's entry
    other = index.add(item(3, "Listener mail: our favourite ruins", "fans", 9, home))
    assert other.duplicate_of is None


def test_near_identical_title_from_another_feed_is_duplicate() -> None:
    index = StoryIndex()
    index.add(item(1, "Mt. Gox files for US bankruptcy protection", "Reuters"))
    wire = index.add(item(2, "Mt Gox files for US bankruptcy protection - Yahoo News", "Yahoo", 3))
    assert wire.story_id == 1 and wire.duplicate_of == 1
    own = index.add(item(3, "Google releases wearable SDK", "Wired", 4))
    assert own.duplicate_of is None


def test_label_headline_and_terms_are_sensible() -> None:
    index = StoryIndex()
    titles = [
        "Mt. Gox files for US bankruptcy protection",
        "Mt. Gox seeks US bankruptcy protection",
        "Bitcoin exchange Mt. Gox files for bankruptcy in the US",
        "Mt. Gox bankruptcy: Bitcoin exchange seeks US protection",
    ]
    for i, title in enumerate(titles, 1):
        index.add(item(i, title, f"s{i}", i))
    label = index.label(1)
    assert label.headline in titles
    assert 2 <= len(label.terms) <= 4
    assert any("gox" in term.lower() for term in label.terms)
    assert label.first_seen == T0 + timedelta(minutes=1)
    assert label.last_updated == T0 + timedelta(minutes=4)


def bcubed_f1(gold: list[str], pred: list[int]) -> float:
    joint = Counter(zip(gold, pred, strict=True))
    gsize, psize = Counter(gold), Counter(pred)
    p = sum(c * c / psize[pl] for (_, pl), c in joint.items()) / len(gold)
    r = sum(c * c / gsize[gl] for (gl, _), c in joint.items()) / len(gold)
    return 2 * p * r / (p + r)


def _labelled_headlines() -> list[dict[str, str]]:
    """dev.tsv's rows in bench/grouping.py's replay order (shuffled with seed 0)."""
    shared = os.environ.get("AGGREGATOR_SHARED_DATA")
    if not shared:
        pytest.skip("AGGREGATOR_SHARED_DATA is not set")
    with open(Path(shared) / "stories" / "dev.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    random.Random(0).shuffle(rows)
    return rows


def test_quality_floor_on_labelled_headlines() -> None:
    # Fixed slice: the first 1,200 rows, in the seed-0 replay order, of the held-out
    # half of the stories (bench/grouping.py's split: sorted story ids, seed 1).
    # On that half the default method scores ~0.95; on the whole file ~0.85.
    rows = _labelled_headlines()
    stories = sorted({r["story"] for r in rows})
    random.Random(1).shuffle(stories)
    held_out = set(stories[len(stories) // 2 :])
    rows = [r for r in rows if r["story"] in held_out][:1200]
    index = StoryIndex()
    step = timedelta(hours=48) / len(rows)
    for i, row in enumerate(rows):
        entry = GroupItem(
            int(row["id"]), row["title"], "", row["url"], row["publisher"], T0 + i * step, "en"
        )
        index.add(entry)
    index.look_again(T0 + timedelta(hours=72))  # every entry has had its second look
    # Scored as the store keeps them: merges and moves re-point entries.
    pred = [index.story_of(int(row["id"])) or 0 for row in rows]
    assert bcubed_f1([r["story"] for r in rows], pred) >= 0.85


def test_a_restart_mid_stream_changes_few_stories() -> None:
    """dev.tsv replayed once straight through and once with the index rebuilt from its
    assignments halfway (a worker restart, as `Grouper._warm_start` does it): the
    waiting second looks are queued again (as `grouper._resume_looks` does), and few
    entries end elsewhere: 7 of 3,149 when measured, 62 when the looks were lost."""
    rows = _labelled_headlines()
    step = timedelta(hours=48) / len(rows)
    items = [
        GroupItem(int(r["id"]), r["title"], "", r["url"], r["publisher"], T0 + i * step, "en")
        for i, r in enumerate(rows)
    ]

    def replay(restart_at: int | None) -> list[int | None]:
        index = StoryIndex()
        for i, entry in enumerate(items):
            if i == restart_at:
                rebuilt = StoryIndex()
                for done in items[:i]:
                    rebuilt.add(done, story_id=index.story_of(done.entry_id))
                newest = items[i - 1].published_at
                for done in items[:i]:
                    decided = index.explain(done.entry_id)
                    if decided and done.published_at > newest - timedelta(hours=24):
                        rebuilt.resume_look(done, decided.score)
                index = rebuilt
            index.add(entry)
        index.look_again(T0 + timedelta(hours=72))
        return [index.story_of(entry.entry_id) for entry in items]

    straight, restarted = replay(None), replay(len(items) // 2)
    moved = sum(a != b for a, b in zip(straight, restarted, strict=True))
    assert moved <= len(items) // 100, moved


def test_converging_stories_merge_into_the_older_one() -> None:
    titles = [
        "Danube floods force evacuations in Vienna",
        "Heavy rain swells rivers across Bavaria",
        "Danube floods in Vienna as heavy rain swells rivers across Bavaria",
    ]
    index = StoryIndex(merge_threshold=0.05)
    got = [index.add(item(i, t, f"s{i}", i)) for i, t in enumerate(titles, 1)]
    assert [a.story_id for a in got[:2]] == [1, 2]
    assert got[2].story_id == 1 and got[2].merged == (2,)
    assert index.drain_merges() == [(1, 2)] and index.drain_merges() == []
    assert index.resolve(2) == 1 and index.story_of(2) == 1
    assert index.members(1) == (1, 2, 3) and index.active_story_ids == (1,)
    label = index.label(2)  # an alias still names the survivor while it is active
    assert label.sources == 3 and label.language == "en"
    assert label.headline == titles[label.headline_entry_id - 1]  # type: ignore[operator]
    # Merging off (threshold 0): the same stream keeps two stories.
    plain = StoryIndex(merge_threshold=0.0)
    assert {plain.add(item(i, t, f"s{i}", i)).story_id for i, t in enumerate(titles, 1)} == {1, 2}


def test_embedding_stage_lifts_paraphrases_and_separates_unrelated_meanings() -> None:
    from aggregator.group import EMBED_FLOOR, EMBED_WEIGHT

    first = "Danube floods force evacuations in Vienna"
    second = "Vienna residents flee rising river"

    def run(embedder: object) -> tuple[int, float]:
        index = StoryIndex(embedder=embedder)  # type: ignore[arg-type]
        index.add(item(1, first, "s1"))
        got = index.add(item(2, second, "s2", 1))
        return got.story_id, got.score

    plain_story, plain_score = run(None)
    assert plain_story == 1  # the words alone (only "Vienna" shared) are enough here
    # Embeddings saying "same meaning" add weight x (1 - floor) to the word score.
    same_story, same_score = run(lambda title: (0.6, 0.8))
    assert same_story == 1
    assert same_score == pytest.approx(plain_score + EMBED_WEIGHT * (1 - EMBED_FLOOR))
    # Embeddings saying "unrelated" (orthogonal) keep the second headline apart.
    orthogonal = {first: (1.0, 0.0), second: (0.0, 1.0)}
    apart_story, _ = run(orthogonal.__getitem__)
    assert apart_story == 2


def test_embedded_entries_take_the_stages_floor_and_the_others_the_given_one() -> None:
    from aggregator.group import EMBED_MIN_COSINE, MIN_COSINE

    assert StoryIndex().min_cosine == MIN_COSINE
    assert StoryIndex(min_cosine=0.05).min_cosine == 0.05
    assert EMBED_MIN_COSINE < MIN_COSINE
    # With the stage, the given floor (the config's group_min_cosine) is the one of the
    # entries it does not embed; an English entry is scored with the stage's floor.
    headlines = ["Danube floods force evacuations in Vienna", "Vienna residents flee river"]

    def second_joins(language: str) -> bool:
        index = StoryIndex(embedder=lambda title: (1.0, 0.0), min_cosine=0.9)
        index.add(item(1, headlines[0], "s1", language=language))
        return not index.add(item(2, headlines[1], "s2", 1, language=language)).new_story

    assert second_joins("en") and not second_joins("de")


def test_embedded_entries_keep_the_whole_size_bonus_for_one_shared_word() -> None:
    from aggregator.group import EMBED_ONE_WORD_BONUS_SHARE, ONE_WORD_BONUS_SHARE

    assert ONE_WORD_BONUS_SHARE < EMBED_ONE_WORD_BONUS_SHARE == 1.0
    # A story of three grows by an entry sharing one word ("Sbarro") with it: its score
    # is the cosine times (1 + bonus), the bonus cut to ONE_WORD_BONUS_SHARE of itself
    # unless the entry is embedded. The embedding adds EMBED_WEIGHT x (1 - EMBED_FLOOR)
    # on top, the same for both languages' stories here (every title "means the same").
    story = ["Sbarro pizza chain files for bankruptcy"] * 3
    joining = "Sbarro closes"

    def score(language: str) -> float:
        index = StoryIndex(embedder=lambda title: (1.0, 0.0))
        for n, title in enumerate(story, 1):
            index.add(item(n, title, f"s{n}", n, language=language))
        return index.add(item(9, joining, "s9", 9, language=language)).score

    plain = StoryIndex()
    for n, title in enumerate(story, 1):
        plain.add(item(n, title, f"s{n}", n, language="de"))
    assert score("de") == pytest.approx(plain.add(item(9, joining, "s9", 9, language="de")).score)
    assert score("en") > score("de")


def test_default_grouping_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, aggregator.group, aggregator.grouper, aggregator.embed; "
        "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_title_embedder_batches_and_caches() -> None:
    from aggregator.embed import TitleEmbedder

    calls: list[list[str]] = []
    options: list[dict[str, object]] = []

    class Model:
        def encode(self, titles: list[str], **kwargs: object) -> list[list[float]]:
            calls.append(list(titles))
            options.append(kwargs)
            return [[float(len(t)), 1.0] for t in titles]

    embed = TitleEmbedder(Model())
    embed.prime(["a", "bb", "a"])
    assert calls == [["a", "bb"]]
    # unit vectors, and no progress bar per batch in the worker's log
    assert options[0]["normalize_embeddings"] is True
    assert options[0]["show_progress_bar"] is False
    assert embed("bb") == (2.0, 1.0) and calls == [["a", "bb"]]  # cached, no model call
    assert embed("ccc") == (3.0, 1.0) and calls[-1] == ["ccc"]


def test_only_a_summarys_lede_counts() -> None:
    """Summaries help through their first words; a long tail (boilerplate, or a
    different topic further down) neither joins stories nor costs per-word work."""
    tail = " ".join(["volcanic eruption ashcloud grounds flights across northern europe"] * 20)

    def lede(tag: str) -> str:
        return " ".join(f"{tag}{i}" for i in range(SUMMARY_TOKENS))

    index = StoryIndex()
    first = item(1, "Harbour strike halts container traffic", "A")
    second = item(2, "Quarterly earnings beat forecasts", "B", minutes=5)
    index.add(replace(first, summary=f"{lede('alpha')} {tail}"))
    assert index.add(replace(second, summary=f"{lede('beta')} {tail}")).new_story
    third = item(3, "Quarterly earnings beat forecasts", "C", minutes=6)
    assert index.add(replace(third, summary=f"{tail}")).story_id == 2  # the title decides


def test_grouped_entries_leave_little_for_the_garbage_collector_to_walk() -> None:
    # A worker's index holds every active entry's assignment; full collections walking
    # tens of thousands of them cost 0.1 s in the middle of the next poll.
    import gc

    index = StoryIndex()
    gc.collect()
    before = len(gc.get_objects())
    for n in range(3000):
        headline = f"Storm {['Ana', 'Bo', 'Cy'][n % 3]} floods the coast, {n} homes evacuated"
        index.add(item(n + 1, headline, source=f"feed{n % 40}", minutes=n / 10))
    gc.collect()
    assert index.story_of(3000) is not None and index.explain(3000) is not None
    assert len(gc.get_objects()) - before < 1500  # members kept for labels: <= 200 a story


def test_one_shared_word_earns_a_big_story_only_part_of_its_size_bonus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import math

    import aggregator.group

    story = [f"Storm Ana floods the coast near town {n}" for n in range(20)]

    def scores() -> tuple[float, float]:
        index = StoryIndex(threshold=10.0)  # nothing joins: each score is the best found
        for n, title in enumerate(story, 1):
            index.add(item(n, title, source=f"feed{n}", minutes=n), story_id=1)
        one = index.add(item(100, "The coast", minutes=30)).score
        two = index.add(item(101, "Storm Ana: what we know", minutes=30)).score
        return one, two

    one_half, two_words = scores()
    monkeypatch.setattr(aggregator.group, "ONE_WORD_BONUS_SHARE", 1.0)
    one_full, two_full = scores()
    size_bonus = aggregator.group.SIZE_BONUS * math.log(20)
    assert one_full > 0
    assert one_half == pytest.approx(one_full * (1 + size_bonus / 2) / (1 + size_bonus))
    assert two_words == two_full > 0


IOS = [
    "Apple releases iOS 7.1 update for iPhone",
    "Apple shares fall on weak China sales",  # joins on "apple" while the story is one entry
    "iOS 7.1 update fixes iPhone bugs",
    "iOS 7.1 brings CarPlay to iPhone and iPad",
    "iOS 7.1 update: what's new for iPhone",
    "Download iOS 7.1 now: iPhone update is out",
    "iOS 7.1 update speeds up older iPhones",
]


def test_second_look_takes_an_early_wrong_join_out_of_the_story() -> None:
    index = StoryIndex()
    got = [index.add(item(i, t, f"s{i}", 10 * i)) for i, t in enumerate(IOS, 1)]
    assert {a.story_id for a in got} == {1}  # on arrival the shares headline joined
    assert got[1].shared_terms == ("apple",)
    index.look_again(T0 + timedelta(hours=23))
    assert index.drain_moves() == [] and index.story_of(2) == 1  # not due yet

    index.look_again(T0 + timedelta(hours=25))
    # A day later the story is about iOS 7.1; without the shares headline, its score
    # against the story is below the threshold and no other story takes it: it leaves
    # to a story of its own, named by its entry id. The true members stay.
    (move,) = index.drain_moves()
    assert move.left == 1 and move.assignment.story_id == 2 and move.assignment.new_story
    assert index.story_of(2) == 2 and index.members(2) == (2,)
    assert index.members(1) == (1, 3, 4, 5, 6, 7)
    assert index.explain(2) == move.assignment
    assert index.label(1).headline != IOS[1] and index.label(2).headline == IOS[1]
    assert "apple" not in " ".join(index.label(1).terms).lower()
    assert index.label(2).terms == ("apple shares", "china sales", "fall weak")  # its own
    # Each entry is looked at once; later entries still join the right stories.
    index.look_again(T0 + timedelta(hours=48))
    assert index.drain_moves() == []
    later = index.add(item(8, "iOS 7.1 update for iPhone brings CarPlay", "s8", 26 * 60))
    assert later.story_id == 1


def test_second_look_is_off_when_disabled_and_leaves_founders_and_duplicates() -> None:
    plain = StoryIndex(second_look=None)
    for i, t in enumerate(IOS, 1):
        plain.add(item(i, t, f"s{i}", 10 * i))
    plain.expire(T0 + timedelta(hours=30))
    assert plain.drain_moves() == [] and plain.story_of(2) == 1

    # The same shares headline as a link duplicate of the founder is never moved.
    index = StoryIndex()
    index.add(item(1, IOS[0], "s1", 0, link="https://example.com/a"))
    index.add(item(2, IOS[1], "s2", 10, link="https://example.com/a"))
    for i, t in enumerate(IOS[2:], 3):
        index.add(item(i, t, f"s{i}", 10 * i))
    index.expire(T0 + timedelta(hours=30))  # expire gives due entries their look too
    assert index.drain_moves() == [] and index.story_of(2) == 1


def test_a_rebuilt_index_gives_the_looks_that_were_still_waiting() -> None:
    items = [item(i, t, f"s{i}", 10 * i) for i, t in enumerate(IOS, 1)]
    running = StoryIndex()
    for entry in items:
        running.add(entry)

    # A worker restart: the index is rebuilt from the stored assignments (a replay
    # makes no decision, so it queues no look) and the waiting looks are queued again.
    rebuilt = StoryIndex()
    for entry in items:
        rebuilt.add(entry, story_id=1)
    stored = [running.explain(entry.entry_id) for entry in items]
    scores = {a.entry_id: a.score for a in stored if a is not None}
    queued = [e.entry_id for e in items if rebuilt.resume_look(e, scores[e.entry_id])]
    assert queued == [i for i, score in scores.items() if score < 0.3]
    assert queued[:2] == [1, 2]  # the founder and the weak join among them

    # A day later both make the same move: the shares headline leaves the iOS story.
    for index in (running, rebuilt):
        index.look_again(T0 + timedelta(hours=25))
        (move,) = index.drain_moves()
        assert move.left == 1 and move.assignment.story_id == 2
        assert index.members(1) == (1, 3, 4, 5, 6, 7)
        index.look_again(T0 + timedelta(hours=48))
        assert index.drain_moves() == []
    assert not StoryIndex(second_look=None).resume_look(item(9, IOS[1]), 0.1)


UNRELATED_FRENCH = (  # three events; in common only articles and prepositions
    (
        "Le président de la République visite les usines de Renault à Flins",
        "Le chef de l'État a rencontré les ouvriers de l'usine dans la matinée",
    ),
    (
        "Les agriculteurs de la Beauce manifestent contre la sécheresse",
        "Des centaines de tracteurs ont bloqué les routes de la région pendant la journée",
    ),
    (
        "Le musée du Louvre ferme une aile pour des travaux de la toiture",
        "La direction du musée a annoncé que les visiteurs pourront revenir dans un mois",
    ),
)


@pytest.mark.parametrize("language", ["fr", "fr-FR", None])
def test_function_words_of_other_languages_do_not_make_a_story(language: str | None) -> None:
    # "de la", "les"... are rare in a mostly English stream, so their IDF is high: they
    # used to join all three (score 0.19, shared terms "de", "la", "les", "de la").
    # They are left out by the declared language, or by the function words an entry
    # holds when it declares none.
    index = StoryIndex()
    for i, (title, summary) in enumerate(UNRELATED_FRENCH, 1):
        entry = GroupItem(i, title, summary, None, f"s{i}", T0 + timedelta(minutes=i), language)
        assert index.add(entry).new_story
    # The same event told by two outlets still makes one story.
    fire = "Incendie à Marseille : des centaines d'habitants évacués de leurs immeubles"
    again = "Marseille : un incendie force l'évacuation de centaines d'habitants"
    first = index.add(GroupItem(10, fire, "", None, "s10", T0 + timedelta(hours=1), language))
    second = index.add(GroupItem(11, again, "", None, "s11", T0 + timedelta(hours=2), language))
    assert second.story_id == first.story_id == 10
    assert {"marseille", "incendie"} <= set(second.shared_terms)


def test_web_addresses_in_a_summary_are_not_words() -> None:
    # Two newsletters on one platform: in common only the words of their links.
    from aggregator.group import _tokens

    index = StoryIndex()
    for i, (title, topic) in enumerate((("Tuesday picks", "kernel"), ("Reading list", "bread"))):
        summary = f"This week: https://www.letters.example.com/p/{topic}-notes"
        got = index.add(GroupItem(i, title, summary, None, f"s{i}", T0, "en"))
        assert got.new_story, got
    assert _tokens("see https://lwn.net/Articles/1 or www.lwn.net now") == ["see", "or", "now"]


def test_an_entry_of_no_language_joins_only_a_story_of_its_own_language() -> None:
    # heise's feed declares no language: its German headline shared "Microsoft" and
    # "cloud" with an English story and joined it, since no language matched any
    index = StoryIndex()
    english = (
        "Microsoft public cloud Azure grows as companies move planning to the cloud",
        "Companies move their planning to Microsoft's public cloud, Azure revenue grows",
    )
    story = index.add(GroupItem(1, english[0], "", None, "s1", T0, "en")).story_id
    assert index.add(GroupItem(2, english[1], "", None, "s2", T0, "en-US")).story_id == story
    german = GroupItem(
        3,
        "Madeira: Unternehmensplanung aus Microsofts Public Cloud",
        "Die Unternehmensplanung wandert in die Public Cloud von Microsoft, und die Firmen"
        " sparen sich damit eigene Server",
        None,
        "heise",
        T0 + timedelta(minutes=5),
        None,
    )
    assert index.add(german).new_story
    assert index.label(3).language == "de"
    again = "Microsoft public cloud: companies move planning to Azure as revenue grows"
    undeclared_english = GroupItem(4, again, "", None, "s4", T0 + timedelta(minutes=9), None)
    assert index.add(undeclared_english).story_id == story


def _fold_whole_text(text: str) -> list[str]:
    """The tokenizer's folding done on the whole text at once (the reference)."""
    import unicodedata

    from aggregator.group import _TOKEN

    folded = unicodedata.normalize("NFKD", text.replace("’", "'")).casefold()
    return _TOKEN.findall("".join(ch for ch in folded if not unicodedata.combining(ch)))


@pytest.mark.parametrize(
    "text",
    [
        "Café owner’s crème brûlée wins — again",
        "Naïve ﬁnance: Ⅻ ① ½ ＦＵＬＬ width",
        "a \u0301b e\u0301 \u0301 double  space\u00a0nbsp",
        "Straße İstanbul ΣΊΣΥΦΟΣ Ångström",
        "",
    ],
)
def test_tokens_fold_accents_word_by_word_as_the_whole_text_would(text: str) -> None:
    from aggregator.group import _tokens

    assert _tokens(text) == _fold_whole_text(text)


def test_pruning_a_big_storys_centroid_keeps_its_norm_exact() -> None:
    # Hundreds of distinct words push the centroid over MAX_CENTROID_TERMS again and
    # again; each prune takes the pruned terms off the tracked norm instead of
    # leaving it to a full recompute.
    from aggregator.group import MAX_CENTROID_TERMS, PRUNE_TO

    rng = random.Random(3)
    vocabulary = [f"word{n}" for n in range(3000)]
    index = StoryIndex(threshold=0.0, min_cosine=0.0)
    for n in range(400):
        words = " ".join(rng.sample(vocabulary, 8))
        index.add(item(n, f"Storm hits coast {words}", source=f"s{n % 7}", minutes=n))
    (story,) = index._stories.values()
    assert story.size == 400
    assert PRUNE_TO <= len(story.centroid) <= MAX_CENTROID_TERMS

    def exact() -> float:
        idf = index._idfs(story.centroid)
        return sum((mass * idf[term]) ** 2 for term, mass in story.centroid.items())

    story.norm_at = -1.0
    assert index._norm2(story) == pytest.approx(exact(), rel=1e-9)  # recomputed
    recomputed_at = story.norm_at
    for n in range(400, 420):  # grow it past the bound without a norm refresh
        story.centroid[f"c:x{n}"] = 1e-6
    index._prune(story, keep_norm=True)
    assert len(story.centroid) == PRUNE_TO
    assert story.norm_at == recomputed_at  # still tracked, not left to a recompute
    assert index._norm2(story) == pytest.approx(exact(), rel=1e-6)


def test_a_storys_norm_follows_the_growing_stream_without_a_recompute() -> None:
    # IDF = ln(docs + prior) - ln(df + 0.5): as unrelated entries arrive, every
    # term's IDF rises; the story's norm must follow at once (a stale norm made
    # early decisions of a cold stream worse), not only at the next full recompute.
    from aggregator.group import NORM_REFRESH_GROWTH

    index = StoryIndex(threshold=0.0, min_cosine=0.0)
    for n in range(100):  # a stream already under way
        index.add(item(1000 + n, f"Parliament votes budget{n} plan", source="c"))
    index.add(item(0, "Storm hits the northern coast overnight", source="a"))
    index.add(item(1, "Storm hits northern coast, thousands without power", source="b"))
    (story,) = (s for s in index._stories.values() if s.story_id == 0)
    assert story.size == 2
    story.norm_at = -1.0
    before = index._norm2(story)  # recomputed now
    recomputed_at = story.norm_at
    unrelated = 0
    while index._docs + 1 <= recomputed_at * NORM_REFRESH_GROWTH:
        unrelated += 1
        index.add(item(2000 + unrelated, f"Parliament votes budget{unrelated} plan", source="c"))
    assert unrelated >= 10 and story.norm_at == recomputed_at
    idf = index._idfs(story.centroid)
    exact = sum((mass * idf[term]) ** 2 for term, mass in story.centroid.items())
    assert index._norm2(story) == pytest.approx(exact, rel=1e-9)
    assert index._norm2(story) > before  # every IDF rose


def test_an_entry_is_scored_against_a_bounded_number_of_stories() -> None:
    from aggregator.group import MAX_CANDIDATES

    # Hundreds of active stories each share a common word with the new headline (as
    # summaries make most stories do): only the best-sharing few are scored, and the
    # story of the same event is among them.
    rng = random.Random(7)
    index = StoryIndex()
    for n in range(3 * MAX_CANDIDATES):
        words = ["".join(rng.choices("bcdfgklmnprstvz", k=8)) for _ in range(4)]
        index.add(item(n + 1, f"Government {' '.join(words)}", f"outlet{n}"))
    target = index.add(item(1000, "Gox exchange collapses as Government report on Gox", "A"))
    scored = []
    original = index._score
    index._score = lambda story, *rest: scored.append(story.story_id) or original(story, *rest)  # type: ignore[method-assign]

    joined = index.add(item(1001, "Gox exchange collapse: Government report", "B"))

    assert joined.story_id == target.story_id
    assert 0 < len(scored) <= MAX_CANDIDATES
    assert len(index._holders("w:government")) > 2 * MAX_CANDIDATES  # all share a word


def test_the_cut_of_the_heaviest_stories_is_a_prefix_of_the_whole_ranking() -> None:
    # candidates are the heaviest stories an entry shares terms with; the cut must not
    # drop a story tied with the last one kept, nor reorder anything
    rng = random.Random(7)
    shared = {story_id: float(rng.randrange(30)) for story_id in rng.sample(range(5000), 800)}
    whole = sorted(shared.items(), key=lambda pair: (pair[1], pair[0]), reverse=True)
    for count in (1, 10, 64, 799, 800, 900):
        cut = _heaviest(shared, count)
        assert cut == whole[: len(cut)]
        assert len(cut) >= min(count, len(shared))
        assert len(cut) == len(shared) or cut[-1][1] > whole[len(cut)][1]  # ties all in


def test_a_bigram_is_shown_as_its_two_words_in_key_and_shared_terms() -> None:
    # a bigram keeps no text of its own: it is shown as its two words are
    index = StoryIndex()
    titles = [
        "Charles Plosser sees high bar for taper change",
        "Fed's Charles Plosser: taper pace may be too slow",
        "Charles Plosser says weather hit jobs, taper should go on",
    ]
    got = [index.add(item(i, title, f"s{i}", i)) for i, title in enumerate(titles, 1)]
    assert {a.story_id for a in got} == {1}
    assert index.label(1).terms[0] == "charles plosser"  # hiding "charles", "plosser"
    assert "charles plosser" in got[2].shared_terms
    assert "feds charles" in index.label(1).terms  # the apostrophe dropped, as for words


SHADOW_VOLCANO = (
    "Buried alive in the shadow of a Kyushu volcano",
    "\u201cIs the temperature alright for you ma\u2019am?\u201d my Japanese attendant asks in "
    "a polished U.S. accent as he cheerfully heaps another pile of hot sand ...",
)
SHADOW_DRIVE = (
    "Interview: Shadow and a world where 5 companies own all data",
    "Shadow, famous for their high-end cloud PC product, is building a collaboration "
    "platform on top of Nextcloud. They aim to release their Shadow Drive to early access "
    "users this month, and interviewed our CEO Frank Karlitschek to discuss why Nextcloud "
    "and Shadow Drive fit together.",
)
SHADOW_DRIVE_AGAIN = (
    "Nextcloud and Shadow team up on Shadow Drive",
    "The cloud PC maker Shadow builds its Shadow Drive storage on Nextcloud, with early "
    "access this month.",
)


def test_an_entry_whose_summary_adds_words_needs_two_shared_words_to_join() -> None:
    """The only story of several feeds that a first poll of the real-world corpus made:
    Japan Times's volcano travelogue joined Nextcloud's interview on "shadow" alone and
    was the digest's top story. Entries with summaries bring some forty words; two
    reports of one event share more than one."""
    index = StoryIndex()
    first = index.add(replace(item(1, SHADOW_VOLCANO[0], "japantimes"), summary=SHADOW_VOLCANO[1]))
    second = index.add(replace(item(2, SHADOW_DRIVE[0], "nextcloud", 5), summary=SHADOW_DRIVE[1]))
    assert first.new_story and second.new_story
    third = index.add(
        replace(item(3, SHADOW_DRIVE_AGAIN[0], "heise", 10), summary=SHADOW_DRIVE_AGAIN[1])
    )
    assert third.story_id == 2 and len(third.shared_terms) >= 2
    # headlines alone keep joining on one strong word, as dev.tsv needs, and so does
    # an entry whose summary only repeats its headline
    index = StoryIndex()
    index.add(item(1, "Snowden speaks at SXSW", "a"))
    assert index.add(item(2, "Watch: Snowden live", "b", 5)).story_id == 1
    repeated = replace(item(3, "Snowden, live", "c", 6), summary="Snowden, live.")
    assert index.add(repeated).story_id == 1


def test_embedding_stage_merges_stories_whose_headlines_mean_the_same() -> None:
    titles = [
        "Danube floods force evacuations in Vienna",
        "Heavy rain swells rivers across Bavaria",
        "Danube floods in Vienna as heavy rain swells rivers across Bavaria",
    ]
    stream = [item(i, t, f"s{i}", i) for i, t in enumerate(titles, 1)]
    # Without the stage, the words alone make the third entry merge the two stories.
    plain = StoryIndex()
    assert [plain.add(entry).merged for entry in stream] == [(), (), (2,)]
    # Embeddings that agree merge them too (the stage used to turn merging off) ...
    agreeing = StoryIndex(embedder=lambda title: (1.0, 0.0))
    got = [agreeing.add(entry) for entry in stream]
    assert got[2].story_id == 1 and got[2].merged == (2,)
    assert agreeing.members(1) == (1, 2, 3)
    # ... and embeddings saying the first two headlines mean different things keep
    # the stories apart, though their words converged as much.
    meanings = {titles[0]: (1.0, 0.0), titles[1]: (0.0, 1.0), titles[2]: (0.6, 0.8)}
    apart = StoryIndex(embedder=meanings.__getitem__)
    got = [apart.add(entry) for entry in stream]
    assert got[2].story_id == 2 and got[2].merged == ()
    assert set(apart.active_story_ids) == {1, 2}


def test_embedding_stage_embeds_only_the_models_language() -> None:
    """The bundled model reads English: other languages' titles are grouped as without
    the stage (its floor and one-word share too), and never sent to the model."""
    from aggregator.group import embeds_language

    assert embeds_language("en") and embeds_language("en-GB") and embeds_language("EN_us")
    assert not embeds_language("fr") and not embeds_language(None)
    embedded: list[str] = []

    def embedder(title: str) -> tuple[float, ...]:
        embedded.append(title)
        return (1.0, 0.0)  # every title "means the same": would join anything it could

    french = [
        "Grève à la SNCF : trafic très perturbé mardi",
        "Nouvelle grève à la SNCF, le trafic perturbé",
        "Le musée du Louvre rouvre ses salles",
    ]
    stream = [item(i, t, f"s{i}", i, language="fr") for i, t in enumerate(french, 1)]
    plain, staged = StoryIndex(), StoryIndex(embedder=embedder)
    assert [staged.add(e) for e in stream] == [plain.add(e) for e in stream]
    assert embedded == []
    # An English entry in the same index is embedded.
    staged.add(item(4, "Rail strike disrupts French trains", "s4", 4))
    assert embedded == ["Rail strike disrupts French trains"]
