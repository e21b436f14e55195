"""Format, parse and hand out the sandbox's timestamps (pure apart from the wall clock).

Timestamps are kept as integer microseconds since the Unix epoch: comparing ints is cheap and
exact, and Akinon's dates carry microseconds, so nothing is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def wall_us() -> int:
    """Return the current wall-clock time in microseconds since the epoch."""
    return time.time_ns() // 1000


def format_us(us: int) -> str:
    """Format microseconds since the epoch the way Akinon does: `...T08:38:48.476005Z`."""
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_us(text: str) -> int:
    """Parse an ISO 8601 date or date-time into microseconds since the epoch.

    A naive value is taken as UTC. A space where the offset sign should be is read as '+',
    because an unencoded '+' in a query string arrives decoded as a space.
    """
    candidate = text.strip()
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        parsed = datetime.fromisoformat(candidate.replace(" ", "+"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - EPOCH) // _MICROSECOND


class MonotonicClock:
    """Hand out strictly increasing microsecond timestamps that follow the wall clock.

    Two changes in the same microsecond must still be ordered by `modified_date`, or a client
    paging with `modified_date__gt` could skip one; so each tick is at least one past the last.
    """

    def __init__(self, source: Callable[[], int] = wall_us, floor: int = 0) -> None:
        self._source = source
        self._last = floor
        self._lock = threading.Lock()

    def tick(self) -> int:
        """Return a timestamp later than every one handed out before."""
        with self._lock:
            self._last = max(self._source(), self._last + 1)
            return self._last

    def raise_floor(self, us: int) -> None:
        """Make every later tick come after `us` (used after seeding dated records)."""
        with self._lock:
            self._last = max(self._last, us)
