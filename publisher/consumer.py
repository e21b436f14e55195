"""CONSUME edge: a small, typed kit for Python services that consume the published events.

    sub = Subscription(
        "amqp://guest:guest@rabbitmq:5672//",
        queue="erp.stock",
        patterns=["stock.changed.#"],
        handler=apply_to_erp,                # called with a parsed StockChanged / PriceChanged ...
        dedupe=RedisStore.from_url("redis://redis:6379/0", queue="erp.stock"),
    )
    sub.run(stop_event)                      # or sub.drain(timeout=1.0) in a batch job or test

Topology (declared on connect, idempotent)::

    akinon.stock / akinon.price / akinon.rejected  --pattern-->  <queue>      quorum, durable
                                                                   | rejected after the last
                                                                   v attempt, or unreadable
    akinon.dead (direct, durable)   --routing key <queue>-->  <queue>.dead    quorum, durable

Each pattern is bound only on the exchanges whose routing keys it can match. The queue
dead-letters at least once (`x-dead-letter-strategy: at-least-once`), so a failed message is
in `<queue>.dead` (with RabbitMQ's `x-death` header saying why) before it leaves `<queue>`:
nothing is lost; `replay_dead_letters` moves them back once the cause is fixed. Its
`x-delivery-limit` is `max_attempts`, a safety net for a consumer that crashes on a message
instead of raising (RabbitMQ 3.x also counts a return when a consumer's connection closes).
Queue arguments are fixed when a queue is first declared: to change `max_attempts` of an
existing queue, use a RabbitMQ policy or a new queue. Needs RabbitMQ 3.10 or later.

What happens to one message:

1. An unreadable body (not JSON, or failing the schema of a known type) goes straight to
   the dead-letter queue. An event of a type or major version this kit does not know is
   acknowledged and skipped: new types and majors are added side by side (see
   `publisher.contract`); unknown fields are ignored.
2. Duplicates and stale events are acknowledged and dropped, by the last applied (sequence,
   id) of the record, kept in a `SequenceStore`:

   - sequence < last sequence                -> stale, never applied;
   - sequence == last and id == last id      -> duplicate (a re-publish or redelivery);
   - sequence == last and id != last id      -> applied: after a crash the producer may
     re-publish a sequence with newer content, superseding a version it never committed;
   - sequence > last, or no last             -> applied.

   `record.rejected` events carry no sequence; one equal to the last seen for the record is
   a duplicate.
3. The handler runs. If it returns, the (sequence, id) is remembered, then the message is
   acknowledged: acknowledging only after both means a crash causes a redelivery, never a
   loss, so handlers must be idempotent (and the store makes most repeats cheap no-ops).
   If it raises, the message is requeued after a short backoff, up to `max_attempts`
   deliveries in all (counted by the broker's `x-delivery-count`, or by this process), and
   then dead-lettered. While it waits in the queue, a newer event of the same record may be
   applied; the retry is then stale and dropped, which is right for events that carry a
   record's whole content (`after`).

Prefetch and concurrency: one `Subscription` is one connection and one thread; it handles
its messages one at a time, in queue order. `prefetch` (default 50) is how many unacked
messages the broker sends ahead, which hides the network round trip; raise it for small
fast handlers, lower it (even to 1) for slow ones, since prefetched messages wait behind the
one being handled (and behind its retry backoff). To go faster, run more processes on the
same queue: each record's events may then be handled out of order and concurrently, and the
store's check-then-remember is not a lock, so make the handler's own write conditional on
the sequence (as `examples/erp_connector.py` does in SQL), or set `single_active=True` to
have RabbitMQ feed one consumer at a time, with the others on standby.

Stores: `MemoryStore` (per process, lost on restart) and `RedisStore` (shared, survives
restarts; keys ``akc:{<queue>}:...``, where the hash tag keeps one consumer queue's keys in
one Redis Cluster slot).

`follow` is the watching variant, for `akinon-publisher tail`: a temporary queue, raw
bodies, no dedupe and no retries.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Protocol

import amqp
import kombu.exceptions
import orjson
import redis
from kombu.connection import Connection
from kombu.entity import Queue, binding
from kombu.messaging import Consumer
from pydantic import ValidationError

from publisher import topology
from publisher.backoff import compute_backoff
from publisher.broker import BROKER_ERRORS, DEAD, EXCHANGES, RECOVERABLE, declare_topology
from publisher.errors import BrokerError, StateStoreError
from publisher.events import (
    EVENT_MODELS,
    SCHEMA_MAJOR,
    ChangeData,
    CloudEvent,
    EventType,
    RejectionData,
)
from publisher.records import Resource, describe_errors

log = logging.getLogger(__name__)


Handler = Callable[[CloudEvent[Any]], None]


class InvalidEvent(ValueError):
    """A message body that is not a readable event: it goes to the dead-letter queue."""


# ------------------------------------------------------------------------------ the rules


class Verdict(StrEnum):
    """What the stored position of a record says about an incoming event of it."""

    NEW = "new"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Applied:
    """The last event applied for one record: its sequence and its id."""

    sequence: int
    event_id: str


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Names one record's stream of events: channel, stream (event type) and record key."""

    channel_id: int
    stream: str
    key: int | None


def judge(last: Applied | None, sequence: int, event_id: str) -> Verdict:
    """Decide whether an event with this sequence and id should be applied."""
    if last is None or sequence > last.sequence:
        return Verdict.NEW
    if sequence < last.sequence:
        return Verdict.STALE
    # Same sequence: a re-publish of the same version, or a newer version that replaced
    # one the producer never committed (it then has another id).
    return Verdict.DUPLICATE if event_id == last.event_id else Verdict.NEW


def position(event: CloudEvent[Any]) -> tuple[RecordRef, int]:
    """Return which record an event is about and its sequence (0 for a rejection)."""
    data = event.data
    if isinstance(data, ChangeData):
        return RecordRef(data.channel_id, event.type, data.key), data.sequence
    if isinstance(data, RejectionData):
        return RecordRef(data.channel_id, f"{data.resource.value}.rejected", data.key), 0
    raise TypeError(f"no record position in {type(data).__name__}")


def read_event(body: bytes, major: int = SCHEMA_MAJOR) -> CloudEvent[Any] | None:
    """Parse a body into its typed event; None for a type or major this kit does not know.

    Unknown fields are ignored (minor versions may add some); a body that is not JSON, or
    that fails the model of its known type, raises `InvalidEvent`.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidEvent("not a JSON object")
    kind = _known_type(document.get("type"))
    if kind is None or _major_of(document.get("dataschema"), kind) not in (major, None):
        return None
    try:
        return EVENT_MODELS[kind].model_validate(document, extra="ignore")
    except ValidationError as exc:
        raise InvalidEvent(f"{kind.value}: {describe_errors(exc)}") from None


def _known_type(value: Any) -> EventType | None:
    try:
        return EventType(value)
    except ValueError:
        return None


def _major_of(dataschema: Any, kind: EventType) -> int | None:
    """Return the major version a `dataschema` names; None when it is not one of ours."""
    prefix = kind.dataschema.rsplit(":", 1)[0] + ":v"
    if isinstance(dataschema, str) and dataschema.startswith(prefix):
        number = dataschema[len(prefix) :]
        if number.isdigit():
            return int(number)
    return None


# ---------------------------------------------------------------------------- the routes

# Every published routing key, per exchange, as words; None stands for the channel id.
_ROUTES: Final = tuple(
    (route.exchange, words) for route in topology.ROUTES for words in route.words()
)
_EXCHANGES: Final = {exchange.name: exchange for exchange in EXCHANGES}


def topic_matches(pattern: Sequence[str], words: Sequence[str | None]) -> bool:
    """Say whether a topic pattern (as words) can match a routing key (None: any word)."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(topic_matches(rest, words[start:]) for start in range(len(words) + 1))
    if not words or not (head == "*" or words[0] is None or words[0] == head):
        return False
    return topic_matches(rest, words[1:])


def exchanges_for(pattern: str) -> list[str]:
    """Return the event exchanges carrying routing keys the pattern can match."""
    words = pattern.split(".")
    found = sorted({exchange for exchange, key in _ROUTES if topic_matches(words, key)})
    if not found:
        raise ValueError(f"pattern {pattern!r} matches no routing key the publisher uses")
    return found


def _bindings(patterns: Sequence[str]) -> list[binding]:
    return [
        binding(_EXCHANGES[name], routing_key=pattern)
        for pattern in patterns
        for name in exchanges_for(pattern)
    ]


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A durable consumer queue, its bindings and its dead-letter queue."""

    name: str
    patterns: tuple[str, ...]
    max_attempts: int = 5
    quorum: bool = True
    single_active: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith("amq."):
            raise ValueError(f"invalid queue name {self.name!r}")
        if not self.patterns:
            raise ValueError("a subscription needs at least one routing-key pattern")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for pattern in self.patterns:
            exchanges_for(pattern)  # fail now, not at the first connect

    @property
    def dead_name(self) -> str:
        """Return the name of the dead-letter queue: ``<queue>.dead``."""
        return topology.dead_queue(self.name)

    def arguments(self) -> dict[str, Any]:
        """Return the queue arguments: type, dead-lettering, delivery limit."""
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": topology.DEAD_EXCHANGE,
            "x-dead-letter-routing-key": self.name,
        }
        if self.quorum:
            arguments |= {
                "x-queue-type": "quorum",
                "x-delivery-limit": self.max_attempts,
                # At-least-once dead-lettering needs reject-publish overflow; together they
                # keep a message until the dead-letter queue has confirmed it.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        if self.single_active:
            arguments["x-single-active-consumer"] = True
        return arguments

    def queue(self) -> Queue:
        """Return the consumer queue with one binding per (pattern, matching exchange)."""
        return Queue(
            self.name,
            bindings=_bindings(self.patterns),
            durable=True,
            auto_delete=False,
            queue_arguments=self.arguments(),
        )

    def dead_queue(self) -> Queue:
        """Return the dead-letter queue, bound to `akinon.dead` by the queue's name."""
        arguments = {"x-queue-type": "quorum"} if self.quorum else {}
        return Queue(
            self.dead_name,
            DEAD,
            routing_key=self.name,
            durable=True,
            auto_delete=False,
            queue_arguments=arguments,
        )


def temporary_queue(patterns: Sequence[str]) -> Queue:
    """Return a server-only queue for watching: exclusive, auto-deleted, not durable."""
    return Queue(
        f"{topology.TAIL_QUEUE_PREFIX}.{uuid.uuid4().hex[:12]}",
        bindings=_bindings(patterns),
        exclusive=True,
        auto_delete=True,
        durable=False,
    )


# ---------------------------------------------------------------------------- the stores


class SequenceStore(Protocol):
    """Remember, per record, the last event applied; never move a record backwards."""

    def last(self, ref: RecordRef) -> Applied | None:
        """Return the last event applied for a record, if any."""
        ...

    def remember(self, ref: RecordRef, applied: Applied) -> None:
        """Record an applied event, unless a higher sequence is already remembered."""
        ...

    def close(self) -> None:
        """Release any connection."""
        ...


class MemoryStore:
    """Keep the last applied events in this process: for tests and single-process tools."""

    def __init__(self) -> None:
        self._last: dict[RecordRef, Applied] = {}
        self._lock = threading.Lock()

    def last(self, ref: RecordRef) -> Applied | None:
        """Return the last event applied for a record, if any."""
        return self._last.get(ref)

    def remember(self, ref: RecordRef, applied: Applied) -> None:
        """Record an applied event, unless a higher sequence is already remembered."""
        with self._lock:
            current = self._last.get(ref)
            if current is None or applied.sequence >= current.sequence:
                self._last[ref] = applied

    def close(self) -> None:
        """Nothing to release."""


# KEYS[1] bucket hash; ARGV: field, sequence, event id. A value is "<sequence> <id>".
_REMEMBER: Final = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local sequence = tonumber(string.match(current, '^(%d+)'))
  if sequence > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
"""


class RedisStore:
    """Keep the last applied events in Redis, shared by every process of one consumer queue.

    Layout: hash ``akc:{<queue>}:<channel>:<stream>:<key // 100>``, field ``<key % 100>``,
    value ``<sequence> <event id>``. The ``{<queue>}`` hash tag puts all of a queue's keys
    in one Redis Cluster slot; a Lua script makes `remember` a compare-and-set.
    """

    def __init__(
        self, client: redis.Redis, queue: str, *, prefix: str = topology.CONSUMER_PREFIX
    ) -> None:
        self.client = client
        self.namespace = topology.consumer_namespace(queue, prefix)
        self._remember = client.register_script(_REMEMBER)

    @classmethod
    def from_url(
        cls, url: str, queue: str, *, prefix: str = topology.CONSUMER_PREFIX
    ) -> RedisStore:
        """Connect to the Redis at `url`."""
        return cls(redis.Redis.from_url(url), queue, prefix=prefix)

    def where(self, ref: RecordRef) -> tuple[str, str]:
        """Return (hash key, field) of a record."""
        return topology.consumer_position(self.namespace, ref.channel_id, ref.stream, ref.key)

    def last(self, ref: RecordRef) -> Applied | None:
        """Return the last event applied for a record, if any."""
        key, slot = self.where(ref)
        with _translated():
            value = self.client.hget(key, slot)
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        sequence, event_id = text.split(" ", 1)
        return Applied(int(sequence), event_id)

    def remember(self, ref: RecordRef, applied: Applied) -> None:
        """Record an applied event, unless a higher sequence is already remembered."""
        key, slot = self.where(ref)
        with _translated():
            self._remember(keys=[key], args=[slot, applied.sequence, applied.event_id])

    def forget_all(self) -> int:
        """Delete everything this queue's store remembers; return how many hashes went."""
        with _translated():
            found = list(self.client.scan_iter(match=f"{self.namespace}:*", count=500))
            return int(self.client.delete(*found)) if found else 0

    def close(self) -> None:
        """Close the Redis connection pool."""
        self.client.close()


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise StateStoreError(f"consumer store failed: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------- counting, attempts


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
    per message and across restarts of the consumer.
    """
    return int((headers or {}).get("x-delivery-count") or 0) + 1


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


# ------------------------------------------------------------------------ the connection


def _body(message: Any) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode()


class _Link:
    """One connection, one channel, one kombu consumer on one queue."""

    def __init__(
        self,
        url: str,
        queue: Queue,
        on_message: Callable[[Any], None],
        *,
        prefetch: int,
        connect_timeout: float,
        extra: Sequence[Queue] = (),
    ) -> None:
        self._url = url
        self._queue = queue
        self._extra = extra
        self._on_message = on_message
        self._prefetch = prefetch
        self._connect_timeout = connect_timeout
        self._connection: Connection | None = None
        self._consumer: Consumer | None = None

    def open(self) -> None:
        """Connect, declare the topology and start consuming (once)."""
        if self._connection is not None:
            return
        connection = Connection(self._url, connect_timeout=self._connect_timeout)
        try:
            # One quick try: `run` does its own backoff between reconnections.
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
            channel = connection.channel()
            declare_topology(channel)
            for queue in (*self._extra, self._queue):
                queue.bind(channel).declare()
            consumer = Consumer(
                channel, queues=[self._queue], on_message=self._on_message, auto_declare=False
            )
            consumer.qos(prefetch_count=self._prefetch)
            consumer.consume()
        except BaseException:
            connection.release()
            raise
        self._connection, self._consumer = connection, consumer

    def pump(self, timeout: float) -> bool:
        """Handle what arrives within `timeout` seconds; False when nothing did."""
        self.open()
        assert self._connection is not None
        try:
            self._connection.drain_events(timeout=timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Stop consuming and close; unacknowledged messages go back to the queue."""
        connection, consumer = self._connection, self._consumer
        self._connection = self._consumer = None
        if connection is None:
            return
        with contextlib.suppress(*BROKER_ERRORS):
            if consumer is not None:
                consumer.cancel()
        with contextlib.suppress(*BROKER_ERRORS):
            connection.release()


# -------------------------------------------------------------------------- subscriptions


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
        self._handler = handler
        self._retry_delay = retry_delay
        self._major = major
        self._attempts = AttemptCounter()
        self._stop = threading.Event()
        self._link = _Link(
            amqp_url,
            self.spec.queue(),
            self._on_message,
            prefetch=prefetch,
            connect_timeout=connect_timeout,
            extra=(self.spec.dead_queue(),),
        )

    def declare(self) -> None:
        """Connect and declare the queues and bindings now (otherwise the first pump does)."""
        with _as_broker_error():
            self._link.open()

    def drain(self, timeout: float = 1.0) -> Stats:
        """Handle messages until none arrives for `timeout` seconds; return the counts."""
        try:
            with _as_broker_error():
                while self._link.pump(timeout):
                    pass
        except BrokerError:
            self._link.close()  # a later call starts on a fresh connection
            raise
        return self.stats

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Handle messages until `stop` is set, reconnecting after a lost connection.

        Sets `ready` once consuming. A store failure (`StateStoreError`) or a broker refusal
        (`BrokerError`, e.g. a queue declared before with other arguments) ends the run;
        the messages in hand then go back to the queue.
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
            raise BrokerError(f"consumer {self.spec.name} failed: {exc}") from exc
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
            event = read_event(_body(message), self._major)
        except InvalidEvent as exc:
            log.error("consumer %s dead-letters an unreadable message: %s", self, exc)
            message.reject(requeue=False)
            return Outcome.DEAD
        if event is None:
            message.ack()  # another major version or a newer event type: not ours to handle
            return Outcome.IGNORED
        ref, sequence = position(event)
        verdict = judge(self.store.last(ref), sequence, event.id)
        if verdict is not Verdict.NEW:
            message.ack()
            return Outcome(verdict.value)
        try:
            self._handler(event)
        except Exception as exc:  # any failure of the handler is one failed attempt
            return self._failed(message, event, exc)
        self.store.remember(ref, Applied(sequence, event.id))
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


@contextlib.contextmanager
def _as_broker_error() -> Iterator[None]:
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BrokerError(f"consuming failed: {type(exc).__name__}: {exc}") from exc


def replay_dead_letters(amqp_url: str, queue: str, *, limit: int | None = None) -> int:
    """Move messages from ``<queue>.dead`` back to `queue`, oldest first; return how many.

    For after the cause is fixed. Each message is republished (with publisher confirms) to
    the queue by name, then removed from the dead-letter queue, so a crash in between
    duplicates a message (which the consumer drops) and never loses one. Its `x-death`
    history stays; its delivery count starts again.
    """
    moved = 0
    with (
        _as_broker_error(),
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
        handle(_body(message))
        message.ack()

    link = _Link(
        url,
        temporary_queue(chosen),
        on_message,
        prefetch=prefetch,
        connect_timeout=connect_timeout,
    )
    try:
        with _as_broker_error():
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
    """Return the routing-key patterns of stock and price changes of these channels (or all)."""
    if not channels:
        return ["stock.changed.*", "price.changed.*"]
    return [
        topology.changed_routing_key(resource, channel)
        for channel in channels
        for resource in Resource
    ]
