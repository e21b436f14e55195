"""POLL edge: a synchronous client of Akinon's sales-channel API, over httpx.

Longer than the package's other modules (about 600 lines) for a reason: it is the one
place that turns Akinon's endpoints (pages, price retrieves, batch requests) into calls
with one retry loop, one login-once-on-401 rule and one bounded request. The parts that
stand alone live beside it: paging and its shapes (`paging`), pages in flight (`flight`,
`window`), pacing (`pacing`), bounded bodies (`body`), the whole request's deadline
(`deadline`), tokens (`auth`), error translation (`errors`).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Final

import httpx
import orjson

from publisher import metrics
from publisher.akinon.auth import (
    DEFAULT_TOKEN_CACHE,
    LOGIN_PATH,
    REFUSED_LOGIN,
    REFUSED_TOKEN,
    TokenCache,
)
from publisher.akinon.body import (
    ACCEPT_ENCODING,
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_MAX_BYTES,
    Bounds,
    TooLarge,
    read_body,
)
from publisher.akinon.deadline import bounded, install
from publisher.akinon.errors import (
    Cancelled,
    NotFound,
    Refused,
    Retry,
    Where,
    check_status,
    decode_body,
    gave_up,
    httpx_boundary,
)
from publisher.akinon.flight import windowed
from publisher.akinon.pacing import Pacer, pacer_for
from publisher.akinon.paging import (
    MAX_RECORDS_PER_SCAN,
    PAGE_CAP_MARGIN,
    Host,
    Page,
    PageRequest,
    origin,
    read_page,
    sequential,
)
from publisher.akinon.window import DEFAULT_CAP, Window
from publisher.backoff import compute_backoff
from publisher.config import Settings, check_akinon_url
from publisher.errors import (
    AkinonBadResponse,
    AkinonUnavailable,
    AuthError,
    ConfigError,
    UnsafeArgument,
)
from publisher.pages import RecordPage, decode_page
from publisher.ports import Ack
from publisher.records import Endpoint, Resource

log = logging.getLogger("publisher.akinon")

MAX_CONNECT_TIMEOUT: Final = 10.0


class AkinonClient:
    """Talk to one Akinon installation: list pages, single records, acknowledgements.

    One keep-alive `httpx.Client` serves every request; close the client when done (or use
    it as a context manager). Safe to share between threads.

    Each request is bounded by `request_deadline` seconds of wall-clock time as a whole:
    connecting, the TLS handshake, sending, the status line and headers, and the body (no
    socket wait goes past it, `deadline`); `timeout` bounds each wait on its own, and
    `max_response_bytes` the body's size. A request past its deadline is retried like any
    timeout, and fails as `AkinonUnavailable` when the retries run out.
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
        max_response_bytes: int = DEFAULT_MAX_BYTES,
        request_deadline: float = DEFAULT_DEADLINE_SECONDS,
        allow_http: bool = False,
        trust_env: bool = False,
        ca_bundle: str | None = None,
        max_in_flight: int = DEFAULT_CAP,
        max_requests_per_second: float = 0.0,
    ) -> None:
        if token is None and not (username and password):
            raise AuthError("give a token, or a username and a password")
        try:
            check_akinon_url(base_url, allow_http=allow_http)
        except ValueError as refused:
            raise ConfigError(f"AKINON_URL {refused}".replace("URL AKINON_URL", "URL")) from None
        self.base_url = base_url.rstrip("/")
        with httpx_boundary(Where(None, "base_url")):
            root = httpx.URL(self.base_url)
        self._origin = origin(root)
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
        self._down = False  # the last request found no connection to the host
        self._bounds = Bounds(max_response_bytes, request_deadline)
        self._pacer: Pacer = pacer_for(self._origin, max_requests_per_second)
        # How many pages in flight: one window for every scan of this client (see `window`).
        self.window = Window(max_in_flight)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, MAX_CONNECT_TIMEOUT)),
            # A redirect would carry the token wherever it points: never follow one.
            follow_redirects=False,
            transport=transport,
            headers={
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
                "User-Agent": "akinon-publisher",
            },
            # Proxy variables would carry the token through whatever proxy they name.
            trust_env=trust_env,
            verify=tls_context(ca_bundle),
        )
        # The request deadline bounds connect, TLS, send and headers too, not the body alone.
        install(self._http)

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
            "max_response_bytes": settings.akinon_max_response_bytes,
            "request_deadline": settings.akinon_request_deadline_seconds,
            "allow_http": settings.akinon_allow_http,
            "trust_env": settings.akinon_trust_env,
            "ca_bundle": settings.akinon_ca_bundle,
            "max_in_flight": settings.akinon_max_in_flight,
            "max_requests_per_second": settings.akinon_max_requests_per_second,
        }
        options.update(overrides)
        return cls(settings.akinon_url, **options)

    def __repr__(self) -> str:
        auth = "token" if self._fixed_token is not None else f"login:{self._username}"
        return f"AkinonClient({self._display!r}, auth={auth!r})"

    @property
    def trusts_env(self) -> bool:
        """Say whether proxy and certificate variables of the environment are used."""
        return self._http.trust_env

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

        `params` are extra query parameters (filters); ``page`` is ours, and ``limit`` too
        unless `params` gives one (the page size of one channel). Every
        element of a page is passed through as decoded, a non-object too: validating records
        one by one is the caller's job, so one bad record cannot sink its page.

        With `prefetch`, several pages are in flight at once (the client's `window`; see
        `publisher.akinon.flight`) and are yielded in page order. Stopping early
        (``close()``, ``break``, an exception) ends the fetch threads; an error fetching
        page N is raised when the caller asks for page N, never sooner. Without it, each
        page is fetched when asked for (acknowledging re-reads page 1).
        """
        channel_id = path_id(channel_id, "channel id")
        name = f"{resource.path}/{endpoint.suffix}".rstrip("/")
        params = dict(params or {})
        # A channel may have a page size of its own (`publisher.channels`).
        limit = int(params.pop("limit", self._page_size))
        query = {**params, "page": "1", "limit": str(limit)}
        path = f"/api/v1/channel/{channel_id}/{resource.path}/{endpoint.suffix}"
        first = PageRequest(httpx.URL(self.base_url + path, params=query), 1, limit)
        cap = self._max_pages
        if limit != self._page_size:
            cap = -(-MAX_RECORDS_PER_SCAN // limit) + PAGE_CAP_MARGIN

        decode = partial(decode_page, resource)

        window = self.window

        def fetch(request: PageRequest, stop: threading.Event | None) -> Page:
            where = Where(channel_id, name, request.page)
            body = self._call("GET", request.url, where, stop=stop, decode=decode, window=window)
            return read_page(body, request, where, Host(self._origin, self._display))

        scan = Where(channel_id, name)
        if prefetch:
            return windowed(fetch, first, cap, scan, window)
        return sequential(fetch, first, cap, scan)

    def get_price(
        self, channel_id: int, price_id: int, *, detailed: bool = False
    ) -> dict[str, Any]:
        """Return one extra product price by id."""
        channel_id, price_id = path_id(channel_id, "channel id"), path_id(price_id, "price id")
        suffix = "detailed/" if detailed else ""
        url = f"/api/v1/channel/{channel_id}/extra_product_prices/{price_id}/{suffix}"
        where = Where(channel_id, f"extra_product_prices/{price_id}/{suffix}".rstrip("/"))
        return _expect_object(self._call("GET", url, where), where)

    def channel(self, channel_id: int) -> dict[str, Any]:
        """Return the sales channel (``GET /api/v1/channels/{id}/``)."""
        channel_id = path_id(channel_id, "channel id")
        where = Where(channel_id, "channels")
        return _expect_object(self._call("GET", f"/api/v1/channels/{channel_id}/", where), where)

    def acknowledge(
        self, channel_id: int, resource: Resource, objects: Sequence[tuple[int, str]]
    ) -> None:
        """Acknowledge records through a batch request: open it, commit it, mark it done.

        `objects` are (record key, version_date) pairs, the version being the record's
        ``modified_date`` as it was *read*. No objects, no request. (The pipeline goes
        through `publisher.acks`, which writes the batch down before committing it.)
        """
        channel_id = path_id(channel_id, "channel id")
        if not objects:
            return
        acks = [Ack(key, version) for key, version in objects]
        pk = self.open_batch(channel_id)
        self.move_batch(channel_id, resource, pk, "commit", acks)
        self.move_batch(channel_id, resource, pk, "done", acks)

    def open_batch(self, channel_id: int) -> str:
        """Open a batch request on a channel (``POST .../batch_requests/``); return its pk."""
        opened = Where(channel_id, "batch_requests")
        body = {"channel": channel_id}
        batch = _expect_object(self._call("POST", _batches(channel_id), opened, body), opened)
        return str(_batch_pk(batch, opened))

    def batch_status(self, channel_id: int, pk: str) -> str | None:
        """Return a batch request's status, or None if Akinon does not know it (404)."""
        where = Where(channel_id, f"batch_requests/{pk}")
        try:
            batch = _expect_object(self._call("GET", _batches(channel_id, pk), where), where)
        except NotFound:
            return None
        status = batch.get("status")
        if not isinstance(status, str):
            raise AkinonBadResponse(f"the batch request has no `status` at {where}")
        return status

    def move_batch(
        self, channel_id: int, resource: Resource, pk: str, status: str, acks: Sequence[Ack]
    ) -> None:
        """PATCH a batch request to `status` with `acks` as its objects.

        A PATCH is not idempotent: a gateway may answer 504 after Akinon applied it, and the
        same PATCH again is refused ("Cannot move a batch from commit to commit"). So a
        retry first reads the batch, and sends the PATCH again only if the batch is not in
        `status` already.
        """
        where = Where(channel_id, f"batch_requests/{pk}")
        body: dict[str, Any] = {"status": status}
        if status == "commit":  # the content type is set once, by the commit
            body["content_type"] = resource.content_type
        if acks:
            body["objects"] = [ack.to_json(resource) for ack in acks]
        url = _batches(channel_id, pk)
        content = orjson.dumps(body)
        tried = False

        def attempt(token: str) -> Any:
            nonlocal tried
            if tried:
                current = self._once("GET", url, where, None, token)
                if isinstance(current, dict) and current.get("status") == status:
                    return current  # the earlier attempt was applied: its answer was lost
            tried = True
            return self._once("PATCH", url, where, content, token)

        self._call_with(where, None, attempt)

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
        window: Window | None = None,
    ) -> Any:
        """Send one authenticated request with retries; on a 401 log in afresh once.

        `decode` turns the body into its value (a page decoder for pages); `window`, the
        scan's, hears of response times and of requests to slow down.
        """
        content = None if payload is None else orjson.dumps(payload)
        return self._call_with(
            where,
            stop,
            partial(self._once, method, url, where, content, decode=decode, window=window),
            window,
        )

    def _call_with(
        self,
        where: Where,
        stop: threading.Event | None,
        attempt: Callable[[str], Any],
        window: Window | None = None,
    ) -> Any:
        """Run `attempt(token)` with retries; on a 401 log in afresh once."""
        token = self._token(where)
        try:
            return self._retrying(where, stop, partial(attempt, token), window)
        except Refused:
            if self._fixed_token is not None:
                raise AuthError(
                    f"Akinon refused the configured token (HTTP 401) at {where}; check AKINON_TOKEN"
                ) from None
            self._tokens.discard(self._cache_key, token)
        token = self._token(where)
        try:
            return self._retrying(where, stop, partial(attempt, token), window)
        except Refused:
            raise AuthError(
                f"Akinon refused a fresh token of user {self._username!r} (HTTP 401) at {where}; "
                "check the user's permissions"
            ) from None

    def _retrying(
        self,
        where: Where,
        stop: threading.Event | None,
        attempt_once: Callable[[], Any],
        window: Window | None = None,
    ) -> Any:
        """Run attempts until one succeeds; after `max_retries` retries raise what failed."""
        attempt = 0
        while True:
            if stop is not None and stop.is_set():
                raise Cancelled()
            try:
                result = attempt_once()
            except Retry as retry:
                if retry.unreachable and (self._down or attempt >= self._max_retries):
                    raise self._unreachable(retry, attempt + 1, where) from retry.__cause__
                if retry.slow_down and window is not None:
                    window.congested()
                if attempt >= self._max_retries:
                    raise gave_up(retry, attempt + 1, where) from retry.__cause__
                metrics.akinon_retried(retry_cause(retry))
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
            else:
                self._down = False
                return result

    def _unreachable(self, retry: Retry, attempts: int, where: Where) -> AkinonUnavailable:
        """Say the host is down, in one line; later requests then try once, not a cycle.

        Each request retrying on its own would cost every step of a run (every task of a
        worker process) a whole retry cycle against a host that is known to be down; the
        first success ends the outage.
        """
        if self._down:
            return AkinonUnavailable(
                f"Akinon at {self._display} is still unreachable: {retry} (one attempt at "
                f"{where}; no retries until it answers again)"
            )
        self._down = True
        return AkinonUnavailable(
            f"Akinon at {self._display} is unreachable: {retry} (gave up after {attempts} "
            f"attempts at {where}); check AKINON_URL and the network"
        )

    def _pause(self, delay: float, stop: threading.Event | None) -> None:
        if stop is not None and self._sleep is time.sleep:
            # On the real clock, a prefetch thread waits on its stop flag instead, so a
            # caller that stops iterating is not held up by a retry pause (an injected
            # sleep, as in tests, is used as given).
            stop.wait(delay)
        else:
            self._sleep(delay)
        if stop is not None and stop.is_set():
            raise Cancelled()

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
        window: Window | None = None,
    ) -> Any:
        """Make one attempt: wait for its turn, send, check the status, decode the body.

        From sending on, the attempt is bounded by the request deadline as a whole (connect,
        TLS, send, headers: `deadline.bounded`; the body: `read_body`, which checks it too).
        """
        headers = {} if token is None else {"Authorization": f"Token {token}"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        turn = self._pacer.reserve()  # the process's ceiling on requests to this host
        if turn > 0:
            self._sleep(turn)
        started = time.monotonic()
        try:
            with (
                bounded(self._bounds.deadline_seconds, started),
                httpx_boundary(where),
                self._http.stream(method, url, headers=headers, content=content) as response,
            ):
                try:
                    body = read_body(response, self._bounds, started)
                except TooLarge as large:
                    raise AkinonBadResponse(
                        f"{large} at {where} (AKINON_MAX_RESPONSE_BYTES); lower "
                        "AKINON_PAGE_SIZE or raise the bound"
                    ) from None
        except Retry:
            metrics.akinon_answered("network")
            raise
        metrics.akinon_answered(response.status_code)
        if window is not None:
            window.observe(time.monotonic() - started)
        check_status(response, body, where, refused, self._backoff_cap)
        return _stamped(decode_body(response, body, decode), response)

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
        except Refused as refused:
            raise AuthError(
                f"Akinon refused the login of user {self._username!r} (HTTP {refused.status}); "
                "check AKINON_USERNAME/AKINON_PASSWORD"
            ) from None
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise AkinonBadResponse(f"the login answer has no token (`key`) at {where}")
        return key


def retry_cause(retry: Retry) -> str:
    """Name a retry's cause for the metrics: the HTTP status, `bad_body` or `network`."""
    if retry.bad_body:
        return "bad_body"
    text = str(retry)
    return text[5:] if text.startswith("HTTP ") else "network"


def path_id(value: object, what: str) -> int:
    """Return `value` if it is a positive `int` (not a bool); request paths hold nothing else."""
    if type(value) is int and value > 0:
        return value
    raise UnsafeArgument(f"refusing to build an Akinon request path: {what} {value!r}")


def tls_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """Return what httpx verifies certificates with: the system's CAs, or a bundle's."""
    if ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"AKINON_CA_BUNDLE cannot be read as PEM certificates ({exc})") from None


def _stamped(value: Any, response: httpx.Response) -> Any:
    """Give a decoded page the server's clock (its `Date` header), if it is readable.

    A record dated later than that clock plus a small skew is rejected (`publisher.bounds`):
    Akinon's clock, not ours, says what the future is.
    """
    page = value.get("results") if isinstance(value, dict) else value
    if isinstance(page, RecordPage):
        page.served_at = server_clock(response.headers.get("Date"))
    return value


def server_clock(header: str | None) -> datetime | None:
    """Read an HTTP `Date` header as an aware moment; None if there is none or it is odd."""
    if not header:
        return None
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _expect_object(body: Any, where: Where) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AkinonBadResponse(f"expected a JSON object, got {type(body).__name__} at {where}")
    return body


def _batches(channel_id: int, pk: str | None = None) -> str:
    """Return the URL of a channel's batch requests, or of one of them."""
    base = f"/api/v1/channel/{channel_id}/batch_requests/"
    return base if pk is None else f"{base}{pk}/"


def _batch_pk(batch: dict[str, Any], where: Where) -> int | str:
    pk = batch.get("pk")
    if isinstance(pk, int) and not isinstance(pk, bool):
        return pk
    if isinstance(pk, str) and pk and pk.replace("-", "").isalnum():
        return pk
    raise AkinonBadResponse(f"the new batch request has no usable `pk` at {where}")
