"""aggregator.schedule: next check times (R2, R3, R5, R6 on the scheduling side)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.schedule import (
    ERROR_BACKOFF_CAP,
    error_delay,
    next_check_at,
    parse_retry_after,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN, MAX, INTERVAL = 300, 86400, 3600


def check(outcome: str, **kw: object) -> datetime | None:
    args: dict[str, object] = {
        "outcome": outcome,
        "interval": INTERVAL,
        "min_interval": MIN,
        "max_interval": MAX,
    }
    args.update(kw)
    return next_check_at(NOW, **args)  # type: ignore[arg-type]


def seconds(when: datetime | None) -> float:
    assert when is not None
    return (when - NOW).total_seconds()


def test_success_uses_the_interval_with_ten_percent_jitter() -> None:
    rng = random.Random(1)
    delays = [seconds(check("ok", rng=rng)) for _ in range(500)]
    assert all(INTERVAL * 0.9 <= d <= INTERVAL * 1.1 for d in delays)
    assert max(delays) - min(delays) > INTERVAL * 0.1  # really jittered


@pytest.mark.parametrize("outcome", ["ok", "not_modified", "unchanged"])
def test_r3_hints_raise_the_interval_and_are_clamped(outcome: str) -> None:
    assert seconds(check(outcome, cache_seconds=7200)) >= 7200 * 0.9
    assert seconds(check(outcome, ttl_seconds=120 * 60)) >= 7200 * 0.9
    assert seconds(check(outcome, ttl_seconds=86400, max_interval=14400)) <= 14400 * 1.1
    assert seconds(check(outcome, cache_seconds=10)) >= INTERVAL * 0.9  # hints never lower
    assert seconds(check(outcome, interval=1, min_interval=600)) >= 600 * 0.9


def test_r5_gone_is_never_checked_again() -> None:
    assert check("gone", error_count=1) is None


def test_r6_backoff_doubles_within_twenty_percent_and_is_capped() -> None:
    rng = random.Random(2)
    for k in range(1, 15):
        expected = min(MIN * 2 ** (k - 1), MAX, ERROR_BACKOFF_CAP)
        for _ in range(50):
            d = seconds(check("error", error_count=k, rng=rng))
            assert expected * 0.8 <= d <= expected * 1.2, (k, d)
    assert error_delay(10**6, MIN, MAX) <= ERROR_BACKOFF_CAP * 1.2  # huge counts are fine


def test_r6_backoff_cap_follows_a_smaller_max_interval() -> None:
    d = seconds(check("error", error_count=20, max_interval=7200))
    assert 7200 * 0.8 <= d <= 7200 * 1.2


def test_r6_success_resets_to_the_normal_interval() -> None:
    assert seconds(check("error", error_count=10)) > INTERVAL * 5
    # after a success the caller passes error_count=0; the normal interval applies
    assert seconds(check("ok", error_count=0)) <= INTERVAL * 1.1


def test_r2_retry_after_is_a_lower_bound_for_every_outcome() -> None:
    later = NOW + timedelta(hours=6)
    assert check("error", error_count=1, retry_after=later) == later
    assert check("ok", retry_after=later) == later
    earlier = NOW + timedelta(seconds=1)
    assert seconds(check("ok", retry_after=earlier)) >= INTERVAL * 0.9
    far = NOW + timedelta(days=400)
    assert check("error", error_count=1, retry_after=far) == NOW + timedelta(days=30)


def test_r2_after_an_error_retry_after_replaces_the_backoff() -> None:
    """A feed throttled again and again is asked back after each Retry-After, not after
    its growing backoff as well (ten errors would mean 24 hours)."""
    later = NOW + timedelta(seconds=INTERVAL * 2)
    assert check("error", error_count=10, retry_after=later) == later
    soon = NOW + timedelta(seconds=10)  # never sooner than the feed's own interval
    delay = seconds(check("error", error_count=10, retry_after=soon))
    assert INTERVAL * 0.9 <= delay <= INTERVAL * 1.1
    assert seconds(check("error", error_count=10)) >= ERROR_BACKOFF_CAP * 0.8  # no hint


def test_r6_backoff_grows_no_faster_than_the_time_failed() -> None:
    """After seven hours of 503s with Retry-After every half hour (14 errors), one bare
    500 is retried after about the seven hours the feed has failed, not a day later."""
    rng = random.Random(3)
    failed = timedelta(hours=7)
    for _ in range(50):
        d = seconds(check("error", error_count=15, failing_since=NOW - failed, rng=rng))
        assert d <= 1.2 * (1.25 * failed.total_seconds() + MIN)
        assert d < ERROR_BACKOFF_CAP * 0.4
    # a feed added ten hours ago that never worked: the same
    d = seconds(check("error", error_count=13, failing_since=NOW - timedelta(hours=10), rng=rng))
    assert d <= 1.2 * (1.25 * 10 * 3600 + MIN)
    # just failed: the first retry waits min_interval
    d = seconds(check("error", error_count=1, failing_since=NOW, rng=rng))
    assert MIN * 0.8 <= d <= MIN * 1.2


@pytest.mark.parametrize("worked_before", [0, INTERVAL])
def test_r6_a_plain_run_of_errors_backs_off_as_by_the_count_alone(worked_before: int) -> None:
    """Errors one after another from the feed's start (or an interval after its last
    success), each at the time its backoff named: the bound by the time failed never
    changes a wait, whatever the jitter drew."""
    for seed in range(200):
        ours, plain = random.Random(seed), random.Random(seed)
        failed = float(worked_before)
        for k in range(1, 16):
            bounded = error_delay(k, MIN, MAX, ours, failing_seconds=failed)
            assert bounded == error_delay(k, MIN, MAX, plain), (seed, k)
            failed += bounded


def test_a_document_cut_short_is_fetched_again_soon() -> None:
    rng = random.Random(4)
    for _ in range(50):
        d = seconds(check("ok", incomplete=True, ttl_seconds=7200, rng=rng))
        assert MIN * 0.8 <= d <= MIN * 1.2
    assert check("ok", incomplete=True, retry_after=NOW + timedelta(hours=2)) == NOW + timedelta(
        hours=2
    )


def test_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="schedule: unknown outcome"):
        check("weird")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3600", NOW + timedelta(seconds=3600)),
        (" 120 ", NOW + timedelta(seconds=120)),
        ("Sun, 01 Mar 2026 18:00:00 GMT", NOW + timedelta(hours=6)),
        ("Sat, 28 Feb 2026 18:00:00 GMT", NOW),  # past dates mean "now"
        ("999999999", NOW + timedelta(days=30)),
        ("Fri, 01 Jan 2100 00:00:00 GMT", NOW + timedelta(days=30)),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_r2_parse_retry_after(value: str | None, expected: datetime | None) -> None:
    assert parse_retry_after(value, NOW) == expected
