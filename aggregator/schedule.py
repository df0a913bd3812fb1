"""When a feed is checked next: pure functions, no I/O, no clock of their own.

Owns the polling policy: the interval after a success (raised to the server's cache and
TTL hints, clamped, jittered), exponential backoff after errors, `Retry-After` as a lower
bound (after an error it replaces the backoff: the server said when to come back), and
"never" for a feed that is gone (HTTP 410). Callers pass `now` and, in tests,
a seeded `rng`.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol

# Success: +-10 % jitter spreads feeds that share an interval over time.
SUCCESS_JITTER = 0.10
# Errors: +-20 % jitter (RELIABILITY.md R6) so failing feeds do not retry in lock-step.
ERROR_JITTER = 0.20
# Backoff never waits longer than this, even when max_interval is longer: a feed that
# recovers is noticed within a day. (The effective cap is min(max_interval, this).)
ERROR_BACKOFF_CAP = 24 * 3600
# 2**30 already exceeds any cap; keeps the arithmetic small for huge error counts.
MAX_BACKOFF_EXPONENT = 30
# Retry-After and similar server hints are honoured up to 30 days (R2).
RETRY_AFTER_CAP = timedelta(days=30)

SUCCESS_OUTCOMES = frozenset({"ok", "not_modified", "unchanged"})
OUTCOMES = SUCCESS_OUTCOMES | {"error", "gone"}


class Uniform(Protocol):
    """Anything with `uniform(a, b)`: the `random` module or a `random.Random`."""

    def uniform(self, a: float, b: float) -> float: ...


def next_check_at(
    now: datetime,
    *,
    outcome: str,
    interval: float,
    min_interval: float,
    max_interval: float,
    error_count: int = 0,
    failing_since: datetime | None = None,
    retry_after: datetime | None = None,
    cache_seconds: float | None = None,
    ttl_seconds: float | None = None,
    incomplete: bool = False,
    rng: Uniform = random,
) -> datetime | None:
    """Decide when a feed is checked next.

    Args:
        now: the current time (timezone-aware).
        outcome: "ok", "not_modified", "unchanged", "error" or "gone".
        interval: the feed's configured interval, seconds.
        min_interval: the shortest allowed interval, seconds (also the backoff base).
        max_interval: the longest allowed interval, seconds.
        error_count: consecutive errors including this attempt (used for "error"),
            counting only those without Retry-After (the backoff's own count).
        failing_since: since when the feed has been failing (its last success, or
            when it was added): the backoff grows no faster than the time failed allows
            (see `error_delay`). None: by the count alone.
        retry_after: the server's Retry-After time; always a lower bound (capped 30 days).
            After an error it replaces the backoff: the next check is that time or the
            feed's own interval, whichever is later.
        cache_seconds: Cache-Control max-age / Expires hint, seconds (success only).
        ttl_seconds: the feed's own TTL hint (RSS <ttl>, sy:updatePeriod), seconds.
        incomplete: the document of this success was cut short: its skipped entries
            are fetched soon (`min_interval`, jittered as a first error's retry), before
            the oldest of them leave the feed, not after the feed's interval.
        rng: source of jitter.

    Returns:
        The next check time, or None for "gone" (never check again).

    Raises:
        ValueError: unknown outcome.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"schedule: unknown outcome {outcome!r}")
    if outcome == "gone":
        return None
    if outcome == "error" and retry_after is not None:
        # a 429 or 503 that says when to come back is taken at its word, but never
        # sooner than the feed's own interval (a server answering `Retry-After: 0` is
        # not asked more often than a healthy feed): backing off beyond it as well kept
        # a feed throttled in one-hour spells away for 10 hours (bench/soak.py
        # --faults), and lost what it published meanwhile
        delay = success_delay(interval, min_interval, max_interval, rng=rng)
    elif outcome == "error":
        failing = (now - failing_since).total_seconds() if failing_since is not None else None
        delay = error_delay(error_count, min_interval, max_interval, rng, failing)
    elif incomplete:
        delay = error_delay(1, min_interval, max_interval, rng)
    else:
        delay = success_delay(interval, min_interval, max_interval, cache_seconds, ttl_seconds, rng)
    when = now + timedelta(seconds=delay)
    if retry_after is not None:
        when = max(when, min(retry_after, now + RETRY_AFTER_CAP))
    return when


def success_delay(
    interval: float,
    min_interval: float,
    max_interval: float,
    cache_seconds: float | None = None,
    ttl_seconds: float | None = None,
    rng: Uniform = random,
) -> float:
    """Seconds until the next check after a success.

    The interval is raised to the cache and TTL hints (they are minimum intervals),
    clamped to [min_interval, max_interval], then jittered by +-10 %.
    """
    base = max(interval, cache_seconds or 0, ttl_seconds or 0)
    base = min(max(base, min_interval), max_interval)
    return base * rng.uniform(1 - SUCCESS_JITTER, 1 + SUCCESS_JITTER)


def error_delay(
    error_count: int,
    min_interval: float,
    max_interval: float,
    rng: Uniform = random,
    failing_seconds: float | None = None,
) -> float:
    """Seconds until the retry after the `error_count`-th consecutive error.

    min_interval * 2**(error_count-1), capped at min(max_interval, 24 h), then
    jittered by +-20 %.

    When `failing_seconds` (how long the feed has been failing) is known, the exponent
    is at most what consecutive doubled waits could have reached in that time, at the
    lowest jitter: a plain run of errors is never changed by it (each wait is part of
    the time failed), but a count that ran ahead of the clock is (forced polls, `poll
    --all`, count errors without waiting). The caller counts only the errors whose wait
    the backoff decided (`update._failed`): an answer with Retry-After is not one.
    """
    exponent = min(max(error_count, 1) - 1, MAX_BACKOFF_EXPONENT)
    if failing_seconds is not None:
        exponent = min(exponent, reachable_exponent(failing_seconds, min_interval))
    cap = max(min(max_interval, ERROR_BACKOFF_CAP), min_interval)
    base = min(min_interval * (1 << exponent), cap)
    return base * rng.uniform(1 - ERROR_JITTER, 1 + ERROR_JITTER)


def reachable_exponent(failing_seconds: float, min_interval: float) -> int:
    """The largest exponent k such that waits of min_interval * 2**j (j < k), each
    jittered as low as it goes, fit in `failing_seconds`: 0.8 m (2**k - 1) <= failing."""
    lowest = max(min_interval, 1.0) * (1 - ERROR_JITTER)
    ratio = max(failing_seconds, 0.0) / lowest + 1.0
    return min(int(math.log2(ratio) + 1e-9), MAX_BACKOFF_EXPONENT)


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """Parse a Retry-After header into an absolute UTC time, capped at now + 30 days.

    Args:
        value: delta-seconds ("3600") or an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT").
        now: the time the response arrived (timezone-aware).

    Returns:
        The time, never before `now`; None if the value is missing or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        when = now + timedelta(seconds=min(int(text), int(RETRY_AFTER_CAP.total_seconds())))
    else:
        parsed = parse_http_date(text)
        if parsed is None:
            return None
        when = max(parsed, now)
    return min(when, now + RETRY_AFTER_CAP).astimezone(UTC)


def parse_http_date(value: str) -> datetime | None:
    """Parse an HTTP-date into an aware UTC datetime, or None if it is unreadable."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
