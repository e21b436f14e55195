"""Decide how many page requests a scan keeps in flight, the way TCP sizes its window.

    starts at 4 (TCP's initial window is 10 segments; 4 pages is as gentle)
    grows   by 1 for each page the step had to wait for (slow start), up to the threshold;
            past it by 1/size per such page (about 1 per round trip)
    halves  on a 429 or 503, or when response times climb to `slow_factor` x the fastest
            seen (the server queues our requests: more in flight would not go faster);
            at most once per window's worth of responses, so one burst halves it once
    never   above `cap`, never below 1

A page the step did not wait for means the step, not the network, is the bottleneck: the
window does not grow then. A client keeps one window for all its scans, as TCP keeps what
it learnt of a path: a scan starts where the one before ended instead of ramping up again
(a scan of ten pages would otherwise end before its window opened). Fetch threads of
several scans report to it, so it locks.
"""

from __future__ import annotations

import threading
from typing import Final

DEFAULT_CAP: Final = 16
INITIAL_SIZE: Final = 4
SLOW_FACTOR: Final = 2.0
# Response times a few milliseconds apart are noise, not congestion (loopback, a LAN).
MIN_CLIMB_SECONDS: Final = 0.02
SMOOTHING: Final = 0.25  # weight of the newest response time in the running average


class Window:
    """How many pages a scan asks for at once: grown while waiting, halved on congestion."""

    def __init__(
        self,
        cap: int = DEFAULT_CAP,
        *,
        initial: int = INITIAL_SIZE,
        slow_factor: float = SLOW_FACTOR,
    ) -> None:
        self.cap = max(1, cap)
        self._slow_factor = slow_factor
        self._size = float(max(1, min(self.cap, initial)))
        self._threshold = float(self.cap)
        self._fastest: float | None = None
        self._smoothed: float | None = None
        self._calm = 0  # responses still to come before another decrease may happen
        self.decreases = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Window(size={self.size}, cap={self.cap}, decreases={self.decreases})"

    @property
    def size(self) -> int:
        """Return how many requests may be in flight now."""
        return max(1, min(self.cap, int(self._size)))

    def waited(self) -> None:
        """Count a page the step had to wait for: the network is the bottleneck, grow."""
        with self._lock:
            step = 1.0 if self._size < self._threshold else 1.0 / self._size
            self._size = min(float(self.cap), self._size + step)

    def observe(self, seconds: float) -> None:
        """Count one response time; halve when they climb well above the fastest."""
        with self._lock:
            self._calm -= 1
            fastest = seconds if self._fastest is None else min(self._fastest, seconds)
            self._fastest = fastest
            smoothed = self._smoothed
            smoothed = seconds if smoothed is None else smoothed + SMOOTHING * (seconds - smoothed)
            self._smoothed = smoothed
            climbed = smoothed > self._slow_factor * fastest
            if climbed and smoothed - fastest > MIN_CLIMB_SECONDS:
                self._decrease()

    def congested(self) -> None:
        """Count a 429 or 503: Akinon asks us to slow down, halve."""
        with self._lock:
            self._decrease()

    def _decrease(self) -> None:
        if self._calm > 0:
            return
        self._threshold = max(1.0, self._size / 2)
        self._size = self._threshold
        self._calm = int(self._size) + 1
        self._smoothed = None
        self.decreases += 1
