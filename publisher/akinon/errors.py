"""Translate what goes wrong talking to Akinon: httpx's errors, statuses, bodies (one place).

Everything raised here is either one of `publisher.errors` or an internal signal the client's
retry loop acts on (`Retry`: another attempt may work; `Refused`: the credentials were
refused; `Cancelled`: the caller stopped iterating). Nothing above this package catches an
httpx exception: `httpx_boundary` is the only place that does.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

from publisher.akinon.deadline import passed
from publisher.backoff import parse_retry_after
from publisher.errors import (
    AkinonBadResponse,
    AkinonProtocolError,
    AkinonUnavailable,
    RetryableError,
)

# RFC 9110 lets a 503 carry Retry-After as well as a 429.
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
SNIPPET_BYTES: Final = 200


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


class Retry(Exception):
    """Internal: this attempt failed in a way another attempt may not."""

    def __init__(
        self,
        cause: str,
        *,
        delay: float | None = None,
        bad_body: bool = False,
        unreachable: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(cause)
        self.delay = delay  # the server's Retry-After, when it gave one
        self.bad_body = bad_body
        self.unreachable = unreachable  # no connection could be made: the host is down
        self.status = status

    @property
    def slow_down(self) -> bool:
        """Say whether the server asked us to slow down (429, 503)."""
        return self.status in RETRY_AFTER_STATUSES


class Refused(Exception):
    """Internal: Akinon refused our credentials."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class NotFound(AkinonProtocolError):
    """Akinon answered 404: what was asked for does not exist (a batch request, a record)."""


class Cancelled(Exception):
    """Internal: the caller stopped iterating; the prefetch thread gives up its fetch."""


@contextmanager
def httpx_boundary(where: Where) -> Iterator[None]:
    """Translate httpx's exceptions: the only place in the package that catches them."""
    try:
        yield
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise translate(exc, where) from exc


def translate(exc: Exception, where: Where) -> Exception:
    """Map one httpx exception to a retry signal (may pass) or a protocol error (will not)."""
    late = passed(exc)
    if late is not None:  # said as the body's deadline says it, not as a timeout of httpx
        return Retry(str(late))
    cause = f"{type(exc).__name__}: {exc}"
    unverified = _certificate_error(exc)
    if unverified is not None:
        return AkinonProtocolError(
            f"the TLS certificate of Akinon did not verify ({unverified.verify_message}) at "
            f"{where}; if Akinon uses a private CA, set AKINON_CA_BUNDLE to its PEM file"
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return Retry(cause, unreachable=True)
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.ProxyError):
        return Retry(cause)
    if isinstance(exc, httpx.RemoteProtocolError):  # connection closed, body cut short
        return Retry(cause)
    if isinstance(exc, httpx.DecodingError):  # a body its Content-Encoding cannot undo
        return Retry(cause, bad_body=True)
    # An unsupported scheme, a malformed URL, a misuse of the protocol: retrying won't help.
    return AkinonProtocolError(f"{cause} at {where}")


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """Find a certificate verification failure behind a connect error (httpx wraps it twice).

    Retrying cannot fix it: it is a configuration matter, not an outage.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def check_status(
    response: httpx.Response, body: bytes, where: Where, refused: frozenset[int], cap: float
) -> None:
    """Raise the signal or error a non-2xx status calls for."""
    status = response.status_code
    if status < 300:
        return
    if status in refused:
        raise Refused(status)
    if status == 429 or status >= 500:
        retry_after = response.headers.get("Retry-After")
        delay = parse_retry_after(retry_after, cap=cap) if status in RETRY_AFTER_STATUSES else None
        raise Retry(f"HTTP {status}", delay=delay, status=status)
    if status < 400:
        target = response.headers.get("Location", "?")
        raise AkinonProtocolError(
            f"HTTP {status}: refusing to follow a redirect to {target} at {where}"
        )
    hint = not_found_hint(response.request.url, where) if status == 404 else ""
    kind = NotFound if status == 404 else AkinonProtocolError
    raise kind(f"HTTP {status} at {where}: {snippet(body)}{hint}")


def not_found_hint(url: httpx.URL, where: Where) -> str:
    """Say what to fix when Akinon answers 404: the base URL, or the channel."""
    path = url.path
    api = path.rfind("/api/v1/")
    root = str(url.copy_with(path=path[:api] or "/", query=None, fragment=None)).rstrip("/")
    if path[:api].endswith("/api/v1"):
        good = root.removesuffix("/api/v1")
        return f" (AKINON_URL must be the server's root, without /api/v1: set it to {good})"
    if where.channel_id is not None:
        return (
            f" (no sales channel {where.channel_id} here? check AKINON_CHANNELS; and that "
            f"AKINON_URL is the server's root: {root})"
        )
    return f" (check AKINON_URL, now {root}: it must be the server's root)"


def decode_body(response: httpx.Response, body: bytes, decode: Callable[[bytes], Any]) -> Any:
    if response.status_code == 204:
        return None
    try:
        return decode(body)
    except orjson.JSONDecodeError as exc:
        raise Retry(f"invalid JSON ({exc})", bad_body=True) from None


def gave_up(retry: Retry, attempts: int, where: Where) -> RetryableError:
    kind = AkinonBadResponse if retry.bad_body else AkinonUnavailable
    return kind(f"gave up after {attempts} attempts at {where}; last cause: {retry}")


def snippet(body: bytes) -> str:
    text = body[:SNIPPET_BYTES].decode("utf-8", errors="replace")
    return " ".join(text.split()) or "(empty body)"
