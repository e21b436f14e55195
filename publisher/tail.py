"""Follow events on the broker (through the consumer kit) and describe each in one line."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from publisher.consumer import follow
from publisher.events import CHANGED_TYPE


def event_line(body: bytes | str) -> str:
    """Describe one event body in one human line."""
    try:
        event = orjson.loads(body)
        data = event["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"(not a CloudEvent) {body!r:.120}"
    head = f"{event.get('time', '')[:19]} {event.get('type', '?'):<15} ch={data.get('channel_id')}"
    if event.get("type") == "record.rejected":
        return f"{head} {data.get('resource')} key={data.get('key')} reason={data.get('reason')}"
    fields = data.get("changed_fields") or []
    before, after = data.get("before") or {}, data.get("after") or {}
    if data.get("operation") == "created":
        shown = ", ".join(f"{f}={after.get(f)}" for f in _headline(event["type"]))
    else:
        shown = ", ".join(f"{f} {before.get(f)}->{after.get(f)}" for f in fields[:3])
    return (
        f"{head} key={data.get('key')} {data.get('operation')} seq={data.get('sequence')} {shown}"
    )


def _headline(kind: str) -> tuple[str, ...]:
    for resource, changed in CHANGED_TYPE.items():
        if changed == kind:
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
