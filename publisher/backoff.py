"""Compute retry pauses (pure: no I/O, no sleeping)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def compute_backoff(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
) -> float:
    """Return the pause before retry number `attempt` (0-based), capped, with equal jitter.

    Equal jitter keeps half of the exponential step and randomises the other half: clients
    that failed together spread out, yet none retries at once.
    """
    step = min(cap, base * 2.0 ** min(attempt, 32))
    draw = rng.random() if rng is not None else random.random()
    return step / 2 + draw * step / 2


def parse_retry_after(
    value: str | None, *, cap: float, now: datetime | None = None
) -> float | None:
    """Read a Retry-After header (seconds or an HTTP date) as seconds, capped; None if absent."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), cap)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), cap)
