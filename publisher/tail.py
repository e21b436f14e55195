"""Follow events on the broker (through the consumer kit) and describe each in one line.

Whatever an event carries is printed only escaped: a field is text a publisher (or anyone
who can publish on the exchanges) chose, and a newline in it would forge a line, an escape
sequence would drive the terminal. A body that is JSON but not the event we expect is
described, never a reason to stop following.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

import orjson

from publisher.consumer import follow
from publisher.events import CHANGED_TYPE

# What a terminal may act on: C0 and C1 controls (newline, escape ...), DEL, the Unicode line
# and paragraph separators and the bidirectional controls that reorder what is shown. The
# backslash is escaped too, so that an escape we print cannot be confused with the text.
_UNSAFE: Final = (
    *range(0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
)
_ESCAPES: Final = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _UNSAFE} | {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x5C: "\\\\",
}
# The same characters as JSON escapes, which keep a JSON text valid and equal.
_JSON_ESCAPES: Final = {c: f"\\u{c:04x}" for c in _UNSAFE}
_CLIP: Final = 120


def shown(value: object, limit: int = _CLIP) -> str:
    """Return any value as printable text on one line, clipped to about `limit` characters."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    text = text[: limit + 1].translate(_ESCAPES)
    return text if len(text) <= limit else f"{text[:limit]}..."


def event_line(body: bytes | str) -> str:
    """Describe one event body in one human line; never raise for any body."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        event = None
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        return f"(not a CloudEvent) {shown(body)}"
    kind = event.get("type")
    head = f"{shown(event.get('time', ''), 19):.19} {shown(kind):<15} ch={_get(data, 'channel_id')}"
    if kind == "record.rejected":
        where = f"{_get(data, 'resource')} key={_get(data, 'key')}"
        return f"{head} {where} reason={_get(data, 'reason')}"
    what = f"key={_get(data, 'key')} {_get(data, 'operation')} seq={_get(data, 'sequence')}"
    return f"{head} {what} {_changes(kind, data)}"


def json_line(body: bytes | str) -> str:
    """Return one event body as compact JSON on one line, or describe a body that is not JSON."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"(not JSON) {shown(body)}"
    # orjson escapes C0 controls itself; C1, separators and bidi controls only occur inside
    # strings, where a JSON escape is the same character.
    return orjson.dumps(event).decode().translate(_JSON_ESCAPES)


def _get(data: dict[str, Any], name: str) -> str:
    return shown(data.get(name))


def _changes(kind: object, data: dict[str, Any]) -> str:
    before, after = _mapping(data.get("before")), _mapping(data.get("after"))
    if data.get("operation") == "created":
        return ", ".join(f"{f}={shown(after.get(f))}" for f in _headline(kind))
    fields = data.get("changed_fields")
    names = [f for f in fields[:3] if isinstance(f, str)] if isinstance(fields, list) else []
    return ", ".join(f"{shown(f)} {shown(before.get(f))}->{shown(after.get(f))}" for f in names)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _headline(kind: object) -> tuple[str, ...]:
    for resource, changed in CHANGED_TYPE.items():
        if changed == kind:
            return resource.spec.headline
    return ()


def tail(
    url: str,
    pattern: str,
    handle: Callable[[bytes], None],
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Deliver every event matching `pattern` to `handle` until `stop` is set."""
    follow(url, pattern, handle, stop=stop, ready=ready)
