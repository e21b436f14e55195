"""The consumer kit against the real RabbitMQ (and Redis): ack, dedupe, retry, dead-letter."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import kombu
import orjson
import pytest

from publisher.consumer import RecordRef, RedisStore, Subscription
from publisher.diff import Stored, diff_page
from publisher.errors import StateStoreError
from publisher.events import CloudEvent
from publisher.outgoing import EventContext, OutgoingEvent, change_event
from publisher.publish import KombuPublisher
from publisher.records import Resource
from tests.factories import stock
from tests.proxy import TcpProxy

pytestmark = pytest.mark.integration

SOURCE = "https://omni.example/api/v1/channel"
QUIET = 0.3  # seconds without a message after which drain() returns


class Crash(BaseException):
    """Stands for the process dying inside a handler: nothing may be acknowledged."""


def versions(channel_id: int, key: int, levels: Sequence[int], first: int = 1) -> list[Any]:
    """Return successive change events of one stock record: sequence first, first+1, ..."""
    ctx = EventContext(channel_id, Resource.STOCK, f"{SOURCE}/{channel_id}", datetime.now(UTC))
    stored: dict[int, Stored] = {}
    if first > 1:
        (seed,) = diff_page(Resource.STOCK, [stock(key, stock=-1)], {}).changes
        stored = {key: Stored(first - 1, seed.after)}
    events = []
    for level in levels:
        (change,) = diff_page(Resource.STOCK, [stock(key, stock=level)], stored).changes
        stored = {key: Stored(change.sequence, change.after)}
        events.append(change_event(ctx, change))
    return events


def publish(amqp_url: str, events: Sequence[OutgoingEvent]) -> None:
    publisher = KombuPublisher(amqp_url)
    try:
        publisher.publish(events)
    finally:
        publisher.close()


def publish_raw(amqp_url: str, routing_key: str, body: bytes) -> None:
    with kombu.Connection(amqp_url) as conn:
        producer = conn.Producer()
        producer.publish(body, exchange="akinon.stock", routing_key=routing_key, retry=False)


def take_all(amqp_url: str, queue: str) -> list[Any]:
    """Remove and return every message waiting in a queue."""
    taken = []
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(message)
    return taken


def raw(message: Any) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else body.encode()


def depth(amqp_url: str, queue: str) -> int:
    with kombu.Connection(amqp_url) as conn:
        return int(conn.channel().queue_declare(queue, passive=True).message_count)


def delete_queues(amqp_url: str, names: set[str]) -> None:
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        for name in sorted(names):
            channel.queue_delete(name)


SubscriptionFactory = Callable[..., Subscription]


@pytest.fixture
def subscribe(amqp_url: str, channel_id: int) -> Iterator[SubscriptionFactory]:
    """Make subscriptions on queues unique to this test; close and delete them afterwards."""
    made: list[Subscription] = []

    def make(handler: Callable[[CloudEvent[Any]], None], **options: Any) -> Subscription:
        options.setdefault("queue", f"test.consumer.{channel_id}")
        options.setdefault("patterns", [f"stock.changed.{channel_id}"])
        options.setdefault("retry_delay", 0)
        url = options.pop("amqp_url", amqp_url)
        subscription = Subscription(url, handler=handler, **options)
        subscription.declare()
        made.append(subscription)
        return subscription

    yield make
    for subscription in made:
        subscription.close()
    delete_queues(amqp_url, {q for s in made for q in (s.spec.name, s.spec.dead_name)})


def test_each_event_reaches_the_handler_typed_and_in_order_then_is_acked(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    seen: list[CloudEvent[Any]] = []
    subscription = subscribe(seen.append)
    events = versions(channel_id, 1, [5, 6, 7]) + versions(channel_id, 2, [1])
    publish(amqp_url, events)
    stats = subscription.drain(QUIET)
    assert [(e.data.key, e.data.sequence, e.data.after.stock) for e in seen] == [
        (1, 1, 5),
        (1, 2, 6),
        (1, 3, 7),
        (2, 1, 1),
    ]
    assert [e.id for e in seen] == [e.id for e in events]
    assert stats.applied == 4
    assert depth(amqp_url, subscription.spec.name) == 0


def test_duplicates_are_dropped_by_id_and_sequence(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    seen: list[str] = []
    subscription = subscribe(lambda e: seen.append(e.id))
    events = versions(channel_id, 1, [5, 6])
    publish(amqp_url, events + events)  # a re-publish after a crash
    stats = subscription.drain(QUIET)
    assert seen == [e.id for e in events]
    # The second sequence 1 is older than the last applied (2): stale, dropped all the same.
    assert (stats.applied, stats.stale, stats.duplicate) == (2, 1, 1)


def test_an_older_sequence_is_never_applied(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    seen: list[int] = []
    subscription = subscribe(lambda e: seen.append(e.data.sequence))
    one, two, three = versions(channel_id, 1, [5, 6, 7])
    publish(amqp_url, [one, three, two])
    stats = subscription.drain(QUIET)
    assert seen == [1, 3]
    assert (stats.applied, stats.stale) == (2, 1)


def test_the_same_sequence_with_another_id_supersedes(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    seen: list[int] = []
    subscription = subscribe(lambda e: seen.append(e.data.after.stock))
    (never_committed,) = versions(channel_id, 1, [6], first=2)
    (newer,) = versions(channel_id, 1, [7], first=2)
    assert never_committed.id != newer.id
    publish(amqp_url, [never_committed, newer, newer])
    stats = subscription.drain(QUIET)
    assert seen == [6, 7]
    assert (stats.applied, stats.duplicate) == (2, 1)


def test_a_failing_handler_ends_in_the_dead_letter_queue_and_nothing_is_lost(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    calls: dict[int, int] = {}
    handled: list[int] = []

    def handler(event: CloudEvent[Any]) -> None:
        calls[event.data.key] = calls.get(event.data.key, 0) + 1
        if event.data.key == 2:
            raise RuntimeError("the ERP refuses product 2")
        handled.append(event.data.key)

    subscription = subscribe(handler, max_attempts=3)
    events = [versions(channel_id, key, [5])[0] for key in (1, 2, 3)]
    publish(amqp_url, events)
    stats = subscription.drain(QUIET)
    assert calls == {1: 1, 2: 3, 3: 1}
    assert sorted(handled) == [1, 3]
    assert (stats.applied, stats.retried, stats.dead) == (2, 2, 1)
    (dead,) = take_all(amqp_url, subscription.spec.dead_name)
    assert raw(dead) == events[1].body
    assert dead.properties["message_id"] == events[1].id
    assert dead.headers["x-death"][0]["queue"] == subscription.spec.name
    assert dead.headers["x-death"][0]["reason"] == "rejected"
    assert depth(amqp_url, subscription.spec.name) == 0


def test_a_handler_that_recovers_applies_the_event_once(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    failures = [RuntimeError("timeout"), RuntimeError("timeout")]
    applied: list[str] = []

    def flaky(event: CloudEvent[Any]) -> None:
        if failures:
            raise failures.pop()
        applied.append(event.id)

    subscription = subscribe(flaky, max_attempts=3)
    (event,) = versions(channel_id, 1, [5])
    publish(amqp_url, [event])
    stats = subscription.drain(QUIET)
    assert applied == [event.id]
    assert (stats.applied, stats.retried, stats.dead) == (1, 2, 0)
    assert depth(amqp_url, subscription.spec.dead_name) == 0


def test_an_unreadable_body_goes_straight_to_the_dead_letter_queue(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    seen: list[str] = []
    subscription = subscribe(lambda e: seen.append(e.id), max_attempts=5)
    publish_raw(amqp_url, f"stock.changed.{channel_id}", b"{not json")
    stats = subscription.drain(QUIET)
    assert seen == []
    assert stats.dead == 1
    (dead,) = take_all(amqp_url, subscription.spec.dead_name)
    assert raw(dead) == b"{not json"


def test_an_event_of_another_major_is_acked_and_skipped(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    seen: list[str] = []
    subscription = subscribe(lambda e: seen.append(e.id))
    (event,) = versions(channel_id, 1, [5])
    document = orjson.loads(event.body)
    document["dataschema"] = document["dataschema"].replace(":v1", ":v2")
    publish_raw(amqp_url, f"stock.changed.{channel_id}", orjson.dumps(document))
    stats = subscription.drain(QUIET)
    assert (seen, stats.ignored) == ([], 1)
    assert depth(amqp_url, subscription.spec.name) == 0


@pytest.fixture
def redis_store(redis_url: str, channel_id: int) -> Iterator[Callable[[], RedisStore]]:
    """Make Redis stores for this test's queue; forget what they remembered afterwards."""
    queue = f"test.consumer.{channel_id}"
    yield lambda: RedisStore.from_url(redis_url, queue)
    cleaner = RedisStore.from_url(redis_url, queue)
    cleaner.forget_all()
    cleaner.close()


def test_a_crash_inside_the_handler_acks_nothing_and_a_restart_applies_it_once(
    amqp_url: str,
    channel_id: int,
    redis_store: Callable[[], RedisStore],
    subscribe: SubscriptionFactory,
) -> None:
    events = versions(channel_id, 1, [5, 6])
    applied: list[str] = []

    def dies_on_the_second(event: CloudEvent[Any]) -> None:
        if event.data.sequence == 2:
            raise Crash
        applied.append(event.id)

    first = subscribe(dies_on_the_second, dedupe=redis_store())
    publish(amqp_url, events)
    with pytest.raises(Crash):
        first.drain(QUIET)
    first.close()  # the process is gone: its unacked message goes back to the queue
    assert applied == [events[0].id]

    second = subscribe(lambda e: applied.append(e.id), dedupe=redis_store())  # a new process
    publish(amqp_url, events)  # and the producer re-published both after its own crash
    stats = second.drain(QUIET)
    assert applied == [e.id for e in events]
    assert stats.applied == 1
    assert stats.duplicate + stats.stale == 2


def test_run_handles_messages_until_stopped(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    arrived = threading.Event()
    seen: list[str] = []

    def handler(event: CloudEvent[Any]) -> None:
        seen.append(event.id)
        if len(seen) == 3:
            arrived.set()

    subscription = subscribe(handler, prefetch=1)
    stop, ready = threading.Event(), threading.Event()
    worker = threading.Thread(target=subscription.run, args=(stop, ready))
    worker.start()
    try:
        assert ready.wait(5)
        publish(amqp_url, versions(channel_id, 1, [1, 2, 3]))
        assert arrived.wait(5)
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()
    assert len(seen) == 3


def test_a_store_that_cannot_reach_redis_raises_the_store_error() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", "q")
    try:
        with pytest.raises(StateStoreError):
            store.last(RecordRef(1, "stock.changed", 1))
    finally:
        store.close()


class DroppingProxy(TcpProxy):
    """A proxy that can drop its live connections yet keep accepting new ones."""

    def drop(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_run_reconnects_after_the_broker_connection_drops(
    amqp_url: str, channel_id: int, subscribe: SubscriptionFactory
) -> None:
    proxy = DroppingProxy(5672)
    seen: list[int] = []
    two = threading.Event()

    def handler(event: CloudEvent[Any]) -> None:
        seen.append(event.data.key)
        if len(seen) == 2:
            two.set()

    # Through the proxy, on the vhost the test publishes to.
    through_proxy = amqp_url.replace(":5672/", f":{proxy.port}/")
    subscription = subscribe(handler, amqp_url=through_proxy, prefetch=1)
    stop, ready = threading.Event(), threading.Event()
    worker = threading.Thread(target=subscription.run, args=(stop, ready))
    worker.start()
    try:
        assert ready.wait(5)
        publish(amqp_url, versions(channel_id, 1, [1]))
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        proxy.drop()
        publish(amqp_url, versions(channel_id, 2, [1]))
        assert two.wait(10), "the subscription did not come back after the drop"
    finally:
        stop.set()
        worker.join(5)
        proxy.cut()
    assert not worker.is_alive()
    assert seen == [1, 2]
