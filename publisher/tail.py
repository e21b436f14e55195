"""Follow events on the broker (through the consumer kit) and describe each in one line."""

from __future__ import annotations

import threading
from collections.abc import Callable

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
