"""Compute retry pauses (pure: no I/O, no sleeping, no clock unless none is given).

Two pieces, kept apart from any retry *policy* (which errors to retry, how often):

- `compute_backoff`: capped exponential back-off with jitter;
- `parse_retry_after`: a server's ``Retry-After`` header as seconds, capped.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 2**32 half-seconds is already far beyond any cap; stop the exponent there so huge attempt
# numbers cannot overflow a float.
_MAX_EXPONENT = 32


def compute_backoff(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> float:
    """Return the pause in seconds before retry number `attempt` (0-based).

    The step doubles with every attempt, ``base * 2**attempt``, and never exceeds `cap`.
    `jitter` is the share of the step that is drawn at random: the pause is
    ``step * (1 - jitter) + uniform(0, step * jitter)``.

    - ``jitter=0.5`` (the default) is *equal jitter*: at least half the step is always
      waited, so no client retries at once, while clients that failed together (one
      Akinon hiccup seen by every worker) spread over the other half;
    - ``jitter=1.0`` is *full jitter* (anywhere between 0 and the step);
    - ``jitter=0.0`` is plain exponential back-off, deterministic.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
    step = min(cap, base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))
    draw = rng.random() if rng is not None else random.random()
    return step * (1.0 - jitter) + draw * step * jitter


def parse_retry_after(
    value: str | None, *, cap: float, now: datetime | None = None
) -> float | None:
    """Read a Retry-After header (seconds or an HTTP date) as seconds, capped at `cap`.

    Return None when the header is absent or unreadable, so the caller falls back to its own
    back-off. A date in the past means "now" (0.0). `now` is for tests; it defaults to the
    current UTC time.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    seconds = _as_seconds(text)
    if seconds is None:
        seconds = _seconds_until(text, now or datetime.now(UTC))
    if seconds is None:
        return None
    return min(max(seconds, 0.0), cap)


def _as_seconds(text: str) -> float | None:
    # RFC 9110 allows only whole seconds; a fraction ("1.5") is accepted since it is
    # unambiguous, but not a sign, NaN or infinity.
    if not text[0].isdigit():
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None


def _seconds_until(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT even when the zone is left out
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()
