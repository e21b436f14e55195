"""The request deadline at the socket: each operation gets the time left at most (issue 17).

The client-level behaviour (a dripping server cut at the deadline) is in
test_akinon_hostile; here, the rule itself, with a stream that records what it was given.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpcore
import pytest

from publisher.akinon.deadline import BoundedBackend, DeadlinePassed, bounded


class Recording(httpcore.NetworkStream):
    """A connection that records each operation's timeout; `slow` ones time out."""

    def __init__(self, *, slow: bool = False) -> None:
        self.timeouts: list[float | None] = []
        self.written: list[int] = []
        self.slow = slow

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.timeouts.append(timeout)
        if self.slow:
            raise httpcore.ReadTimeout("timed out")
        return b"x"

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.timeouts.append(timeout)
        self.written.append(len(buffer))

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self.timeouts.append(timeout)
        return self

    def get_extra_info(self, info: str) -> Any:
        return info


class Backend(httpcore.NetworkBackend):
    def __init__(self, stream: Recording) -> None:
        self.stream = stream

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, **_: Any
    ) -> Recording:
        self.stream.timeouts.append(timeout)
        return self.stream


def connect(stream: Recording) -> httpcore.NetworkStream:
    return BoundedBackend(Backend(stream)).connect_tcp("127.0.0.1", 80, timeout=5.0)


def test_outside_a_request_the_timeouts_are_httpx_own() -> None:
    stream = Recording()
    connection = connect(stream)
    connection.read(10, timeout=5.0)
    connection.write(b"x", timeout=None)
    assert stream.timeouts == [5.0, 5.0, None]


def test_within_a_request_no_operation_waits_past_the_deadline() -> None:
    stream = Recording()
    with bounded(1.0, time.monotonic()):
        connection = connect(stream)
        connection.start_tls(ssl.create_default_context(), "host", timeout=5.0)
        connection.read(10, timeout=0.25)  # httpx's own timeout, shorter, stands
        connection.write(b"x", timeout=None)
    connection.read(10, timeout=5.0)  # the request is over: its deadline is gone
    connect_, tls, short, unbounded, after = stream.timeouts
    assert all(t is not None and 0.9 < t <= 1.0 for t in (connect_, tls, unbounded))
    assert short == 0.25 and after == 5.0


def test_an_operation_past_the_deadline_fails_without_waiting() -> None:
    stream = Recording()
    connection = connect(stream)
    with bounded(1.0, time.monotonic() - 2), pytest.raises(DeadlinePassed) as caught:
        connection.read(10, timeout=5.0)
    assert stream.timeouts == [5.0]  # the connect, outside; the read never ran
    assert str(caught.value) == "the request deadline of 1 s passed before the answer was in"


def test_the_time_left_running_out_is_the_deadline_not_a_timeout() -> None:
    stream = Recording(slow=True)
    connection = connect(stream)
    with bounded(1.0, time.monotonic()), pytest.raises(DeadlinePassed, match="deadline"):
        connection.read(10, timeout=5.0)
    with bounded(10.0, time.monotonic()), pytest.raises(httpcore.ReadTimeout) as caught:
        connection.read(10, timeout=5.0)  # httpx's timeout came first: its error stands
    assert not isinstance(caught.value, DeadlinePassed)


def test_a_large_write_goes_in_slices_each_given_the_time_left() -> None:
    stream = Recording()
    connection = connect(stream)
    with bounded(1.0, time.monotonic()):
        connection.write(b"x" * 40_000, timeout=5.0)
    assert stream.written == [16_384, 16_384, 7_232]
    slices = stream.timeouts[1:]
    assert all(t is not None and t <= 1.0 for t in slices)
    assert slices == sorted(slices, reverse=True)  # each slice gets what is left, no more
