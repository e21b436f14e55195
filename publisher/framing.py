"""Encode one event as AMQP 0-9-1 Basic.Publish frames (pure: no I/O).

py-amqp builds these frames field by field in Python, which costs several times more than
everything else the pipeline does per event. A publish of ours always has the same shape
(the same properties, string headers, one body), so its frames are written here in a few
`struct` calls; the bytes are the ones py-amqp would send, and a test holds them equal.

    method frame  (type 1): Basic.Publish(ticket 0, exchange, routing key, mandatory)
    header frame  (type 2): class 60, body size, property flags, property values
    body frames   (type 3): the body, cut to the connection's frame_max
    every frame:  type (1 octet), channel (2), size (4), payload, 0xCE
"""

from __future__ import annotations

from collections.abc import Mapping
from struct import pack
from typing import Any, Final

_BASIC: Final = 60
_PUBLISH: Final = 40
_FRAME_END: Final = b"\xce"
_FRAME_OVERHEAD: Final = 8

# Property flags, in the order of the Basic class's property list (bit 15 first).
_CONTENT_TYPE: Final = 1 << 15
_CONTENT_ENCODING: Final = 1 << 14
_HEADERS: Final = 1 << 13
_DELIVERY_MODE: Final = 1 << 12
_MESSAGE_ID: Final = 1 << 7
_TIMESTAMP: Final = 1 << 6
_TYPE: Final = 1 << 5
_FLAGS: Final = (
    _CONTENT_TYPE | _CONTENT_ENCODING | _HEADERS | _DELIVERY_MODE | _MESSAGE_ID | _TIMESTAMP | _TYPE
)
# The properties a publish of ours carries, in py-amqp's names.
PROPERTIES: Final = frozenset(
    {
        "content_type",
        "content_encoding",
        "application_headers",
        "delivery_mode",
        "message_id",
        "timestamp",
        "type",
    }
)


def _shortstr(text: str) -> bytes:
    data = text.encode()
    if len(data) > 255:
        raise ValueError(f"AMQP short string longer than 255 bytes: {text[:40]!r}...")
    return bytes((len(data),)) + data


def _table(headers: Mapping[str, str]) -> bytes:
    entries = b"".join(
        _shortstr(name) + b"S" + pack(">I", len(data)) + data
        for name, data in ((name, value.encode()) for name, value in headers.items())
    )
    return pack(">I", len(entries)) + entries


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return pack(">BHI", kind, channel, len(payload)) + payload + _FRAME_END


def publish_frames(
    channel: int,
    *,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Mapping[str, Any],
    mandatory: bool,
    frame_max: int,
) -> bytes:
    """Return the frames of one Basic.Publish, ready for the socket.

    `properties` are named as py-amqp's `Message` takes them and must hold exactly the ones
    this encoder writes (`PROPERTIES`), with string headers.
    """
    if properties.keys() != PROPERTIES:
        raise ValueError(f"expected the properties {sorted(PROPERTIES)}, got {sorted(properties)}")
    method = (
        pack(">HHH", _BASIC, _PUBLISH, 0)
        + _shortstr(exchange)
        + _shortstr(routing_key)
        + (b"\x01" if mandatory else b"\x00")
    )
    encoded = (
        pack(">H", _FLAGS)
        + _shortstr(properties["content_type"])
        + _shortstr(properties["content_encoding"])
        + _table(properties["application_headers"])
        + bytes((properties["delivery_mode"],))
        + _shortstr(properties["message_id"])
        + pack(">Q", properties["timestamp"])
        + _shortstr(properties["type"])
    )
    header = pack(">HHQ", _BASIC, 0, len(body)) + encoded
    frames = [_frame(1, channel, method), _frame(2, channel, header)]
    room = frame_max - _FRAME_OVERHEAD
    frames += [_frame(3, channel, body[i : i + room]) for i in range(0, len(body), room)]
    return b"".join(frames)
