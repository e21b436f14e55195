"""Change random records at a steady rate in a background thread (for the live demo)."""

from __future__ import annotations

import random
import threading
import time
from typing import Final

from publisher.sandbox.catalog import Catalog

_TICK_SECONDS: Final = 0.05


class Churner:
    """Change about `rate` random records per second until stopped."""

    def __init__(self, catalog: Catalog, rate: float, seed: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.catalog = catalog
        self.rate = rate
        self.changed = 0
        self._rng = random.Random(seed)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-churn", daemon=True)

    def start(self) -> Churner:
        """Start changing records in the background; return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop changing records and wait for the thread to finish."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def running(self) -> bool:
        """Return whether the background thread is still changing records."""
        return self._thread.is_alive()

    def _run(self) -> None:
        owed = 0.0
        last = time.monotonic()
        while not self._stopping.wait(_TICK_SECONDS):
            now = time.monotonic()
            # Carry the fraction over, so a rate of 3/s over 50 ms ticks still makes 3 a second.
            owed += (now - last) * self.rate
            last = now
            due = int(owed)
            owed -= due
            if due:
                self.changed += len(self.catalog.churn(due, self._rng))
