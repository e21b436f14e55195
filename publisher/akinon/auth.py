"""Share Akinon login tokens within a process and cap how often each user logs in."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from publisher.redact import register_token

LOGIN_PATH: Final = "/api/v1/auth/login/"
# Statuses that mean "these credentials are refused" rather than "this request is wrong".
# Login views in the django-rest-auth style answer bad credentials with 400, Akinon's
# documentation says 401; both are a refused login.
REFUSED_TOKEN: Final = frozenset({401})
REFUSED_LOGIN: Final = frozenset({400, 401, 403})


class TokenCache:
    """Share login tokens within a process and cap how often each user logs in.

    Keyed by (base URL, username). Thread-safe: Celery threads and a client's prefetch
    thread may ask at once, and `login_lock` lets one of them log in while the others wait
    for its token instead of logging in too. The login cap is a sliding window.
    """

    def __init__(
        self,
        *,
        max_logins: int = 3,
        window: float = 360.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_logins = max_logins
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], str] = {}
        self._logins: dict[tuple[str, str], deque[float]] = {}
        self._login_locks: dict[tuple[str, str], threading.Lock] = {}

    def __repr__(self) -> str:
        return f"TokenCache(users={len(self._tokens)})"  # never the tokens themselves

    def get(self, key: tuple[str, str]) -> str | None:
        """Return the cached token of (base URL, user), if any."""
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: tuple[str, str], token: str) -> None:
        """Remember a fresh token."""
        register_token(token)  # masked wherever it could be stored, printed or logged
        with self._lock:
            self._tokens[key] = token

    def discard(self, key: tuple[str, str], token: str) -> None:
        """Forget a token Akinon refused, unless another thread already replaced it."""
        with self._lock:
            if self._tokens.get(key) == token:
                del self._tokens[key]

    def allow_login(self, key: tuple[str, str]) -> bool:
        """Count one login of (base URL, user); return False once the cap is reached."""
        now = self._clock()
        with self._lock:
            recent = self._logins.setdefault(key, deque())
            while recent and now - recent[0] >= self.window:
                recent.popleft()
            if len(recent) >= self.max_logins:
                return False
            recent.append(now)
            return True

    def login_lock(self, key: tuple[str, str]) -> threading.Lock:
        """Return the lock that serialises logins of (base URL, user)."""
        with self._lock:
            return self._login_locks.setdefault(key, threading.Lock())


# One cache per process, so Celery tasks that build a client per run log in once.
DEFAULT_TOKEN_CACHE: Final = TokenCache()
