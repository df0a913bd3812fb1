"""Numbers for the small inline SVG charts: a story's timeline (entries per hour) and a
source's sparkline (entries per day). Templates draw them; everything here is
arithmetic on numbers, so nothing from a feed ever reaches an SVG attribute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from aggregator.wording import counted

TIMELINE_MAX_BARS = 48
CHART_HEIGHT = 40
BAR_WIDTH = 8
SPARK_WIDTH = 84
SPARK_HEIGHT = 18


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    count: int
    start: datetime


@dataclass(frozen=True)
class Timeline:
    bars: tuple[Bar, ...]
    width: int
    height: int
    hours_per_bar: int
    start: datetime
    end: datetime
    peak: int

    @property
    def description(self) -> str:
        unit = "hour" if self.hours_per_bar == 1 else f"{self.hours_per_bar} hours"
        total = sum(bar.count for bar in self.bars)
        return f"{counted(total, 'entry', 'entries')}, at most {self.peak} per {unit}"


def timeline(times: Sequence[datetime], max_bars: int = TIMELINE_MAX_BARS) -> Timeline | None:
    """Entries per hour from the first to the last time; wider bars for long stories."""
    if not times:
        return None
    start = min(times).replace(minute=0, second=0, microsecond=0)
    hours = int((max(times) - start).total_seconds() // 3600) + 1
    per_bar = max(1, math.ceil(hours / max_bars))
    counts = [0] * math.ceil(hours / per_bar)
    for when in times:
        counts[int((when - start).total_seconds() // 3600) // per_bar] += 1
    peak = max(counts)
    bars = []
    for index, count in enumerate(counts):
        height = round(count / peak * (CHART_HEIGHT - 2)) if count else 0
        bars.append(
            Bar(
                x=index * (BAR_WIDTH + 2),
                y=CHART_HEIGHT - height,
                width=BAR_WIDTH,
                height=height,
                count=count,
                start=start + timedelta(hours=index * per_bar),
            )
        )
    end = start + timedelta(hours=len(counts) * per_bar)
    width = max(len(counts) * (BAR_WIDTH + 2), 20)
    return Timeline(tuple(bars), width, CHART_HEIGHT, per_bar, start, end, peak)


@dataclass(frozen=True)
class Sparkline:
    points: str  # SVG polyline points
    width: int
    height: int
    total: int
    days: int


def sparkline(counts: Mapping[date, int], today: date, days: int = 14) -> Sparkline:
    """A polyline of entries per day over the `days` days up to `today`."""
    values = [counts.get(today - timedelta(days=days - 1 - i), 0) for i in range(days)]
    peak = max(values) or 1
    step = SPARK_WIDTH / (days - 1)
    points = " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - 1 - value / peak * (SPARK_HEIGHT - 2):.1f}"
        for i, value in enumerate(values)
    )
    return Sparkline(points, SPARK_WIDTH, SPARK_HEIGHT, sum(values), days)
