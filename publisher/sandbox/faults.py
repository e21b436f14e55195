"""Describe the faults the sandbox injects into `/api/` requests, and count them down.

Counters (`fail_next`, `rate_limit_next`, ...) are consumed one per affected request under a
lock, so concurrent requests never take the same unit twice. `error_rate` draws from a
`random.Random(seed)`, so a test that sends requests in order sees the same errors each run.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Final

_COUNTERS: Final = (
    "fail_next",
    "rate_limit_next",
    "truncate_next",
    "garble_next",
    "unauthorized_next",
    "lost_answer_next",
)


@dataclass
class Faults:
    """Say which faults the next `/api/` requests meet (never `/_control/` ones).

    - latency_ms: sleep this long before answering each request.
    - error_rate, error_status: answer this fraction (0..1) of requests with error_status.
    - fail_next, fail_status: answer the next N requests with fail_status.
    - rate_limit_next, retry_after: answer the next N requests 429 with `Retry-After`.
    - truncate_next: send the next N list responses cut short (Content-Length promises more
      than is sent) and close the connection.
    - garble_next: answer the next N list requests 200 with a whole body that is not JSON
      (the first half of the page), as a broken gateway or cache may.
    - foreign_next: while true, paginated `next` links point at a foreign host.
    - unauthorized_next: answer the next N token-carrying requests 401 even with a good token.
    - hold_in_commit: while true, a PATCH that would move a batch request out of `commit` is
      answered 503 and not applied: the batch stays in commit, as when a client is killed
      between its commit and its done.
    - lost_answer_next: apply the next N batch-request PATCHes, then answer them 504 (a
      gateway that timed out after Akinon applied the change).
    - rate_limit_per_second: answer 429 with `Retry-After` to requests beyond this rate
      (a bucket refilled at that rate, holding one second's worth); 0: no limit.
    - seed: seeds the generator behind error_rate.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    fail_next: int = 0
    fail_status: int = 503
    rate_limit_next: int = 0
    retry_after: int = 1
    truncate_next: int = 0
    garble_next: int = 0
    foreign_next: bool = False
    unauthorized_next: int = 0
    hold_in_commit: bool = False
    lost_answer_next: int = 0
    rate_limit_per_second: float = 0.0
    seed: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _bucket: tuple[float, float] = field(default=(0.0, 0.0), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check()
        self._rng = random.Random(self.seed)

    def _check(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if self.rate_limit_per_second < 0:
            raise ValueError("rate_limit_per_second cannot be negative")
        if self.latency_ms < 0:
            raise ValueError("latency_ms cannot be negative")
        for name in _COUNTERS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative")

    @classmethod
    def from_json(cls, body: Any) -> Faults:
        """Build faults from a JSON object; raise ValueError naming a bad key or value."""
        if not isinstance(body, dict):
            raise ValueError("faults must be a JSON object")
        known = public_fields()
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
        for name, value in body.items():
            if not _fits(value, known[name]):
                raise ValueError(f"{name} must be {known[name].__name__}")
        return cls(**body)

    def to_json(self) -> dict[str, Any]:
        """Return the settings and remaining counters as a JSON object."""
        with self._lock:
            return {name: getattr(self, name) for name in public_fields()}

    def merged(self, changes: Any) -> Faults:
        """Return new faults: these settings with `changes` (a JSON object) applied."""
        if not isinstance(changes, dict):
            raise ValueError("faults must be a JSON object")
        return Faults.from_json({**self.to_json(), **changes})

    def take(self, counter: str) -> bool:
        """Consume one unit of a `*_next` counter; return whether there was one."""
        with self._lock:
            left = int(getattr(self, counter))
            if left <= 0:
                return False
            setattr(self, counter, left - 1)
            return True

    def over_rate(self) -> bool:
        """Take a unit of the rate limit's bucket; return True when there is none left."""
        rate = self.rate_limit_per_second
        if rate <= 0:
            return False
        with self._lock:
            now = time.monotonic()
            tokens, then = self._bucket
            tokens = rate if then == 0.0 else min(rate, tokens + (now - then) * rate)
            if tokens < 1.0:
                self._bucket = (tokens, now)
                return True
            self._bucket = (tokens - 1.0, now)
            return False

    def roll_error(self) -> bool:
        """Return whether this request is one of the `error_rate` share answered in error."""
        if self.error_rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < self.error_rate


def public_fields() -> dict[str, type]:
    """Return each settable fault name with the JSON type it takes."""
    kinds: dict[str, type] = {}
    for spec in fields(Faults):
        if spec.name.startswith("_"):
            continue
        kinds[spec.name] = type(spec.default)
    return kinds


def _fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)
