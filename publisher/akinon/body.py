"""Read a response body within bounds: bytes on the wire, bytes once decompressed, a deadline.

Without them one answer can take a worker down: an endless chunked body grows without end,
a 200 KB gzip bomb inflates to gigabytes, and a server that drips a byte every few seconds
never trips the read timeout (which bounds each read, not the whole answer). So the body is
read raw, in small chunks, and inflated here with a cap on each chunk's output (zlib's
`max_length`), never past the bound; the deadline is checked as bytes arrive (and no socket
read waits past it, `deadline`: what bounds the status line and headers too), and a server
silent for longer than the read timeout is cut by that timeout.

We ask only for gzip and deflate (`ACCEPT_ENCODING`); a body in another coding is a bad body.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Final

import httpx

from publisher.akinon.errors import Retry

ACCEPT_ENCODING: Final = "gzip, deflate"
# Inflated a slice at a time: ~16 MB at most from one slice (deflate's ratio is ~1032:1).
CHUNK_BYTES: Final = 16_384
DEFAULT_MAX_BYTES: Final = 64 * 2**20
DEFAULT_DEADLINE_SECONDS: Final = 120.0
_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + 15}


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much one answer may weigh and how long it may take."""

    max_bytes: int = DEFAULT_MAX_BYTES
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS


class TooLarge(Exception):
    """Internal: the body passed `Bounds.max_bytes` (on the wire, or once decompressed)."""

    def __init__(self, limit: int, *, decompressed: bool) -> None:
        how = "once decompressed" if decompressed else "on the wire"
        super().__init__(f"the answer is larger than {limit:,} bytes {how}")
        self.decompressed = decompressed


class _Inflater:
    """Undo a Content-Encoding chunk by chunk, never producing more than asked for."""

    def __init__(self, coding: str) -> None:
        coding = coding.strip().lower()
        if coding in ("", "identity"):
            self._zlib = None
        elif coding in _WBITS:
            self._zlib = zlib.decompressobj(_WBITS[coding])
        else:
            raise Retry(f"a body in an encoding we did not ask for ({coding!r})", bad_body=True)

    def feed(self, data: bytes, room: int) -> bytes:
        """Return the bytes `data` inflates to; more than `room` of them means too large."""
        if self._zlib is None:
            return data
        try:
            # One byte more than there is room for is enough to know the bound is passed.
            return self._zlib.decompress(data, room + 1)
        except zlib.error as exc:
            raise Retry(f"a body its Content-Encoding cannot undo ({exc})", bad_body=True) from None


def read_body(response: httpx.Response, bounds: Bounds, started: float) -> bytes:
    """Read a streamed response's body within `bounds`; `started` is when the request began.

    Raise `TooLarge`, or `Retry` when the deadline passes or the body cannot be inflated.
    """
    try:
        loaded = response.content  # built in memory (a test's MockTransport): read already
    except httpx.ResponseNotRead:
        pass
    else:
        if len(loaded) > bounds.max_bytes:
            raise TooLarge(bounds.max_bytes, decompressed=True)
        return loaded
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > bounds.max_bytes:
        raise TooLarge(bounds.max_bytes, decompressed=False)
    inflater = _Inflater(response.headers.get("Content-Encoding", ""))
    parts: list[bytes] = []
    wire = size = 0
    # Each read as it arrives (a chunk size would wait for that many bytes of a slow drip).
    for arrived in response.iter_raw():
        _check_deadline(bounds, started)
        wire += len(arrived)
        if wire > bounds.max_bytes:
            raise TooLarge(bounds.max_bytes, decompressed=False)
        for start in range(0, len(arrived), CHUNK_BYTES):
            data = inflater.feed(arrived[start : start + CHUNK_BYTES], bounds.max_bytes - size)
            size += len(data)
            if size > bounds.max_bytes:
                raise TooLarge(bounds.max_bytes, decompressed=True)
            parts.append(data)
    return b"".join(parts)


def _check_deadline(bounds: Bounds, started: float) -> None:
    if time.monotonic() - started > bounds.deadline_seconds:
        raise Retry(f"the request deadline of {bounds.deadline_seconds:g} s passed mid-answer")
