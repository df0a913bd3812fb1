"""`/metrics` in the Prometheus text exposition format (version 0.0.4).

Workers record their last poll's duration and feed count with their heartbeat; only
live workers (`models.WorkerBeat.alive`) are counted and shown. The newest heartbeat's
time and age show liveness, the newest fetch time whether polling moves.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app

from aggregator.models import HEARTBEAT_TICKS, WorkerBeat
from aggregator.store import Store


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]
    return lines


def _worker_label(beat: WorkerBeat) -> str:
    return f'{{worker="{_escape(beat.name)}"}}'


def metrics_text(store: Store, now: datetime) -> str:
    totals = store.get_metrics()
    beats = store.get_workers()
    tick = max(((beat.last_tick_at, beat.tick_seconds) for beat in beats), default=None)
    # only live workers: every process that ever ran left a heartbeat (the worker's
    # hourly job forgets those a day old), and a dead one's series would never change
    alive = [beat for beat in beats if beat.alive(now)]
    cache = current_app.extensions["response_cache"]
    by_status = sorted(totals["feeds_by_status"].items())
    lines = [
        *_metric("aggregator_feeds", "gauge", "Feeds in the store.", [("", totals["feeds"])]),
        *_metric(
            "aggregator_feeds_broken",
            "gauge",
            "Feeds whose last fetches failed (error count above 0).",
            [("", totals["broken_feeds"])],
        ),
        *_metric(
            "aggregator_feeds_disabled",
            "gauge",
            "Feeds disabled by the service (e.g. HTTP 410).",
            [("", totals["disabled_feeds"])],
        ),
        *_metric(
            "aggregator_feeds_by_status",
            "gauge",
            "Feeds by the outcome of their last fetch.",
            [(f'{{status="{_escape(status)}"}}', count) for status, count in by_status],
        ),
        *_metric("aggregator_entries", "gauge", "Entries stored.", [("", totals["entries"])]),
        *_metric(
            "aggregator_entries_ungrouped",
            "gauge",
            "Entries stored and not yet grouped into stories (rising: no worker is grouping).",
            [("", totals["ungrouped_entries"])],
        ),
        *_metric(
            "aggregator_stories",
            "gauge",
            "Stories stored, single entries included (old news, or no match yet).",
            [("", totals["stories"])],
        ),
        *_metric(
            "aggregator_stories_covered",
            "gauge",
            "Stories of two or more sources, which pages show as coverage.",
            [("", totals["covered_stories"])],
        ),
        *_metric(
            "aggregator_workers",
            "gauge",
            f"Workers alive (a heartbeat within {HEARTBEAT_TICKS} of their tick intervals).",
            [("", len(alive))],
        ),
    ]
    if tick is not None:
        lines += _metric(
            "aggregator_last_tick_timestamp_seconds",
            "gauge",
            "Unix time of the newest worker heartbeat.",
            [("", tick[0].timestamp())],
        )
        lines += _metric(
            "aggregator_last_tick_age_seconds",
            "gauge",
            "Seconds since the newest worker heartbeat.",
            [("", round((now - tick[0]).total_seconds(), 3))],
        )
    polls = [beat for beat in alive if beat.poll_seconds is not None]
    if polls:
        lines += _metric(
            "aggregator_poll_duration_seconds",
            "gauge",
            "How long each live worker's last poll took.",
            [(_worker_label(b), round(b.poll_seconds or 0.0, 3)) for b in polls],
        )
        lines += _metric(
            "aggregator_poll_feeds",
            "gauge",
            "How many feeds each live worker's last poll updated.",
            [(_worker_label(b), b.poll_feeds or 0) for b in polls],
        )
    if totals["newest_fetch"] is not None:
        lines += _metric(
            "aggregator_last_fetch_timestamp_seconds",
            "gauge",
            "Unix time of the newest feed fetch.",
            [("", totals["newest_fetch"].timestamp())],
        )
    lines += _metric(
        "aggregator_web_cache_hits_total",
        "counter",
        "Responses served from this process's render cache.",
        [("", cache.hits)],
    )
    lines += _metric(
        "aggregator_web_cache_misses_total",
        "counter",
        "Responses this process rendered.",
        [("", cache.misses)],
    )
    lines += _metric(
        "aggregator_web_cache_stale_total",
        "counter",
        "Responses that sent a page's previous rendering while it was rendered again.",
        [("", cache.stale)],
    )
    return "\n".join(lines) + "\n"
