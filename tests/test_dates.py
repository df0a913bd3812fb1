"""RFC 822 dates with other languages' day and month names (`aggregator.dates`)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

import feedparser
import pytest

from aggregator.dates import localised_rfc822
from aggregator.parse import parse_feed

FETCHED = datetime(2030, 1, 1, tzinfo=UTC)


def _utc(text: str) -> datetime | None:
    parsed = localised_rfc822(text)
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Seg, 24 Set 2018 19:42:40 -0300", datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)),
        ("mer, 16 nov 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC)),
        ("mar, 16 nov 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC)),
        ("sáb, 3 dic 2022 10:00:00 GMT", datetime(2022, 12, 3, 10, 0, tzinfo=UTC)),
        ("Di, 24. März 2014 10:00:00 +0100", datetime(2014, 3, 24, 9, 0, tzinfo=UTC)),
        ("jeu., 5 févr. 2015 08:30:00 +0100", datetime(2015, 2, 5, 7, 30, tzinfo=UTC)),
        ("wo, 1 mei 2019 12:00:00 +0200", datetime(2019, 5, 1, 10, 0, tzinfo=UTC)),
        ("tis, 7 okt 2025 06:00:00 +0000", datetime(2025, 10, 7, 6, 0, tzinfo=UTC)),
        ("24 Out 2018 19:42:40 -0300", datetime(2018, 10, 24, 22, 42, 40, tzinfo=UTC)),
        ("Mon, 24 Dez 2018 10:00 +0000", datetime(2018, 12, 24, 10, 0, tzinfo=UTC)),
        ("martes, 16 marzo 2022 10:00:00 +0100", datetime(2022, 3, 16, 9, 0, tzinfo=UTC)),
    ],
)
def test_names_in_other_languages_are_read(text: str, expected: datetime) -> None:
    assert _utc(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Mon, 24 Sep 2018 19:42:40 -0300",  # English: feedparser's own handlers decide
        "24 Sep 2018 19:42:40 GMT",
        "16 marzo 2022 10:00:00 +0100",  # "mar...": feedparser reads it already
        "2018-09-24T19:42:40Z",
        "Sep 24 2018",
        "Seg, 24 Foo 2018 19:42:40 -0300",  # no month name
        "yesterday",
        "",
    ],
)
def test_other_text_is_left_to_feedparser(text: str) -> None:
    assert localised_rfc822(text) is None


def test_english_dates_read_as_before() -> None:
    text = "Mon, 24 Sep 2018 19:42:40 -0300"
    assert feedparser.datetimes._parse_date(text)[:6] == (2018, 9, 24, 22, 42, 40)


RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Noticias</title><link>https://n.example/</link>
<item><title>Um</title><link>https://n.example/1</link>
<pubDate>Seg, 24 Set 2018 19:42:40 -0300</pubDate></item>
<item><title>Due</title><link>https://n.example/2</link>
<pubDate>mer, 16 nov 2022 00:38:15 +0100</pubDate></item>
</channel></rss>"""


@pytest.mark.parametrize("fast", [True, False])
def test_both_parse_paths_date_such_entries(fast: bool) -> None:
    """Before, these entries had no date and took the time they were first seen."""
    feed = parse_feed(RSS, url="https://n.example/feed", fetched_at=FETCHED, fast=fast)
    assert [e.published_at for e in feed.entries] == [
        datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC),
        datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC),
    ]
