"""Back-off and Retry-After: pure functions, tested with plain values and a seeded RNG."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from publisher.backoff import compute_backoff, parse_retry_after


def test_equal_jitter_by_default_grows_exponentially_and_is_capped() -> None:
    rng = random.Random(1)
    pauses = [compute_backoff(n, base=1.0, cap=10.0, rng=rng) for n in range(12)]
    for attempt, pause in enumerate(pauses):
        step = min(10.0, 2.0**attempt)
        assert step / 2 <= pause <= step  # never zero, never above the step
    assert max(pauses) <= 10.0
    assert pauses[-1] >= 5.0  # capped steps still keep half the cap


def test_full_jitter_spreads_between_zero_and_the_step() -> None:
    rng = random.Random(3)
    pauses = [compute_backoff(4, base=1.0, cap=100.0, jitter=1.0, rng=rng) for _ in range(200)]
    assert all(0.0 <= p <= 16.0 for p in pauses)
    assert min(pauses) < 4.0  # far below the equal-jitter floor of 8


def test_no_jitter_is_plain_exponential() -> None:
    assert [compute_backoff(n, jitter=0.0) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert compute_backoff(10, jitter=0.0, cap=30.0) == 30.0


def test_backoff_is_jittered_and_reproducible_with_a_seed() -> None:
    assert len({compute_backoff(3, rng=random.Random(n)) for n in range(20)}) > 10
    assert compute_backoff(3, rng=random.Random(7)) == compute_backoff(3, rng=random.Random(7))


def test_backoff_survives_huge_and_negative_attempts() -> None:
    assert compute_backoff(10_000, cap=30.0, jitter=0.0) == 30.0
    assert compute_backoff(-3, jitter=0.0) == 0.5


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
def test_jitter_outside_zero_to_one_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        compute_backoff(1, jitter=jitter)


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("120", 30.0),  # capped
        ("Thu, 01 Jan 2026 12:00:05 GMT", 5.0),
        ("Thu, 01 Jan 2026 12:10:00 GMT", 30.0),  # capped
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("Thursday, 01-Jan-26 12:00:05 GMT", 5.0),  # the obsolete RFC 850 form
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("1e999", None),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, cap=30, now=NOW) == seconds


def test_retry_after_defaults_to_the_current_time() -> None:
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", cap=30) == 0.0
