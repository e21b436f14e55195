"""PUBLISH edge: put a batch of events on the broker and return only once it confirmed all.

Topology (declared once per connection, idempotent):

    akinon.stock    topic, durable  --stock.changed.<channel>-->  your queues
    akinon.price    topic, durable  --price.changed.<channel>-->  your queues
    akinon.rejected topic, durable  --<resource>.rejected.<channel>-->  your queues
        each with alternate-exchange = akinon.unrouted (fanout) -> queue akinon.unrouted,
        so an event that no queue is bound for is kept, not dropped.

Publisher confirms are on for every AMQP connection, and awaited per batch: all messages of
a batch go out back to back, then we read acks until every delivery tag is settled. A nack,
a returned message, a timeout or a lost connection fails the whole batch with `BrokerError`,
so the caller commits nothing and the next step publishes the same events again.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Sequence
from typing import Any, Final, Protocol

import amqp
import kombu.exceptions
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Producer

from publisher import keys
from publisher.errors import BrokerError
from publisher.events import MESSAGE_CONTENT_TYPE, OutgoingEvent


class EventPublisher(Protocol):
    """Publish batches of events; return only when every one is safely on the broker."""

    def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Publish all events or raise `BrokerError`."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


UNROUTED: Final = Exchange(keys.UNROUTED_EXCHANGE, "fanout", durable=True)
_ALTERNATE: Final = {"alternate-exchange": keys.UNROUTED_EXCHANGE}
EXCHANGES: Final = (
    Exchange(keys.STOCK_EXCHANGE, "topic", durable=True, arguments=_ALTERNATE),
    Exchange(keys.PRICE_EXCHANGE, "topic", durable=True, arguments=_ALTERNATE),
    Exchange(keys.REJECTED_EXCHANGE, "topic", durable=True, arguments=_ALTERNATE),
)
UNROUTED_QUEUE: Final = Queue(keys.UNROUTED_QUEUE, UNROUTED, durable=True)

# What may fail while talking to the broker; all of it becomes BrokerError.
_BROKER_ERRORS: Final = (
    OSError,
    socket.timeout,
    amqp.exceptions.AMQPError,
    kombu.exceptions.KombuError,
    ConnectionError,
)


class ConfirmTracker:
    """Follow which delivery tags of a confirm-mode channel the broker has settled."""

    def __init__(self) -> None:
        self.published = 0  # the broker numbers published messages 1, 2, 3 ...
        self._floor = 0  # every tag <= floor is settled
        self._above: set[int] = set()
        self.nacked = 0
        self.returned: list[str] = []

    def on_ack(self, tag: int, multiple: bool) -> None:
        """Settle one tag, or every tag up to it."""
        if multiple:
            self._floor = max(self._floor, tag)
            self._above = {t for t in self._above if t > tag}
        else:
            self._above.add(tag)
        while self._floor + 1 in self._above:
            self._floor += 1
            self._above.discard(self._floor)

    def on_nack(self, tag: int, multiple: bool) -> None:
        """Count a refusal; the tag is settled, badly."""
        self.nacked += 1
        self.on_ack(tag, multiple)

    def on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        """Remember a message the broker could not route even to the alternate exchange."""
        self.returned.append(f"{exchange}/{routing_key}")

    def settled(self) -> bool:
        """Say whether every published message is acked or nacked."""
        return self._floor >= self.published


def message_properties(event: OutgoingEvent) -> dict[str, Any]:
    """Return the AMQP properties and ce-* headers of one event."""
    return {
        "message_id": event.id,
        "type": event.type.value,
        "timestamp": int(event.time.timestamp()),
        "headers": {
            "ce-specversion": "1.0",
            "ce-id": event.id,
            "ce-type": event.type.value,
            "ce-source": event.source,
            "ce-subject": event.subject,
        },
    }


class KombuPublisher:
    """Publish through kombu; with an AMQP broker, confirms are batched per call."""

    def __init__(
        self, url: str, *, confirm_timeout: float = 30.0, connect_timeout: float = 5.0
    ) -> None:
        self._url = url
        self._confirm_timeout = confirm_timeout
        self._connect_timeout = connect_timeout
        self._connection: Connection | None = None
        self._channel: Any = None
        self._producer: Producer | None = None
        self._tracker = ConfirmTracker()
        self._confirming = False

    def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Publish all events and wait for the broker to confirm every one."""
        if not events:
            return
        try:
            self._publish(events)
        except BrokerError:
            self._discard()
            raise
        except _BROKER_ERRORS as exc:
            self._discard()
            raise BrokerError(f"publishing failed: {type(exc).__name__}: {exc}") from exc

    def _publish(self, events: Sequence[OutgoingEvent]) -> None:
        producer = self._ensure_open()
        tracker = self._tracker
        nacked, returned = tracker.nacked, len(tracker.returned)
        for event in events:
            producer.publish(
                event.body,
                exchange=event.exchange,
                routing_key=event.routing_key,
                content_type=MESSAGE_CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=2,
                mandatory=self._confirming,
                retry=False,
                **message_properties(event),
            )
        if not self._confirming:
            return
        tracker.published += len(events)
        self._wait_for_confirms()
        if tracker.nacked > nacked:
            raise BrokerError(f"broker refused {tracker.nacked - nacked} of {len(events)} events")
        if len(tracker.returned) > returned:
            lost = ", ".join(tracker.returned[returned:][:3])
            raise BrokerError(f"broker could not route events (no alternate exchange?): {lost}")

    def _wait_for_confirms(self) -> None:
        assert self._connection is not None
        deadline = time.monotonic() + self._confirm_timeout
        while not self._tracker.settled():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(f"broker did not confirm within {self._confirm_timeout:g}s")
            self._connection.drain_events(timeout=remaining)

    def _ensure_open(self) -> Producer:
        if self._producer is not None:
            return self._producer
        connection = Connection(self._url, connect_timeout=self._connect_timeout)
        connection.ensure_connection(max_retries=1)
        channel = connection.channel()
        declare_topology(channel)
        self._tracker = ConfirmTracker()
        self._confirming = connection.transport.driver_type == "amqp"
        if self._confirming:
            channel.confirm_select()
            channel.events["basic_ack"].add(self._tracker.on_ack)
            channel.events["basic_nack"].add(self._tracker.on_nack)
            channel.events["basic_return"].add(self._tracker.on_return)
        self._connection, self._channel = connection, channel
        self._producer = Producer(channel)
        return self._producer

    def _discard(self) -> None:
        connection, self._connection, self._producer, self._channel = (
            self._connection,
            None,
            None,
            None,
        )
        if connection is not None:
            # The connection may already be broken; there is nothing more to release then.
            with contextlib.suppress(*_BROKER_ERRORS):
                connection.release()

    def close(self) -> None:
        """Close the connection, if any."""
        self._discard()


def declare_topology(channel: Any) -> None:
    """Declare the exchanges, the alternate exchange and its queue (idempotent)."""
    UNROUTED.bind(channel).declare()
    UNROUTED_QUEUE.bind(channel).declare()
    for exchange in EXCHANGES:
        exchange.bind(channel).declare()
