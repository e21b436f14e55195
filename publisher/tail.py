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
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from publisher.consumer import follow
from publisher.events import CHANGED_TYPE, DELETED_TYPE, RELOADED_TYPE
from publisher.records import Resource

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
    if kind in RELOADED_TYPE.values():
        keys = data.get("keys")
        count = len(keys) if isinstance(keys, list) else shown(keys)
        span = f"{_get(data, 'lowest_key')}..{_get(data, 'highest_key')}"
        return f"{head} part={_get(data, 'part')}/{_get(data, 'parts')} keys={count} span={span}"
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
    operation = data.get("operation")
    if operation in ("created", "snapshot", "deleted"):  # one whole version: its headline
        whole = before if operation == "deleted" else after
        return ", ".join(f"{f}={shown(whole.get(f))}" for f in _headline(kind))
    fields = data.get("changed_fields")
    names = [f for f in fields[:3] if isinstance(f, str)] if isinstance(fields, list) else []
    return ", ".join(f"{shown(f)} {shown(before.get(f))}->{shown(after.get(f))}" for f in names)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _headline(kind: object) -> tuple[str, ...]:
    for resource in Resource:
        if kind in (CHANGED_TYPE[resource], DELETED_TYPE[resource]):
            return resource.spec.headline
    return ()


def binding_line(url: str, pattern: str) -> str:
    """Say where a tail listens: the broker without its password, the vhost, the pattern."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    shown = urlunsplit((parts.scheme, host, "", "", ""))
    return f"tail: bound to {shown} vhost {vhost!r} with pattern {pattern!r}; Ctrl-C stops"


class _Announcing(threading.Event):
    """An event that calls back (and sets another event) once: `follow` signals by an event."""

    def __init__(self, callback: Callable[[], None], also: threading.Event | None) -> None:
        super().__init__()
        self._callback = callback
        self._also = also

    def set(self) -> None:
        """Set the event, then call back and set the other event (only the first time)."""
        first = not self.is_set()
        super().set()
        if first:
            self._callback()
            if self._also is not None:
                self._also.set()


def tail(
    url: str,
    pattern: str,
    handle: Callable[[bytes], None],
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Deliver every event matching `pattern` to `handle` until `stop` is set.

    `ready` is set, and `on_ready` called, once the queue is bound.
    """
    if on_ready is not None:
        ready = _Announcing(on_ready, also=ready)
    follow(url, pattern, handle, stop=stop, ready=ready)
