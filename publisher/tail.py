"""Follow events on the broker: bind a temporary queue and hand each body to a callback."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from kombu.connection import Connection
from kombu.entity import Exchange, Queue, binding
from kombu.messaging import Consumer

from publisher import keys
from publisher.publish import declare_topology

EXCHANGE_NAMES = (keys.STOCK_EXCHANGE, keys.PRICE_EXCHANGE, keys.REJECTED_EXCHANGE)


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
    return ("stock",) if kind == "stock.changed" else ("price", "currency_type")


def tail(
    url: str,
    pattern: str,
    handle: Callable[[bytes], None],
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Deliver every event matching `pattern` to `handle` until `stop` is set."""
    stop = stop or threading.Event()
    with Connection(url) as conn:
        channel = conn.channel()
        declare_topology(channel)
        queue = Queue(
            f"akinon.tail.{uuid.uuid4().hex[:12]}",
            bindings=[
                binding(Exchange(name, "topic", passive=True), routing_key=pattern)
                for name in EXCHANGE_NAMES
            ],
            exclusive=True,
            auto_delete=True,
            durable=False,
        )

        def on_message(message: Any) -> None:
            body = message.body
            handle(body if isinstance(body, bytes) else body.encode())
            message.ack()

        with Consumer(channel, queues=[queue], on_message=on_message):
            if ready is not None:
                ready.set()
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    continue
