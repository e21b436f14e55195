from __future__ import annotations

import random
from datetime import UTC, datetime

from publisher.backoff import compute_backoff, parse_retry_after


def test_backoff_grows_exponentially_and_is_capped() -> None:
    rng = random.Random(1)
    pauses = [compute_backoff(n, base=1.0, cap=10.0, rng=rng) for n in range(8)]
    for attempt, pause in enumerate(pauses):
        step = min(10.0, 2.0**attempt)
        assert step / 2 <= pause <= step  # equal jitter: never zero, never above the step
    assert max(pauses) <= 10.0


def test_backoff_is_jittered() -> None:
    rng = random.Random(2)
    assert len({compute_backoff(3, rng=rng) for _ in range(20)}) > 10


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", cap=30) == 7.0
    assert parse_retry_after("120", cap=30) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:05 GMT", cap=30, now=now) == 5.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", cap=30, now=now) == 0.0
    assert parse_retry_after(None, cap=30) is None
    assert parse_retry_after("soon", cap=30) is None
