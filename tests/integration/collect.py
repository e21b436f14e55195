"""Bind a real queue to routing keys and collect the parsed events that arrive."""

from __future__ import annotations

import time
import uuid
from types import TracebackType
from typing import Any

import kombu
import orjson

from publisher import topology
from publisher.broker import declare_topology


class Collector:
    """An exclusive queue bound to patterns on the event exchanges."""

    def __init__(self, amqp_url: str, *patterns: str) -> None:
        self._conn = kombu.Connection(amqp_url)
        channel = self._conn.channel()
        declare_topology(channel)
        bindings = [
            kombu.binding(kombu.Exchange(name, "topic", passive=True), routing_key=pattern)
            for name in (spec.name for spec in topology.EVENT_EXCHANGES)
            for pattern in patterns
        ]
        queue = kombu.Queue(
            f"test.collect.{uuid.uuid4().hex[:8]}",
            bindings=bindings,
            exclusive=True,
            auto_delete=True,
        )
        self.messages: list[Any] = []
        self.arrivals: list[float] = []  # time.time() of each message, for latency figures
        self._consumer = kombu.Consumer(channel, [queue], on_message=self._on_message)
        self._consumer.consume()

    def _on_message(self, message: Any) -> None:
        self.arrivals.append(time.time())
        self.messages.append(message)
        message.ack()

    def collect(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait for `count` more events (at least); return every event body so far."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            try:
                self._conn.drain_events(timeout=0.2)
            except TimeoutError:
                continue
        return self.bodies()

    def take(self, count: int, timeout: float = 10.0) -> list[Any]:
        """Wait for `count` messages, return them as received (raw) and forget them."""
        self.collect(count, timeout)
        taken = self.messages[:]
        self.clear()
        return taken

    def settle(self, quiet: float = 0.5) -> list[dict[str, Any]]:
        """Drain until nothing arrives for `quiet` seconds; return every body."""
        while True:
            try:
                self._conn.drain_events(timeout=quiet)
            except TimeoutError:
                return self.bodies()

    def bodies(self) -> list[dict[str, Any]]:
        """Return the decoded bodies received so far, in arrival order."""
        return [orjson.loads(m.body) for m in self.messages]

    def clear(self) -> None:
        """Forget what was received."""
        self.messages.clear()
        self.arrivals.clear()

    def __enter__(self) -> Collector:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._consumer.cancel()
        self._conn.release()
