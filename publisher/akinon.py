"""POLL edge: a synchronous client of Akinon's sales-channel API, over httpx.

What this client takes care of, so nothing above it has to:

- auth: ``Authorization: Token <key>``, the key either given or obtained by logging in. A
  login's token is shared by every client of the process for the same (base URL, user), a
  401 triggers one fresh login and one more try, and logins are capped (3 per 6 minutes)
  so a wrong password cannot hammer the login endpoint;
- both list shapes on every list endpoint (a plain array, or ``{count, next, previous,
  results}``), paging with ``page``/``limit``, and fetching the next page while the caller
  works on the current one;
- the token only ever goes to the scheme, host and port of the base URL: a ``next`` link
  elsewhere is refused before any request to it, and redirects are never followed;
- timeouts always set; retries with capped, jittered back-off;
- every httpx error is translated in one place (`_httpx_boundary`) into our own.

How a failure surfaces (every exception is from `publisher.errors`):

    connect error, timeout, cut-off body,    retried with back-off  -> AkinonUnavailable
    429 (Retry-After honoured), any 5xx
    invalid JSON, undecodable body           retried with back-off  -> AkinonBadResponse
    JSON that is neither list shape          at once                -> AkinonBadResponse
    401                                      one fresh login + try  -> AuthError
                                             (at once with a fixed token)
    any 3xx, other 4xx, a foreign `next`,    never retried          -> AkinonProtocolError
    an unsupported URL scheme

Every 5xx is retried, 500 included: Akinon's own framework does the same, a 500 from a
Django back office is most often a passing database or worker problem, and the cost is
bounded by `max_retries`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Final

import httpx
import orjson

from publisher.backoff import compute_backoff, parse_retry_after
from publisher.config import Settings
from publisher.errors import (
    AkinonBadResponse,
    AkinonProtocolError,
    AkinonUnavailable,
    AuthError,
    PublisherError,
    RetryableError,
)
from publisher.pages import RecordPage, decode_page
from publisher.records import Endpoint, Resource

log = logging.getLogger(__name__)

LOGIN_PATH: Final = "/api/v1/auth/login/"
# Statuses that mean "these credentials are refused" rather than "this request is wrong".
# Login views in the django-rest-auth style answer bad credentials with 400, Akinon's
# documentation says 401; both are a refused login.
REFUSED_TOKEN: Final = frozenset({401})
REFUSED_LOGIN: Final = frozenset({400, 401, 403})
# RFC 9110 lets a 503 carry Retry-After as well as a 429.
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
# The safety cap on pages per scan: far above any real channel, low enough that a server
# repeating `next` (or ignoring `page`) ends in an error instead of an endless loop.
MAX_RECORDS_PER_SCAN: Final = 10_000_000
PAGE_CAP_MARGIN: Final = 100
MAX_CONNECT_TIMEOUT: Final = 10.0
SNIPPET_BYTES: Final = 200
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


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


@dataclass(frozen=True, slots=True)
class Where:
    """Name a request in errors and logs: channel, endpoint and page, as key=value."""

    channel_id: int | None
    endpoint: str
    page: int | None = None

    def __str__(self) -> str:
        parts = [] if self.channel_id is None else [f"channel={self.channel_id}"]
        parts.append(f"endpoint={self.endpoint}")
        if self.page is not None:
            parts.append(f"page={self.page}")
        return " ".join(parts)


class _Retry(Exception):
    """Internal: this attempt failed in a way another attempt may not."""

    def __init__(self, cause: str, *, delay: float | None = None, bad_body: bool = False):
        super().__init__(cause)
        self.delay = delay  # the server's Retry-After, when it gave one
        self.bad_body = bad_body


class _Refused(Exception):
    """Internal: Akinon refused our credentials."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _Cancelled(Exception):
    """Internal: the caller stopped iterating; the prefetch thread gives up its fetch."""


@contextmanager
def _httpx_boundary(where: Where) -> Iterator[None]:
    """Translate httpx's exceptions: the only place in the package that catches them."""
    try:
        yield
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise _translate(exc, where) from exc


def _translate(exc: Exception, where: Where) -> Exception:
    """Map one httpx exception to a retry signal (may pass) or a protocol error (will not)."""
    cause = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.ProxyError):
        return _Retry(cause)
    if isinstance(exc, httpx.RemoteProtocolError):  # connection closed, body cut short
        return _Retry(cause)
    if isinstance(exc, httpx.DecodingError):  # a body its Content-Encoding cannot undo
        return _Retry(cause, bad_body=True)
    # An unsupported scheme, a malformed URL, a misuse of the protocol: retrying won't help.
    return AkinonProtocolError(f"{cause} at {where}")


class AkinonClient:
    """Talk to one Akinon installation: list pages, single records, acknowledgements.

    One keep-alive `httpx.Client` serves every request; close the client when done (or use
    it as a context manager). Safe to share between threads.
    """

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
        max_pages: int | None = None,
    ) -> None:
        if token is None and not (username and password):
            raise AuthError("give a token, or a username and a password")
        self.base_url = base_url.rstrip("/")
        with _httpx_boundary(Where(None, "base_url")):
            root = httpx.URL(self.base_url)
        self._origin = _origin(root)
        self._display = str(root.copy_with(userinfo=b""))
        self._fixed_token = token
        self._username = username
        self._password = password
        self._page_size = page_size
        self._max_pages = max_pages or -(-MAX_RECORDS_PER_SCAN // page_size) + PAGE_CAP_MARGIN
        self._max_retries = max_retries
        self._backoff_cap = backoff_cap
        self._tokens = token_cache if token_cache is not None else DEFAULT_TOKEN_CACHE
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, MAX_CONNECT_TIMEOUT)),
            # A redirect would carry the token wherever it points: never follow one.
            follow_redirects=False,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "akinon-publisher"},
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> AkinonClient:
        """Build a client from the settings; keyword arguments override or add options."""
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
        auth = "token" if self._fixed_token is not None else f"login:{self._username}"
        return f"AkinonClient({self._display!r}, auth={auth!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> AkinonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- endpoints

    def iter_pages(
        self,
        channel_id: int,
        resource: Resource,
        endpoint: Endpoint,
        params: Mapping[str, str] | None = None,
        *,
        prefetch: bool = True,
    ) -> Iterator[RecordPage]:
        """Yield the records of each page, first page first, lazily.

        `params` are extra query parameters (filters); ``page`` and ``limit`` are ours. Every
        element of a page is passed through as decoded, a non-object too: validating records
        one by one is the caller's job, so one bad record cannot sink its page.

        With `prefetch`, a helper thread fetches page N+1 while the caller works on page N,
        whenever the next page is known. Stopping early (``close()``, ``break``, an
        exception) ends the helper; an error fetching page N+1 is raised when the caller asks
        for page N+1, never sooner.
        """
        name = f"{resource.path}/{endpoint.suffix}".rstrip("/")
        query = {**(params or {}), "page": "1", "limit": str(self._page_size)}
        path = f"/api/v1/channel/{channel_id}/{resource.path}/{endpoint.suffix}"
        first = _PageRequest(httpx.URL(self.base_url + path, params=query), 1, self._page_size)

        decode = partial(decode_page, resource)

        def fetch(request: _PageRequest, stop: threading.Event | None) -> _Page:
            return self._fetch_page(Where(channel_id, name, request.page), request, stop, decode)

        scan = Where(channel_id, name)
        if prefetch:
            return _prefetched(fetch, first, self._max_pages, scan)
        return _sequential(fetch, first, self._max_pages, scan)

    def get_price(
        self, channel_id: int, price_id: int, *, detailed: bool = False
    ) -> dict[str, Any]:
        """Return one extra product price by id."""
        suffix = "detailed/" if detailed else ""
        url = f"/api/v1/channel/{channel_id}/extra_product_prices/{price_id}/{suffix}"
        where = Where(channel_id, f"extra_product_prices/{price_id}/{suffix}".rstrip("/"))
        return _expect_object(self._call("GET", url, where), where)

    def channel(self, channel_id: int) -> dict[str, Any]:
        """Return the sales channel (``GET /api/v1/channels/{id}/``)."""
        where = Where(channel_id, "channels")
        return _expect_object(self._call("GET", f"/api/v1/channels/{channel_id}/", where), where)

    def acknowledge(
        self, channel_id: int, resource: Resource, objects: Sequence[tuple[int, str]]
    ) -> None:
        """Acknowledge records through a batch request: open it, commit it, mark it done.

        `objects` are (record key, version_date) pairs, the version being the record's
        ``modified_date`` as it was *read*: a change that lands after our read stays in the
        ``updates`` queue instead of being acknowledged unseen. No objects, no request.
        """
        if not objects:
            return
        base = f"/api/v1/channel/{channel_id}/batch_requests/"
        opened = Where(channel_id, "batch_requests")
        batch = _expect_object(self._call("POST", base, opened, {"channel": channel_id}), opened)
        pk = _batch_pk(batch, opened)
        content_type = resource.content_type
        items = [
            {"pk": key, "version_date": version, "content_type": content_type}
            for key, version in objects
        ]
        where = Where(channel_id, f"batch_requests/{pk}")
        commit = {"status": "commit", "content_type": content_type, "objects": items}
        self._call("PATCH", f"{base}{pk}/", where, commit)
        self._call("PATCH", f"{base}{pk}/", where, {"status": "done", "objects": items})

    # ---------------------------------------------------------------------------- paging

    def _fetch_page(
        self,
        where: Where,
        request: _PageRequest,
        stop: threading.Event | None,
        decode: Callable[[bytes], Any],
    ) -> _Page:
        body = self._call("GET", request.url, where, stop=stop, decode=decode)
        if isinstance(body, RecordPage):
            return _array_page(body, request, where)
        if isinstance(body, dict) and isinstance(body.get("results"), RecordPage):
            return _Page(body["results"], self._following(body.get("next"), request, where))
        raise AkinonBadResponse(
            f"a page is neither a JSON array nor an object with a `results` array "
            f"(got {type(body).__name__}) at {where}"
        )

    def _following(
        self, link: Any, request: _PageRequest, where: Where
    ) -> _PageRequest | PublisherError | None:
        """Return the page a `next` link points to, or the error to raise instead of it."""
        if not link:
            return None
        if not isinstance(link, str):
            return AkinonProtocolError(f"`next` is not a link ({type(link).__name__}) at {where}")
        try:
            with _httpx_boundary(where):
                target = request.url.join(link)  # a relative link stays on our host
        except AkinonProtocolError as invalid:
            return invalid
        if _origin(target) != self._origin:
            foreign = f"{target.scheme}://{target.host}:{_origin(target)[2]}"
            return AkinonProtocolError(
                f"refusing a `next` link to another host ({foreign}) at {where}: "
                f"the token is only sent to {self._display}"
            )
        if target == request.url:
            return AkinonProtocolError(f"`next` points back to the same page at {where}")
        page = _int_param(target, "page", request.page + 1)
        return _PageRequest(target, page, _int_param(target, "limit", request.limit))

    # ---------------------------------------------------------------------------- requests

    def _call(
        self,
        method: str,
        url: str | httpx.URL,
        where: Where,
        payload: Any = None,
        *,
        stop: threading.Event | None = None,
        decode: Callable[[bytes], Any] = orjson.loads,
    ) -> Any:
        """Send one authenticated request with retries; on a 401 log in afresh once.

        `decode` turns the body into its value (a page decoder for pages).
        """
        content = None if payload is None else orjson.dumps(payload)
        token = self._token(where)
        try:
            return self._retrying(
                where, stop, partial(self._once, method, url, where, content, token, decode=decode)
            )
        except _Refused:
            if self._fixed_token is not None:
                raise AuthError(
                    f"Akinon refused the configured token (HTTP 401) at {where}; check AKINON_TOKEN"
                ) from None
            self._tokens.discard(self._cache_key, token)
        token = self._token(where)
        try:
            return self._retrying(
                where, stop, partial(self._once, method, url, where, content, token, decode=decode)
            )
        except _Refused:
            raise AuthError(
                f"Akinon refused a fresh token of user {self._username!r} (HTTP 401) at {where}; "
                "check the user's permissions"
            ) from None

    def _retrying(
        self, where: Where, stop: threading.Event | None, attempt_once: Callable[[], Any]
    ) -> Any:
        """Run attempts until one succeeds; after `max_retries` retries raise what failed."""
        attempt = 0
        while True:
            if stop is not None and stop.is_set():
                raise _Cancelled()
            try:
                return attempt_once()
            except _Retry as retry:
                if attempt >= self._max_retries:
                    raise _gave_up(retry, attempt + 1, where) from retry.__cause__
                delay = retry.delay
                if delay is None:
                    delay = compute_backoff(attempt, cap=self._backoff_cap, rng=self._rng)
                log.warning(
                    "akinon.retry %s attempt=%d max_retries=%d wait_s=%.2f cause=%r",
                    where,
                    attempt + 1,
                    self._max_retries,
                    delay,
                    str(retry),
                )
                self._pause(delay, stop)
                attempt += 1

    def _pause(self, delay: float, stop: threading.Event | None) -> None:
        if stop is not None and self._sleep is time.sleep:
            # On the real clock, a prefetch thread waits on its stop flag instead, so a
            # caller that stops iterating is not held up by a retry pause (an injected
            # sleep, as in tests, is used as given).
            stop.wait(delay)
        else:
            self._sleep(delay)
        if stop is not None and stop.is_set():
            raise _Cancelled()

    def _once(
        self,
        method: str,
        url: str | httpx.URL,
        where: Where,
        content: bytes | None,
        token: str | None,
        refused: frozenset[int] = REFUSED_TOKEN,
        *,
        decode: Callable[[bytes], Any] = orjson.loads,
    ) -> Any:
        """Make one attempt: send, check the status, decode the JSON body."""
        headers = {} if token is None else {"Authorization": f"Token {token}"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        with _httpx_boundary(where):
            response = self._http.request(method, url, headers=headers, content=content)
        _check_status(response, where, refused, self._backoff_cap)
        return _decode(response, decode)

    # ---------------------------------------------------------------------------- auth

    @property
    def _cache_key(self) -> tuple[str, str]:
        return (self.base_url, self._username or "")

    def _token(self, where: Where) -> str:
        if self._fixed_token is not None:
            return self._fixed_token
        key = self._cache_key
        token = self._tokens.get(key)
        if token is not None:
            return token
        with self._tokens.login_lock(key):
            token = self._tokens.get(key)  # another thread may have logged in meanwhile
            if token is None:
                token = self._login(replace(where, endpoint="auth/login", page=None))
                self._tokens.put(key, token)
            return token

    def _login(self, where: Where) -> str:
        if not self._tokens.allow_login(self._cache_key):
            minutes = self._tokens.window / 60
            raise AuthError(
                f"login cap reached for user {self._username!r} at {self._display} "
                f"({self._tokens.max_logins} logins per {minutes:g} minutes); "
                "check AKINON_USERNAME/AKINON_PASSWORD"
            )
        credentials = orjson.dumps({"username": self._username, "password": self._password})
        once = partial(self._once, "POST", LOGIN_PATH, where, credentials, None, REFUSED_LOGIN)
        try:
            body = self._retrying(where, None, once)
        except _Refused as refused:
            raise AuthError(
                f"Akinon refused the login of user {self._username!r} (HTTP {refused.status}); "
                "check AKINON_USERNAME/AKINON_PASSWORD"
            ) from None
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise AkinonBadResponse(f"the login answer has no token (`key`) at {where}")
        return key


# -------------------------------------------------------------------------------- paging


@dataclass(frozen=True, slots=True)
class _PageRequest:
    url: httpx.URL
    page: int
    limit: int
    # The first record of the page before (plain arrays): notices a server ignoring `page`.
    previous_first: Any = None


@dataclass(frozen=True, slots=True)
class _Page:
    records: RecordPage
    # The page to ask for next, an error to raise once these records are handed over, or
    # None at the end.
    following: _PageRequest | PublisherError | None


def _array_page(body: RecordPage, request: _PageRequest, where: Where) -> _Page:
    """Decide where a plain-array page leads.

    Akinon's own client stops at a plain array. Ours asks for `limit` records, so a full
    array may hide more behind it: ask for the next page while an array is exactly full,
    stop at a shorter (or empty) one. A longer one means the server ignored `limit`, and so
    most likely `page` too: it is the whole list.
    """
    # A typed page's row tells its first record from another without decoding it whole (that
    # would take a second pass over the body, on every page).
    if request.previous_first is not None and body and body.row(0) == request.previous_first:
        log.warning("akinon.page_repeated %s: the server seems to ignore `page`; stopping", where)
        return _Page(RecordPage.plain(body.resource, []), None)
    if len(body) != request.limit:
        return _Page(body, None)
    url = request.url.copy_set_param("page", str(request.page + 1))
    return _Page(body, _PageRequest(url, request.page + 1, request.limit, body.row(0)))


def _step(
    page: _Page, count: int, max_pages: int, scan: Where
) -> _PageRequest | PublisherError | None:
    if isinstance(page.following, _PageRequest) and count >= max_pages:
        return AkinonProtocolError(
            f"more than {max_pages} pages at {scan}: does the server repeat `next`?"
        )
    return page.following


def _sequential(
    fetch: Callable[[_PageRequest, threading.Event | None], _Page],
    first: _PageRequest,
    max_pages: int,
    scan: Where,
) -> Iterator[RecordPage]:
    """Fetch each page only when the caller asks for it."""
    step: _PageRequest | PublisherError | None = first
    count = 0
    while isinstance(step, _PageRequest):
        page = fetch(step, None)
        count += 1
        step = _step(page, count, max_pages, scan)
        yield page.records
    if step is not None:
        raise step


def _prefetched(
    fetch: Callable[[_PageRequest, threading.Event | None], _Page],
    first: _PageRequest,
    max_pages: int,
    scan: Where,
) -> Iterator[RecordPage]:
    """Yield each page while a helper thread already fetches the one after it."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="akinon-prefetch")
    try:
        pending: Future[_Page] | None = pool.submit(fetch, first, stop)
        count = 0
        while pending is not None:
            page = pending.result()  # re-raises, here, an error of this very page
            count += 1
            step = _step(page, count, max_pages, scan)
            pending = pool.submit(fetch, step, stop) if isinstance(step, _PageRequest) else None
            yield page.records
            if step is not None and not isinstance(step, _PageRequest):
                raise step
    finally:
        # The caller may stop early (close, break, an exception): end the helper with us.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


# -------------------------------------------------------------------------------- helpers


def _check_status(
    response: httpx.Response, where: Where, refused: frozenset[int], cap: float
) -> None:
    """Raise the signal or error a non-2xx status calls for."""
    status = response.status_code
    if status < 300:
        return
    if status in refused:
        raise _Refused(status)
    if status == 429 or status >= 500:
        retry_after = response.headers.get("Retry-After")
        delay = parse_retry_after(retry_after, cap=cap) if status in RETRY_AFTER_STATUSES else None
        raise _Retry(f"HTTP {status}", delay=delay)
    if status < 400:
        target = response.headers.get("Location", "?")
        raise AkinonProtocolError(
            f"HTTP {status}: refusing to follow a redirect to {target} at {where}"
        )
    raise AkinonProtocolError(f"HTTP {status} at {where}: {_snippet(response)}")


def _decode(response: httpx.Response, decode: Callable[[bytes], Any]) -> Any:
    if response.status_code == 204:
        return None
    try:
        return decode(response.content)
    except orjson.JSONDecodeError as exc:
        raise _Retry(f"invalid JSON ({exc})", bad_body=True) from None


def _gave_up(retry: _Retry, attempts: int, where: Where) -> RetryableError:
    kind = AkinonBadResponse if retry.bad_body else AkinonUnavailable
    return kind(f"gave up after {attempts} attempts at {where}; last cause: {retry}")


def _snippet(response: httpx.Response) -> str:
    text = response.content[:SNIPPET_BYTES].decode("utf-8", errors="replace")
    return " ".join(text.split()) or "(empty body)"


def _origin(url: httpx.URL) -> Origin:
    return (url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0))


def _int_param(url: httpx.URL, name: str, default: int) -> int:
    value = url.params.get(name, "")
    return int(value) if value.isdigit() else default


def _expect_object(body: Any, where: Where) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AkinonBadResponse(f"expected a JSON object, got {type(body).__name__} at {where}")
    return body


def _batch_pk(batch: dict[str, Any], where: Where) -> int | str:
    pk = batch.get("pk")
    if isinstance(pk, int) and not isinstance(pk, bool):
        return pk
    if isinstance(pk, str) and pk and pk.replace("-", "").isalnum():
        return pk
    raise AkinonBadResponse(f"the new batch request has no usable `pk` at {where}")
