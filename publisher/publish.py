"""PUBLISH edge: put a batch of events on the broker and return only once it confirmed all.

The exchanges (`publisher.topology`) are declared once per connection (idempotent); each
event exchange has the alternate exchange `akinon.unrouted`, whose queue keeps an event no
queue is bound for instead of dropping it.

Publisher confirms are on for every AMQP connection, and awaited per batch: all messages of
a batch go out back to back, then we read acks until every delivery tag is settled. A nack,
a returned message, a timeout or a lost connection fails the whole batch with `BrokerError`,
so the caller commits nothing and the next step publishes the same events again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from kombu.connection import Connection
from kombu.messaging import Producer

from publisher.broker import BROKER_ERRORS, declare_topology
from publisher.errors import BrokerError
from publisher.framing import publish_frames
from publisher.outgoing import OutgoingEvent, message_properties


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

    def settled(self, upto: int) -> bool:
        """Say whether every message up to delivery tag `upto` is acked or nacked."""
        return self._floor >= upto


def event_frames(event: OutgoingEvent, channel: int, frame_max: int) -> bytes:
    """Return the AMQP frames that publish one event (mandatory, persistent)."""
    return publish_frames(
        channel,
        exchange=event.exchange,
        routing_key=event.routing_key,
        body=event.body,
        properties=message_properties(event),
        mandatory=event.mandatory,
        frame_max=frame_max,
    )


def kombu_properties(event: OutgoingEvent) -> dict[str, Any]:
    """Return an event's AMQP properties as kombu's `Producer.publish` takes them."""
    properties = message_properties(event)
    properties["headers"] = properties.pop("application_headers")
    return properties


class KombuPublisher:
    """Publish through a kombu connection; with AMQP, confirms are awaited per batch.

    On an AMQP broker a batch goes out as one write of frames encoded by `publisher.framing`
    on the channel kombu opened (kombu's Producer, and py-amqp's own framing, cost several
    times more per message); py-amqp still reads the confirms. On kombu's in-memory
    transport (the demo) the Producer is used and there is nothing to wait for.
    """

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
        self._problems = (0, 0)  # (nacks, returns) already accounted for

    def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Send a batch and wait for its confirms."""
        self.confirm(self.send(events))

    def send(self, events: Sequence[OutgoingEvent]) -> int:
        """Write every event of a batch; return the batch's last delivery tag."""
        with self._guarded():
            return self._send(events)

    def confirm(self, ticket: int) -> None:
        """Wait for the broker to settle every delivery tag up to `ticket`."""
        with self._guarded():
            self._confirm(ticket)

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """Turn any broker failure into `BrokerError` and drop the broken connection."""
        try:
            yield
        except BrokerError:
            self._discard()
            raise
        except BROKER_ERRORS as exc:
            self._discard()
            raise BrokerError(f"publishing failed: {type(exc).__name__}: {exc}") from exc

    def _send(self, events: Sequence[OutgoingEvent]) -> int:
        self._ensure_open()
        if not events:  # an unchanged page: nothing to write, nothing new to wait for
            return self._tracker.published
        if self._producer is not None:
            for event in events:
                self._producer.publish(
                    event.body,
                    exchange=event.exchange,
                    routing_key=event.routing_key,
                    retry=False,
                    **kombu_properties(event),
                )
            return 0
        assert self._connection is not None  # _ensure_open made it
        link = self._connection.connection  # the py-amqp connection under kombu's
        channel, frame_max = self._channel.channel_id, link.frame_max
        link.transport.write(b"".join(event_frames(e, channel, frame_max) for e in events))
        self._tracker.published += len(events)
        return self._tracker.published

    def _confirm(self, ticket: int) -> None:
        if self._producer is not None:
            return  # the in-memory transport has nothing to confirm
        if self._connection is None:
            raise BrokerError("the connection was lost before the batch was confirmed")
        deadline = time.monotonic() + self._confirm_timeout
        tracker = self._tracker
        while not tracker.settled(ticket):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(f"broker did not confirm within {self._confirm_timeout:g}s")
            self._connection.drain_events(timeout=remaining)
        self._check_problems()

    def _check_problems(self) -> None:
        tracker = self._tracker
        nacked, returned = self._problems
        self._problems = (tracker.nacked, len(tracker.returned))
        if tracker.nacked > nacked:
            raise BrokerError(f"broker refused {tracker.nacked - nacked} events")
        if len(tracker.returned) > returned:
            lost = ", ".join(tracker.returned[returned:][:3])
            raise BrokerError(f"broker could not route events (no alternate exchange?): {lost}")

    def _ensure_open(self) -> None:
        if self._connection is not None:
            return
        connection = Connection(self._url, connect_timeout=self._connect_timeout)
        connection.ensure_connection(max_retries=1)
        channel = connection.channel()
        declare_topology(channel)
        self._tracker, self._problems = ConfirmTracker(), (0, 0)
        if connection.transport.driver_type == "amqp":
            channel.confirm_select()
            channel.events["basic_ack"].add(self._tracker.on_ack)
            channel.events["basic_nack"].add(self._tracker.on_nack)
            channel.events["basic_return"].add(self._tracker.on_return)
            self._producer = None
        else:
            self._producer = Producer(channel)
        self._connection, self._channel = connection, channel

    def _discard(self) -> None:
        connection, self._connection, self._producer, self._channel = (
            self._connection,
            None,
            None,
            None,
        )
        if connection is not None:
            # The connection may already be broken; there is nothing more to release then.
            with contextlib.suppress(*BROKER_ERRORS):
                connection.release()

    def close(self) -> None:
        """Close the connection, if any."""
        self._discard()
