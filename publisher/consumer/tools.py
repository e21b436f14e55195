"""Tools around subscriptions: replay dead letters, follow raw events, stop on signals."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

import amqp
from kombu.connection import Connection

from publisher import topology
from publisher.consumer.link import Link, as_broker_error, message_body
from publisher.consumer.queues import temporary_queue
from publisher.records import Resource


def replay_dead_letters(amqp_url: str, queue: str, *, limit: int | None = None) -> int:
    """Move messages from ``<queue>.dead`` back to `queue`, oldest first; return how many.

    For after the cause is fixed. Each message is republished (with publisher confirms) to
    the queue by name, then removed from the dead-letter queue, so a crash in between
    duplicates a message (which the consumer drops) and never loses one. Its `x-death`
    history stays; its delivery count starts again.
    """
    moved = 0
    with (
        as_broker_error(),
        Connection(amqp_url, transport_options={"confirm_publish": True}) as connection,
    ):
        channel = connection.channel()
        while limit is None or moved < limit:
            message = channel.basic_get(f"{queue}.dead", no_ack=False)
            if message is None:
                break
            channel.basic_publish(_fresh_copy(message), exchange="", routing_key=queue)
            channel.basic_ack(message.delivery_tag)
            moved += 1
    return moved


def _fresh_copy(message: Any) -> amqp.Message:
    properties = dict(message.properties)
    headers = dict(properties.pop("application_headers", None) or {})
    headers.pop("x-delivery-count", None)  # else the first redelivery would look like the last
    body = message.body
    if isinstance(body, str):
        body = body.encode(properties.get("content_encoding") or "utf-8")
    return amqp.Message(body, application_headers=headers, **properties)


def follow(
    url: str,
    patterns: str | Sequence[str],
    handle: Callable[[bytes], None],
    *,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    prefetch: int = 200,
    connect_timeout: float = 5.0,
) -> None:
    """Hand every raw body matching the patterns to `handle` until `stop` is set.

    For watching (`akinon-publisher tail`): a temporary queue (exclusive, auto-deleted, not
    durable), no dedupe, no retries. Works on kombu's `memory://` transport too. Raises
    `ValueError` for a pattern that matches no published routing key, and `BrokerError`
    when the broker cannot be reached or fails.
    """
    stop = stop or threading.Event()
    chosen = [patterns] if isinstance(patterns, str) else list(patterns)

    def on_message(message: Any) -> None:
        handle(message_body(message))
        message.ack()

    link = Link(
        url,
        temporary_queue(chosen),
        on_message,
        prefetch=prefetch,
        connect_timeout=connect_timeout,
    )
    try:
        with as_broker_error():
            link.open()
            if ready is not None:
                ready.set()
            while not stop.is_set():
                link.pump(0.5)
    finally:
        link.close()


def stop_on_signals() -> threading.Event:
    """Return an event that SIGINT or SIGTERM sets: hand it to `Subscription.run`."""
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    return stop


def change_patterns(channels: Sequence[int]) -> list[str]:
    """Return the routing-key patterns of every record's changes and deletions.

    Those of these channels, or of every channel when none is given; with them the reload
    events that end a load after the publisher lost its state (`RELOAD_RULE`).
    """
    keys = (
        topology.changed_routing_key,
        topology.deleted_routing_key,
        topology.reloaded_routing_key,
    )
    if not channels:
        return [key(resource, 0)[:-1] + "*" for resource in Resource for key in keys]
    return [key(resource, channel) for channel in channels for resource in Resource for key in keys]
