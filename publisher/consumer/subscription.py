"""Consume typed events from a durable queue: dedupe, retry, dead-letter, ack last."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from types import TracebackType
from typing import Any

import amqp
import kombu.exceptions

from publisher.backoff import compute_backoff
from publisher.broker import RECOVERABLE, broker_failure
from publisher.consumer.link import Link, as_broker_error, message_body
from publisher.consumer.queues import QueueSpec
from publisher.consumer.rules import (
    InvalidEvent,
    Verdict,
    judge,
    locate,
    read_event,
)
from publisher.consumer.stores import MemoryStore, SequenceStore
from publisher.errors import BrokerConfigError, BrokerError
from publisher.events import SCHEMA_MAJOR, CloudEvent

# The kit logs under one name, the package's, whichever module logs.
log = logging.getLogger(__package__)

Handler = Callable[[CloudEvent[Any]], None]


class Outcome(StrEnum):
    """What became of one message."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    IGNORED = "ignored"
    RETRIED = "retried"
    DEAD = "dead"


@dataclass(slots=True)
class Stats:
    """How many messages ended in each outcome, since the subscription was created."""

    applied: int = 0
    duplicate: int = 0
    stale: int = 0
    ignored: int = 0
    retried: int = 0
    dead: int = 0

    def count(self, outcome: Outcome) -> None:
        """Add one message with this outcome."""
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def as_dict(self) -> dict[str, int]:
        """Return the counts by outcome name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def delivery_attempt(headers: dict[str, Any] | None) -> int:
    """Return which delivery of a quorum-queue message this is (1 for the first).

    The broker counts earlier returns in `x-delivery-count` (absent on the first delivery),
    per message and across restarts of the consumer. Anyone who can publish to the queue
    can set the header too: a count that is not a whole number of 0 or more counts as 0,
    and a huge one as `MAX_COUNTED`.
    """
    count = headers.get("x-delivery-count") if isinstance(headers, dict) else None
    if (isinstance(count, str) and count.strip().isdigit()) or (
        isinstance(count, float) and count.is_integer()
    ):
        count = int(count)
    if type(count) is not int or count < 0:
        count = 0
    return min(count, MAX_COUNTED) + 1


# Deliveries counted at most: far past any sensible `max_attempts`.
MAX_COUNTED = 10**6


class AttemptCounter:
    """Count failed attempts per event id in this process: for classic queues only.

    A classic queue has no delivery count. This one is lost on restart, and copies of one
    event (a re-publish) share it, so they may reach the dead-letter queue sooner.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._failures: dict[str, int] = {}
        self._limit = limit

    def failed(self, event_id: str) -> int:
        """Record one failure; return which attempt it was (1 for the first)."""
        attempt = self._failures.get(event_id, 0) + 1
        self._failures[event_id] = attempt
        if len(self._failures) > self._limit:
            del self._failures[next(iter(self._failures))]  # the oldest; bounded memory
        return attempt

    def forget(self, event_id: str) -> None:
        """Drop the count of an event that was handled or dead-lettered."""
        self._failures.pop(event_id, None)


class Subscription:
    """Consume typed events from a durable queue: dedupe, retry, dead-letter, ack last.

    `queue` names the durable queue (and ``<queue>.dead``); `patterns` are topic patterns
    such as ``stock.changed.*``; `handler` gets each new event as its typed model. A handler
    that raises is retried up to `max_attempts` deliveries in all, `retry_delay` seconds
    apart at first, doubling. `dedupe` remembers the last applied event per record (default:
    a `MemoryStore`); the subscription closes it on `close`. `quorum=False` makes a classic
    queue; `single_active=True` lets RabbitMQ feed one consumer of the queue at a time;
    `major` is the contract major version the handler is written for.
    """

    def __init__(
        self,
        amqp_url: str,
        *,
        queue: str,
        patterns: Sequence[str],
        handler: Handler,
        max_attempts: int = 5,
        prefetch: int = 50,
        dedupe: SequenceStore | None = None,
        quorum: bool = True,
        single_active: bool = False,
        retry_delay: float = 1.0,
        major: int = SCHEMA_MAJOR,
        connect_timeout: float = 5.0,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.spec = QueueSpec(queue, tuple(patterns), max_attempts, quorum, single_active)
        self.store: SequenceStore = dedupe if dedupe is not None else MemoryStore()
        self.stats = Stats()
        # The last heartbeat seen per (channel, resource): a consumer bound to heartbeat
        # routing keys can tell "no changes" from "the publisher is down" with it.
        self.heartbeats: dict[tuple[int, str], CloudEvent[Any]] = {}
        self._handler = handler
        self._retry_delay = retry_delay
        self._major = major
        self._attempts = AttemptCounter()
        self._stop = threading.Event()
        self._link = Link(
            amqp_url,
            self.spec.queue(),
            self._on_message,
            prefetch=prefetch,
            connect_timeout=connect_timeout,
            extra=(self.spec.dead_queue(),),
        )

    def declare(self) -> None:
        """Connect and declare the queues and bindings now (otherwise the first pump does)."""
        with as_broker_error():
            self._link.open()

    def drain(self, timeout: float = 1.0) -> Stats:
        """Handle messages until none arrives for `timeout` seconds; return the counts."""
        try:
            with as_broker_error():
                while self._link.pump(timeout):
                    pass
        except (BrokerError, BrokerConfigError):
            self._link.close()  # a later call starts on a fresh connection
            raise
        return self.stats

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Handle messages until `stop` is set, reconnecting after a lost connection.

        Sets `ready` once consuming. A store failure (`StateStoreError`) or a broker refusal
        (`BrokerConfigError`, e.g. a queue declared before with other arguments, or another
        unrecoverable `BrokerError`) ends the run; the messages in hand then go back to the
        queue.
        """
        self._stop = stop
        failures = 0
        try:
            while not stop.is_set():
                try:
                    self._link.open()
                    if ready is not None:
                        ready.set()
                    self._link.pump(0.5)
                    failures = 0
                except RECOVERABLE as exc:
                    self._link.close()
                    pause = compute_backoff(failures)
                    failures += 1
                    log.warning(
                        "consumer %s lost the broker (%s); retry in %.1fs", self, exc, pause
                    )
                    stop.wait(pause)
        except (amqp.exceptions.AMQPError, kombu.exceptions.KombuError) as exc:
            raise broker_failure(exc, f"consumer {self.spec.name} failed") from exc
        finally:
            self._link.close()

    def close(self) -> None:
        """Close the connection (unacknowledged messages are redelivered) and the store."""
        self._link.close()
        self.store.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __str__(self) -> str:
        return self.spec.name

    def _on_message(self, message: Any) -> None:
        self.stats.count(self._process(message))

    def _process(self, message: Any) -> Outcome:
        try:
            event = read_event(message_body(message), self._major)
        except InvalidEvent as exc:
            log.error("consumer %s dead-letters an unreadable message: %s", self, exc)
            message.reject(requeue=False)
            return Outcome.DEAD
        if event is None:
            message.ack()  # another major version or a newer event type: not ours to handle
            return Outcome.IGNORED
        place = locate(event)
        if place is not None:
            last = self.store.last(place.ref)
            verdict = judge(last, place.sequence, event.id, place.modified)
            if verdict is not Verdict.NEW:
                message.ack()
                return Outcome(verdict.value)
        try:
            self._handler(event)
        except Exception as exc:  # any failure of the handler is one failed attempt
            return self._failed(message, event, exc)
        if place is not None:
            self.store.remember(place.ref, place.applied(event.id))
        else:
            self.heartbeats[(event.data.channel_id, event.data.resource.value)] = event
        self._attempts.forget(event.id)
        message.ack()
        return Outcome.APPLIED

    def _failed(self, message: Any, event: CloudEvent[Any], exc: Exception) -> Outcome:
        attempt = (
            delivery_attempt(message.headers)
            if self.spec.quorum
            else self._attempts.failed(event.id)
        )
        what = f"{event.type} {event.id} (subject {event.subject})"
        if attempt >= self.spec.max_attempts:
            log.error("consumer %s dead-letters %s after %d attempts: %r", self, what, attempt, exc)
            message.reject(requeue=False)
            self._attempts.forget(event.id)
            return Outcome.DEAD
        log.warning("consumer %s: attempt %d of %s failed: %r", self, attempt, what, exc)
        if self._retry_delay > 0:
            self._stop.wait(compute_backoff(attempt - 1, base=self._retry_delay))
        message.reject(requeue=True)
        return Outcome.RETRIED
