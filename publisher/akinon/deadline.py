"""Bound a whole request by its wall-clock deadline: connect, TLS, send, headers and body.

httpx's timeouts bound each socket operation, not their sum: a server that sends its status
line and headers a byte at a time, each byte within the read timeout, or trickles its TLS
handshake, holds the request (and the step's lock) for as long as it likes; the body's own
check (`body.read_body`) starts only once the headers are in. So each socket operation of a
request is given the time left until the request's deadline at most, and one that starts
past it fails at once: the operations run one after another, so their sum cannot pass the
deadline (a write, though, only slice by slice: see `WRITE_SLICE`). No thread watches the
clock and nothing is closed late: the bound is the timeout of the operation that would
have waited.

The deadline belongs to the calling thread (httpx's sync client does a request's I/O in the
thread that sends it): `bounded` sets it around one request, and the network backend that
`install` gives the client's connection pools reads it. I/O outside `bounded` (a pool
closing its connections) runs with httpx's timeouts alone.

Not covered: resolving the host name (the system resolver has no timeout to pass) and
waiting for a free connection of the pool (httpx's pool timeout; only more than 100
requests at once from one client wait for one).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from types import TracebackType
from typing import Any, Final, TypeVar

import httpcore
import httpx

_T = TypeVar("_T")
# httpcore sends a buffer in a loop of sends, each given the whole timeout: a server that
# reads slowly would stretch one large write past the deadline, so writes go in slices.
WRITE_SLICE: Final = 16_384


class _Thread(threading.local):
    """The calling thread's deadline: (when, the seconds it was set from), or None."""

    def __init__(self) -> None:
        # Set up front: looking up an attribute a thread-local lacks costs an exception.
        self.bound: tuple[float, float] | None = None


_local = _Thread()


class DeadlinePassed(httpcore.TimeoutException):
    """The request's deadline passed; httpx raises it as an `httpx.TimeoutException`."""


class bounded:  # lower case: read as a function, `with bounded(...)`
    """Bound this thread's I/O in the block: none of it past `started + seconds`.

    A class, not a generator context manager: it runs once per request, and costs less so.
    """

    __slots__ = ("_bound", "_outer")

    def __init__(self, seconds: float, started: float) -> None:
        self._bound = (started + seconds, seconds)
        self._outer: tuple[float, float] | None = None

    def __enter__(self) -> None:
        self._outer = _local.bound
        _local.bound = self._bound

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _local.bound = self._outer


def passed(exc: BaseException) -> DeadlinePassed | None:
    """Return the `DeadlinePassed` behind an httpx exception, if the deadline is its cause."""
    cause = exc.__cause__
    return cause if isinstance(cause, DeadlinePassed) else None


def _within(timeout: float | None, doing: str, operation: Callable[..., _T], *args: Any) -> _T:
    """Run `operation(*args, timeout)`, or with the time left if the deadline comes first."""
    bound = _local.bound
    if bound is None:
        return operation(*args, timeout)
    at, seconds = bound
    left = at - time.monotonic()
    if left <= 0:
        raise _late(seconds, doing)
    if timeout is not None and timeout <= left:
        return operation(*args, timeout)
    try:
        return operation(*args, left)
    except httpcore.TimeoutException as timed_out:
        raise _late(seconds, doing) from timed_out  # the time left ran out, not httpx's timeout


def _late(seconds: float, doing: str) -> DeadlinePassed:
    return DeadlinePassed(f"the request deadline of {seconds:g} s passed {doing}")


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose reads, writes and TLS handshake end at the thread's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _within(timeout, "before the answer was in", self._stream.read, max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), WRITE_SLICE):
            piece = buffer[start : start + WRITE_SLICE] if len(buffer) > WRITE_SLICE else buffer
            _within(timeout, "while sending the request", self._stream.write, piece)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        start = self._stream.start_tls
        return _BoundedStream(
            _within(timeout, "during the TLS handshake", start, ssl_context, server_hostname)
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class BoundedBackend(httpcore.NetworkBackend):
    """httpcore's network backend with every operation bounded by the thread's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        connect = partial(
            self._backend.connect_tcp,
            host,
            port,
            local_address=local_address,
            socket_options=socket_options,
        )
        return _BoundedStream(_within(timeout, "while connecting", connect))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        connect = partial(self._backend.connect_unix_socket, path, socket_options=socket_options)
        return _BoundedStream(_within(timeout, "while connecting", connect))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def install(client: httpx.Client) -> None:
    """Give every connection pool of `client` the bounded backend (a proxy's pool too).

    httpx offers no way to pass httpcore a network backend, so this reaches into the pools
    it built (`HTTPTransport._pool`, `ConnectionPool._network_backend`; httpx is pinned in
    constraints.txt, and a renamed attribute fails here, at construction, not silently).
    A transport of another kind, such as a test's `MockTransport`, is left as it is.
    """
    for transport in (client._transport, *client._mounts.values()):
        if isinstance(transport, httpx.HTTPTransport):
            pool = transport._pool
            if not isinstance(pool._network_backend, BoundedBackend):
                pool._network_backend = BoundedBackend(pool._network_backend)
