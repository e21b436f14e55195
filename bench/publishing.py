"""Measure confirmed publishing of the pipeline's own event bodies, three ways.

- ceiling (b): py-amqp alone (no kombu), confirms awaited per window of 1,000 messages;
- kombu, the broker's confirm awaited after every message (`confirm_publish`);
- kombu's Producer, confirms awaited per window of 1,000.

Every message carries the properties, headers, exchange, routing key and `mandatory` flag
the pipeline's publisher gives it, and lands in the bench queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import amqp
from kombu.connection import Connection
from kombu.messaging import Producer

from bench.ceilings import iter_pages
from bench.env import AMQP_URL, Sandbox
from publisher.diff import diff_page
from publisher.outgoing import (
    EventContext,
    OutgoingEvent,
    change_event,
    message_properties,
    source_uri,
)
from publisher.pages import RecordPage
from publisher.publish import ConfirmTracker, kombu_properties
from publisher.records import Resource

WINDOW: Final = 1000
_CONFIRM_SECONDS: Final = 30.0


def build_events(box: Sandbox, per_resource: int) -> list[OutgoingEvent]:
    """Build the events an initial sync publishes for the first records of each kind."""
    events: list[OutgoingEvent] = []
    now = datetime.now(UTC)
    for resource in Resource:
        ctx = EventContext(box.channel_id, resource, source_uri(box.url, box.channel_id), now)
        built = 0
        for records in iter_pages(box, resource):
            changes = diff_page(
                RecordPage.plain(resource, records[: per_resource - built]), {}
            ).changes
            events += [change_event(ctx, change) for change in changes]
            built += len(changes)
            if built >= per_resource:
                break
    return events


def amqp_events_per_second(events: Sequence[OutgoingEvent]) -> float:
    """Publish with py-amqp, confirms awaited per window; return events per second."""
    connection = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    try:
        channel = connection.channel()
        channel.confirm_select()
        tracker = _tracked(channel)

        def publish(event: OutgoingEvent) -> None:
            message = amqp.Message(event.body, **message_properties(event))
            channel.basic_publish(
                message, exchange=event.exchange, routing_key=event.routing_key, mandatory=True
            )

        return _windowed(events, publish, tracker, connection.drain_events)
    finally:
        connection.close()


def kombu_batched_per_second(events: Sequence[OutgoingEvent]) -> float:
    """Publish with kombu's Producer, confirms awaited per window; return events per second."""
    with Connection(AMQP_URL) as connection:
        channel = connection.channel()
        channel.confirm_select()
        tracker = _tracked(channel)
        producer = Producer(channel)

        def publish(event: OutgoingEvent) -> None:
            producer.publish(
                event.body,
                exchange=event.exchange,
                routing_key=event.routing_key,
                mandatory=True,
                retry=False,
                **kombu_properties(event),
            )

        return _windowed(events, publish, tracker, connection.drain_events)


def kombu_one_by_one_per_second(events: Sequence[OutgoingEvent]) -> float:
    """Publish with kombu, waiting for each message's confirm; return events per second."""
    options = {"confirm_publish": True}
    with Connection(AMQP_URL, transport_options=options) as connection:
        producer = Producer(connection.channel())
        started = time.perf_counter()
        for event in events:
            producer.publish(
                event.body,
                exchange=event.exchange,
                routing_key=event.routing_key,
                mandatory=True,
                retry=False,
                **kombu_properties(event),
            )
        return len(events) / (time.perf_counter() - started)


def _tracked(channel: Any) -> ConfirmTracker:
    tracker = ConfirmTracker()
    channel.events["basic_ack"].add(tracker.on_ack)
    channel.events["basic_nack"].add(tracker.on_nack)
    return tracker


def _windowed(
    events: Sequence[OutgoingEvent],
    publish: Callable[[OutgoingEvent], None],
    tracker: ConfirmTracker,
    drain: Callable[..., Any],
) -> float:
    """Publish WINDOW messages back to back, wait until all are confirmed, repeat."""
    started = time.perf_counter()
    for start in range(0, len(events), WINDOW):
        window = events[start : start + WINDOW]
        for event in window:
            publish(event)
        tracker.published += len(window)
        while not tracker.settled(tracker.published):
            drain(timeout=_CONFIRM_SECONDS)
    elapsed = time.perf_counter() - started
    if tracker.nacked:
        raise RuntimeError(f"the broker refused {tracker.nacked} messages")
    return len(events) / elapsed
