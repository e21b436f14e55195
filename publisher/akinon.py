"""POLL edge: Akinon's sales-channel API over httpx.

What this client takes care of, so nothing above it has to:
- auth: ``Authorization: Token <key>``, either given or obtained by logging in; the token is
  cached per (base URL, user) for the whole process, a 401 triggers one re-login, and logins
  are capped (3 per 6 minutes) so a wrong password cannot hammer the login endpoint;
- both list shapes on every list endpoint (a plain array, or ``{count, next, results}``),
  paging with ``page``/``limit``, and fetching the next page while the caller works;
- the token only ever goes to the host of the base URL: a ``next`` link or a redirect to
  any other host is refused;
- timeouts always set; retries with capped, jittered back-off for connect errors, timeouts,
  cut-off bodies, 429 (honouring Retry-After), 500, 502, 503 and 504; no retry otherwise;
- every httpx error is translated here into our own (`publisher.errors`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson

from publisher.backoff import compute_backoff, parse_retry_after
from publisher.config import Settings
from publisher.errors import (
    AkinonBadResponse,
    AkinonProtocolError,
    AkinonUnavailable,
    AuthError,
)
from publisher.records import Endpoint, Resource

log = logging.getLogger(__name__)

LOGIN_PATH: Final = "/api/v1/auth/login/"
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
MAX_PAGES: Final = 100_000  # a server that repeats `next` forever must not loop us forever


class TokenCache:
    """Share login tokens within a process and cap how often each user logs in."""

    def __init__(
        self,
        *,
        max_logins: int = 3,
        window: float = 360.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], str] = {}
        self._logins: dict[tuple[str, str], deque[float]] = {}
        self._max_logins = max_logins
        self._window = window
        self._clock = clock

    def get(self, key: tuple[str, str]) -> str | None:
        """Return the cached token of (base URL, user), if any."""
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: tuple[str, str], token: str) -> None:
        """Remember a fresh token."""
        with self._lock:
            self._tokens[key] = token

    def discard(self, key: tuple[str, str], token: str) -> None:
        """Forget a token Akinon refused, unless another thread already replaced it."""
        with self._lock:
            if self._tokens.get(key) == token:
                del self._tokens[key]

    def allow_login(self, key: tuple[str, str]) -> bool:
        """Count one login attempt; return False once the cap is reached in the window."""
        now = self._clock()
        with self._lock:
            recent = self._logins.setdefault(key, deque())
            while recent and now - recent[0] >= self._window:
                recent.popleft()
            if len(recent) >= self._max_logins:
                return False
            recent.append(now)
            return True


DEFAULT_TOKEN_CACHE: Final = TokenCache()


@dataclass(frozen=True, slots=True)
class Where:
    """Name a request in errors and logs: channel, endpoint and page."""

    channel_id: int | None
    endpoint: str
    page: int | None = None

    def __str__(self) -> str:
        parts = [f"endpoint={self.endpoint}"]
        if self.channel_id is not None:
            parts.insert(0, f"channel={self.channel_id}")
        if self.page is not None:
            parts.append(f"page={self.page}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class _PageRequest:
    url: str
    params: dict[str, str] | None
    page: int


@dataclass(frozen=True, slots=True)
class _Page:
    records: list[Any]
    following: _PageRequest | None


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try."""

    def __init__(self, cause: str, delay: float | None = None) -> None:
        super().__init__(cause)
        self.delay = delay


class _Unauthorized(Exception):
    """Internal: Akinon answered 401."""


class AkinonClient:
    """A synchronous client of one Akinon installation."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        page_size: int = 500,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_cap: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        token_cache: TokenCache | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if token is None and not (username and password):
            raise AuthError("give a token, or a username and a password")
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._fixed_token = token
        self._username = username
        self._password = password
        self._page_size = page_size
        self._max_retries = max_retries
        self._backoff_cap = backoff_cap
        self._tokens = token_cache or DEFAULT_TOKEN_CACHE
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "akinon-publisher"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> AkinonClient:
        """Build a client from the settings; keyword arguments override."""
        token = settings.akinon_token.get_secret_value() if settings.akinon_token else None
        password = settings.akinon_password.get_secret_value() if settings.akinon_password else None
        options: dict[str, Any] = {
            "token": token,
            "username": settings.akinon_username,
            "password": password,
            "page_size": settings.akinon_page_size,
            "timeout": settings.akinon_timeout_seconds,
            "max_retries": settings.akinon_max_retries,
            "backoff_cap": settings.akinon_backoff_cap_seconds,
        }
        options.update(overrides)
        return cls(settings.akinon_url, **options)

    def __repr__(self) -> str:
        return f"AkinonClient({self.base_url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> AkinonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ endpoints

    def iter_pages(
        self,
        channel_id: int,
        resource: Resource,
        endpoint: Endpoint,
        params: Mapping[str, str] | None = None,
        *,
        prefetch: bool = True,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the decoded records of each page, lazily, first page first."""
        url = f"/api/v1/channel/{channel_id}/{resource.path}/{endpoint.suffix}"
        query = {**(params or {}), "page": "1", "limit": str(self._page_size)}
        first = _PageRequest(url, query, 1)
        name = f"{resource.path}/{endpoint.suffix}".rstrip("/")

        def fetch(request: _PageRequest) -> _Page:
            return self._fetch_page(Where(channel_id, name, request.page), request)

        pages = _prefetched(fetch, first) if prefetch else _sequential(fetch, first)
        return pages

    def get_price(
        self, channel_id: int, price_id: int, *, detailed: bool = False
    ) -> dict[str, Any]:
        """Return one extra product price by id."""
        suffix = "detailed/" if detailed else ""
        url = f"/api/v1/channel/{channel_id}/extra_product_prices/{price_id}/{suffix}"
        where = Where(channel_id, f"extra_product_prices/{price_id}")
        return _expect_object(self._json("GET", url, where), where)

    def channel(self, channel_id: int) -> dict[str, Any]:
        """Return the sales channel (``GET /api/v1/channels/{id}/``)."""
        where = Where(channel_id, "channels")
        return _expect_object(self._json("GET", f"/api/v1/channels/{channel_id}/", where), where)

    def acknowledge(
        self, channel_id: int, resource: Resource, objects: Sequence[tuple[int, str]]
    ) -> None:
        """Acknowledge (key, version_date as read) pairs: open, commit and close a batch."""
        if not objects:
            return
        base = f"/api/v1/channel/{channel_id}/batch_requests/"
        where = Where(channel_id, "batch_requests")
        batch = _expect_object(self._json("POST", base, where, {"channel": channel_id}), where)
        items = [
            {"pk": key, "version_date": version, "content_type": resource.content_type}
            for key, version in objects
        ]
        url = f"{base}{batch['pk']}/"
        commit = {"status": "commit", "content_type": resource.content_type, "objects": items}
        self._json("PATCH", url, where, commit)
        self._json("PATCH", url, where, {"status": "done", "objects": items})

    # ------------------------------------------------------------------------ paging

    def _fetch_page(self, where: Where, request: _PageRequest) -> _Page:
        body = self._json("GET", request.url, where, params=request.params)
        if isinstance(body, list):
            # Akinon's own client stops at a plain array; ours asks for the next page while
            # the array is full, so a capped page never hides the records after it.
            full = request.params is not None and len(body) >= self._page_size
            following = _next_page(request) if full else None
            return _Page(body, following)
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            link = body.get("next")
            following = self._follow(link, request.page + 1, where) if link else None
            return _Page(body["results"], following)
        raise AkinonBadResponse(f"unexpected JSON shape (neither a list nor a page) at {where}")

    def _follow(self, link: Any, page: int, where: Where) -> _PageRequest:
        if not isinstance(link, str) or _origin(link, default=self._origin) != self._origin:
            host = urlsplit(str(link)).netloc
            raise AkinonProtocolError(
                f"refusing a next link to another host ({host}) at {where}: "
                f"the token is only sent to {self._origin[1]}"
            )
        return _PageRequest(link, None, page)

    # ------------------------------------------------------------------------ requests

    def _json(
        self,
        method: str,
        url: str,
        where: Where,
        payload: Any = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        response = self._request(method, url, where, payload, params)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise AkinonBadResponse(f"invalid JSON at {where}: {exc}") from None

    def _request(
        self,
        method: str,
        url: str,
        where: Where,
        payload: Any,
        params: Mapping[str, str] | None,
    ) -> httpx.Response:
        relogged = False
        attempt = 0
        while True:
            token = self._token(where)
            headers = {"Authorization": f"Token {token}"}
            try:
                return self._check(self._send(method, url, payload, params, headers), where)
            except _Unauthorized:
                if relogged or self._fixed_token is not None:
                    raise AuthError(f"Akinon refused the token (401) at {where}") from None
                self._tokens.discard(self._cache_key, token)
                relogged = True
            except _Retry as retry:
                if attempt >= self._max_retries:
                    raise AkinonUnavailable(
                        f"gave up after {attempt + 1} attempts at {where}: {retry}"
                    ) from None
                delay = retry.delay
                if delay is None:
                    delay = compute_backoff(attempt, cap=self._backoff_cap, rng=self._rng)
                log.warning(
                    "akinon retry %s attempt=%d wait=%.2fs cause=%s",
                    where,
                    attempt + 1,
                    delay,
                    retry,
                )
                self._sleep(delay)
                attempt += 1

    def _send(
        self,
        method: str,
        url: str,
        payload: Any,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        try:
            return self._http.request(
                method,
                url,
                params=params,
                headers=headers,
                content=orjson.dumps(payload) if payload is not None else None,
            )
        except httpx.TransportError as exc:  # connect, timeout, cut-off body, protocol
            raise _Retry(f"{type(exc).__name__}: {exc}") from None

    def _check(self, response: httpx.Response, where: Where) -> httpx.Response:
        status = response.status_code
        if status < 300:
            return response
        if status == 401:
            raise _Unauthorized()
        if status in RETRY_STATUSES:
            delay = parse_retry_after(response.headers.get("Retry-After"), cap=self._backoff_cap)
            raise _Retry(f"HTTP {status}", delay if status == 429 else None)
        if 300 <= status < 400:
            target = response.headers.get("Location", "?")
            raise AkinonProtocolError(f"refusing to follow a redirect to {target} at {where}")
        snippet = response.text[:200].replace("\n", " ")
        raise AkinonProtocolError(f"HTTP {status} at {where}: {snippet}")

    # ------------------------------------------------------------------------ auth

    @property
    def _cache_key(self) -> tuple[str, str]:
        return (self.base_url, self._username or "")

    def _token(self, where: Where) -> str:
        if self._fixed_token is not None:
            return self._fixed_token
        token = self._tokens.get(self._cache_key)
        if token is None:
            token = self._login(where)
            self._tokens.put(self._cache_key, token)
        return token

    def _login(self, where: Where) -> str:
        if not self._tokens.allow_login(self._cache_key):
            raise AuthError(
                f"login cap reached for user {self._username!r} (3 logins per 6 minutes); "
                "check AKINON_USERNAME/AKINON_PASSWORD"
            )
        body = {"username": self._username, "password": self._password}
        for attempt in range(self._max_retries + 1):
            try:
                response = self._send("POST", LOGIN_PATH, body, None, {})
            except _Retry as retry:
                if attempt == self._max_retries:
                    raise AkinonUnavailable(f"login failed: {retry} ({where})") from None
                self._sleep(compute_backoff(attempt, cap=self._backoff_cap, rng=self._rng))
                continue
            return _token_from(response, self._username)
        raise AkinonUnavailable(f"login failed ({where})")  # pragma: no cover - loop returns


def _token_from(response: httpx.Response, username: str | None) -> str:
    if response.status_code in (400, 401, 403):
        raise AuthError(
            f"Akinon refused the login of user {username!r} (HTTP {response.status_code})"
        )
    if response.status_code >= 300:
        raise AkinonUnavailable(f"login answered HTTP {response.status_code}")
    try:
        key = orjson.loads(response.content).get("key")
    except (orjson.JSONDecodeError, AttributeError):
        key = None
    if not isinstance(key, str) or not key:
        raise AkinonBadResponse("login answer has no token ('key')")
    return key


def _origin(url: str, default: tuple[str, str, int] | None = None) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc and default is not None:
        return default  # a relative link stays on our host
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.scheme, (parts.hostname or "").lower(), port)


def _next_page(request: _PageRequest) -> _PageRequest:
    params = dict(request.params or {})
    params["page"] = str(request.page + 1)
    return _PageRequest(request.url, params, request.page + 1)


def _expect_object(body: Any, where: Where) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AkinonBadResponse(f"expected a JSON object at {where}")
    return body


def _sequential(
    fetch: Callable[[_PageRequest], _Page], first: _PageRequest
) -> Iterator[list[dict[str, Any]]]:
    request: _PageRequest | None = first
    for _ in range(MAX_PAGES):
        if request is None:
            return
        page = fetch(request)
        yield page.records
        request = page.following
    raise AkinonProtocolError(f"more than {MAX_PAGES} pages: is the server repeating `next`?")


def _prefetched(
    fetch: Callable[[_PageRequest], _Page], first: _PageRequest
) -> Iterator[list[dict[str, Any]]]:
    """Yield pages while the next one is already being fetched in a helper thread."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="akinon-prefetch")
    try:
        pending: Future[_Page] | None = pool.submit(fetch, first)
        for _ in range(MAX_PAGES):
            if pending is None:
                return
            page = pending.result()
            pending = pool.submit(fetch, page.following) if page.following else None
            yield page.records
        raise AkinonProtocolError(f"more than {MAX_PAGES} pages: is the server repeating `next`?")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
