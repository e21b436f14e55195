"""Bound the requests per second sent to each Akinon host by a whole worker process.

Every client of the process asks the same `Pacer` of a host before each attempt, so several
steps (Celery threads) and their pages in flight together stay under the ceiling a merchant
promised Akinon (AKINON_MAX_REQUESTS_PER_SECOND; 0: no ceiling). (A `Retry-After` is
honoured by the request it answered; the scan's window halves, so the others slow too.)

Requests are spaced evenly (one every 1/rate seconds), without bursts: a burst is what a
rate limiter counts against us.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final


class Pacer:
    """Space the requests to one host evenly: one every 1/rate seconds at most."""

    def __init__(self, rate: float = 0.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._next = 0.0  # the earliest moment the next request may go
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pacer(rate={self.rate:g}/s)"

    def reserve(self) -> float:
        """Take the next free slot; return how long to wait for it (0: go now)."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.rate
        return slot - now


_PACERS: Final[dict[tuple[str, str, int], Pacer]] = {}
_LOCK: Final = threading.Lock()


def pacer_for(origin: tuple[str, str, int], rate: float) -> Pacer:
    """Return the process's pacer of a host (scheme, host, port); the latest rate wins."""
    with _LOCK:
        pacer = _PACERS.get(origin)
        if pacer is None:
            pacer = _PACERS[origin] = Pacer(rate)
        pacer.rate = rate
        return pacer
