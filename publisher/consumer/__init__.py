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
2. Duplicates and stale events are acknowledged and dropped, by the last applied
   (modified_date, sequence, id) of the record, kept in a `SequenceStore`. A record's place
   is (`modified_date`, `sequence`): Akinon's date first, so the order survives the
   publisher losing its state (its sequences then start again at 1); its change and
   deletion events share one order:

   - place before the last one's             -> stale, never applied;
   - same place and id == last id            -> duplicate (a re-publish or redelivery);
   - same place and id != last id            -> applied: after a crash the producer may
     re-publish a sequence with newer content, superseding a version it never committed;
   - place after the last one's, or no last  -> applied.

   `record.rejected` events carry no place; one equal to the last seen for the record is a
   duplicate. Heartbeats (`publisher.heartbeat`) are about no record: they go to the
   handler as they come, and `Subscription.heartbeats` keeps the last one per (channel,
   resource). So do reload events (`stock.reloaded`, `price.reloaded`, bound by
   `change_patterns`): after the publisher lost its state, they list the keys a load of the
   whole list found, and the handler deletes what it holds that `reload_drops` says left
   the list (`publisher.events.RELOAD_RULE`), as a deletion dated `started_at`.
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

The kit, one module per concept (each imports only the ones named before it): `rules` (read and
judge one message), `queues` (routes and queue declarations), `stores` (the last applied
event per record), `link` (one broker connection), `subscription` (the consuming loop and
its counts), `tools` (replay, follow, signals).
"""

from publisher.consumer.queues import QueueSpec, exchanges_for, temporary_queue, topic_matches
from publisher.consumer.rules import (
    Applied,
    InvalidEvent,
    RecordRef,
    Verdict,
    judge,
    locate,
    microseconds,
    position,
    read_event,
    reload_drops,
)
from publisher.consumer.stores import MemoryStore, RedisStore, SequenceStore
from publisher.consumer.subscription import (
    AttemptCounter,
    Handler,
    Outcome,
    Stats,
    Subscription,
    delivery_attempt,
)
from publisher.consumer.tools import (
    change_patterns,
    follow,
    replay_dead_letters,
    stop_on_signals,
)

__all__ = [
    "Applied",
    "AttemptCounter",
    "Handler",
    "InvalidEvent",
    "MemoryStore",
    "Outcome",
    "QueueSpec",
    "RecordRef",
    "RedisStore",
    "SequenceStore",
    "Stats",
    "Subscription",
    "Verdict",
    "change_patterns",
    "delivery_attempt",
    "exchanges_for",
    "follow",
    "judge",
    "locate",
    "microseconds",
    "position",
    "read_event",
    "reload_drops",
    "replay_dead_letters",
    "stop_on_signals",
    "temporary_queue",
    "topic_matches",
]
