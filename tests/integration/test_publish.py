"""Publishing against the real RabbitMQ: topology, confirms, properties, unrouted events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import kombu
import pytest

from publisher import topology
from publisher.broker import UNROUTED_QUEUE, declare_topology
from publisher.diff import diff_page
from publisher.errors import BrokerError
from publisher.outgoing import EventContext, OutgoingEvent, change_event
from publisher.publish import ConfirmTracker, KombuPublisher
from publisher.records import Resource
from tests.factories import as_page, stock

pytestmark = pytest.mark.integration


def _events(channel_id: int, count: int) -> list[OutgoingEvent]:
    ctx = EventContext(channel_id, Resource.STOCK, "http://a.example", datetime.now(UTC))
    diff = diff_page(as_page(Resource.STOCK, [stock(k) for k in range(1, count + 1)]), {})
    return [change_event(ctx, c) for c in diff.changes]


def _raw(message: kombu.Message) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else body.encode()


@pytest.fixture
def bound_queue(amqp_url: str, channel_id: int) -> Iterator[kombu.SimpleQueue]:
    """A temporary queue bound to this test's channel's stock events."""
    with kombu.Connection(amqp_url) as conn:
        declare_topology(conn.default_channel)
        exchange = kombu.Exchange(topology.STOCK_EXCHANGE, "topic", passive=True)
        queue = kombu.Queue(
            f"test.{channel_id}",
            exchange,
            routing_key=f"stock.changed.{channel_id}",
            auto_delete=True,
            exclusive=True,
        )
        simple = conn.SimpleQueue(queue)
        yield simple
        simple.close()


def test_bound_queue_receives_every_event_with_cloudevent_properties(
    amqp_url: str, channel_id: int, bound_queue: kombu.SimpleQueue
) -> None:
    events = _events(channel_id, 50)
    publisher = KombuPublisher(amqp_url)
    publisher.publish(events)
    publisher.close()
    received = []
    for _ in events:
        message = bound_queue.get(timeout=5)
        received.append(message)
        message.ack()
    assert [_raw(m) for m in received] == [e.body for e in events]
    first = received[0]
    assert first.properties["message_id"] == events[0].id
    assert first.properties["type"] == "stock.changed"
    assert first.properties["delivery_mode"] == 2
    assert first.content_type == "application/cloudevents+json"
    assert first.headers["ce-id"] == events[0].id
    assert first.headers["ce-type"] == "stock.changed"
    assert first.headers["ce-subject"] == "1"
    assert first.headers["ce-source"] == "http://a.example"


def test_an_event_no_queue_wants_lands_in_the_unrouted_queue(
    amqp_url: str, channel_id: int
) -> None:
    with kombu.Connection(amqp_url) as conn:
        declare_topology(conn.default_channel)
        unrouted = conn.SimpleQueue(UNROUTED_QUEUE)
        unrouted.clear()
        publisher = KombuPublisher(amqp_url)
        events = _events(channel_id, 3)
        publisher.publish(events)
        publisher.close()
        wanted = {e.id for e in events}
        ids: set[str] = set()
        while not wanted <= ids:  # others may leave events in the shared queue too
            message = unrouted.get(timeout=5)
            ids.add(message.properties["message_id"])
            message.ack()
        unrouted.close()
    assert wanted <= ids


def test_publisher_survives_many_batches_on_one_connection(
    amqp_url: str, channel_id: int, bound_queue: kombu.SimpleQueue
) -> None:
    publisher = KombuPublisher(amqp_url)
    for _ in range(5):
        publisher.publish(_events(channel_id, 200))
    publisher.close()
    bound_queue.clear()


def test_unreachable_broker_fails_the_batch(channel_id: int) -> None:
    publisher = KombuPublisher("amqp://guest:guest@127.0.0.1:1//", connect_timeout=1)
    with pytest.raises(BrokerError):
        publisher.publish(_events(channel_id, 1))
    publisher.close()


def test_confirm_tracker_settles_single_multiple_and_out_of_order_acks() -> None:
    tracker = ConfirmTracker()
    tracker.published = 5
    tracker.on_ack(2, multiple=False)
    assert not tracker.settled(5)
    tracker.on_ack(1, multiple=False)
    tracker.on_nack(4, multiple=False)
    assert not tracker.settled(5)
    tracker.on_ack(3, multiple=True)
    assert not tracker.settled(5)
    tracker.on_ack(5, multiple=False)
    assert tracker.settled(5)
    assert tracker.nacked == 1
