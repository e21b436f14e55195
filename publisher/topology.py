"""Name every Redis key, exchange, queue and routing key, the publisher's and the consumer kit's.

Nothing else in the package spells one of these names; everything looks them up here.

    Redis, publisher     akp:{<channel>:<resource>}:s:<bucket>   state bucket (`publisher.state`)
                         akp:{<channel>:<resource>}:rej          rejected digests
                         akp:{<channel>:<resource>}:meta         step bookkeeping
                         akp:{<channel>:<resource>}:lock         single-flight lock
                         akp:{<channel>:<resource>}:batches      our open batch requests
                         akp:{<channel>:<resource>}:pending      versions sent, not committed
    Redis, consumer kit  akc:{<queue>}:<channel>:<stream>:<n>    last applied events
    exchanges            akinon.<resource>   topic, durable, alternate akinon.unrouted
                         akinon.rejected     topic, durable, alternate akinon.unrouted
                         akinon.heartbeat    topic, durable (no alternate: a heartbeat no
                                             queue wants is dropped, never kept)
                         akinon.unrouted     fanout, durable
                         akinon.dead         direct, durable (the consumer kit's dead letters)
                         "" (the default)    an on-demand snapshot sent to one named queue
    queues               akinon.unrouted (at most UNROUTED_MAX_LENGTH events, the oldest
                         dropped); a consumer's <queue> and <queue>.dead;
                         akinon.tail.<random> (temporary, for watching)
    routing keys         <resource>.changed.<channel>    on akinon.<resource>
                         <resource>.deleted.<channel>    on akinon.<resource>
                         <resource>.reloaded.<channel>   on akinon.<resource>
                         <resource>.rejected.<channel>   on akinon.rejected
                         <resource>.heartbeat.<channel>  on akinon.heartbeat

Redis keys carry a hash tag, ``{<channel>:<resource>}`` or ``{<queue>}``, so every key one
sync step (or one consumer queue) touches lives in one Redis Cluster slot and can share a
pipeline, a MULTI or a Lua script.

Names are derived from the resource's value (`stock`, `price`), so a resource added to
`publisher.records` gets its exchange and routing keys without an edit here. The exchanges
are described as plain data; `publisher.broker` declares them with kombu.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from publisher.events import CHANGED_TYPE, DELETED_TYPE, RELOADED_TYPE, EventType
from publisher.records import Resource

# ------------------------------------------------------------------------------- Redis

KEY_PREFIX: Final = "akp"
CONSUMER_PREFIX: Final = "akc"

# Records are grouped into buckets of BUCKET_SIZE consecutive keys, one compressed string each
# (see `publisher.state`): far less memory than one top-level key per record, one MGET a page.
BUCKET_SIZE: Final = 100
# The consumer kit keeps its positions in hashes of this many records (a small hash stays in
# Redis's compact encoding).
CONSUMER_BUCKET_SIZE: Final = 100


def _tag(channel_id: int, resource: Resource) -> str:
    return f"{KEY_PREFIX}:{{{channel_id}:{resource.value}}}"


def state_pattern(channel_id: int, resource: Resource) -> str:
    """Return a SCAN pattern matching every key of one (channel, resource)."""
    return f"{_tag(channel_id, resource)}:*"


def state_bucket(channel_id: int, resource: Resource, bucket: int) -> str:
    """Return the string holding the stored state of one bucket of record keys."""
    return f"{_tag(channel_id, resource)}:s:{bucket}"


def bucket_of(record_key: int) -> tuple[int, str]:
    """Return (bucket number, field name) where a record key's state lives."""
    bucket, field = divmod(record_key, BUCKET_SIZE)
    return bucket, str(field)


def rejected(channel_id: int, resource: Resource) -> str:
    """Return the hash of record key -> digest of the last rejected raw content."""
    return f"{_tag(channel_id, resource)}:rej"


def meta(channel_id: int, resource: Resource) -> str:
    """Return the hash of step bookkeeping: tracked count, last step, last error."""
    return f"{_tag(channel_id, resource)}:meta"


def batches(channel_id: int, resource: Resource) -> str:
    """Return the hash of batch pk -> journal entry of our open batch requests."""
    return f"{_tag(channel_id, resource)}:batches"


def pending(channel_id: int, resource: Resource) -> str:
    """Return the hash of record key -> version sent but not yet committed (the journal)."""
    return f"{_tag(channel_id, resource)}:pending"


def lock(channel_id: int, resource: Resource) -> str:
    """Return the single-flight lock key of one (channel, resource)."""
    return f"{_tag(channel_id, resource)}:lock"


def consumer_namespace(queue: str, prefix: str = CONSUMER_PREFIX) -> str:
    """Return the prefix of every key a consumer queue's store keeps."""
    return f"{prefix}:{{{queue}}}"


def consumer_position(
    namespace: str, channel_id: int, stream: str, key: int | None
) -> tuple[str, str]:
    """Return (hash key, field) where a consumer store keeps one record's position."""
    if key is None:
        bucket, field = "none", "none"
    else:
        number, rest = divmod(key, CONSUMER_BUCKET_SIZE)
        bucket, field = str(number), str(rest)
    return f"{namespace}:{channel_id}:{stream}:{bucket}", field


# --------------------------------------------------------------------------- exchanges

EXCHANGE_PREFIX: Final = "akinon"
REJECTED_EXCHANGE: Final = "akinon.rejected"
HEARTBEAT_EXCHANGE: Final = "akinon.heartbeat"
# The default exchange routes by queue name: how a snapshot reaches one named queue.
DEFAULT_EXCHANGE: Final = ""
UNROUTED_EXCHANGE: Final = "akinon.unrouted"
UNROUTED_QUEUE: Final = "akinon.unrouted"
# Events kept in akinon.unrouted at most: past it, the oldest are dropped, so a forgotten
# binding cannot fill the broker's disk. A constant, not a setting: every process declares
# the queue, and declarations with other arguments would be refused.
UNROUTED_MAX_LENGTH: Final = 100_000
UNROUTED_QUEUE_ARGUMENTS: Final = {"x-max-length": UNROUTED_MAX_LENGTH, "x-overflow": "drop-head"}
DEAD_EXCHANGE: Final = "akinon.dead"
TAIL_QUEUE_PREFIX: Final = "akinon.tail"
DEAD_QUEUE_SUFFIX: Final = ".dead"


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """An exchange as the broker knows it: name, type, and where unroutable messages go."""

    name: str
    kind: str
    alternate: str | None = None
    durable: bool = True

    def arguments(self) -> dict[str, str]:
        """Return the declare arguments (the alternate exchange, if any)."""
        return {} if self.alternate is None else {"alternate-exchange": self.alternate}


def exchange_for(resource: Resource) -> str:
    """Return the topic exchange that carries a resource's change events."""
    return f"{EXCHANGE_PREFIX}.{resource.value}"


STOCK_EXCHANGE: Final = exchange_for(Resource.STOCK)
PRICE_EXCHANGE: Final = exchange_for(Resource.PRICE)

UNROUTED: Final = ExchangeSpec(UNROUTED_EXCHANGE, "fanout")
EVENT_EXCHANGES: Final = (
    *(ExchangeSpec(exchange_for(r), "topic", UNROUTED_EXCHANGE) for r in Resource),
    ExchangeSpec(REJECTED_EXCHANGE, "topic", UNROUTED_EXCHANGE),
    ExchangeSpec(HEARTBEAT_EXCHANGE, "topic"),
)
DEAD: Final = ExchangeSpec(DEAD_EXCHANGE, "direct")


def dead_queue(queue: str) -> str:
    """Return the name of a consumer queue's dead-letter queue: ``<queue>.dead``."""
    return f"{queue}{DEAD_QUEUE_SUFFIX}"


# ------------------------------------------------------------------------- routing keys

CHANGED_KEY: Final = "{resource}.changed.{channel_id}"
DELETED_KEY: Final = "{resource}.deleted.{channel_id}"
RELOADED_KEY: Final = "{resource}.reloaded.{channel_id}"
REJECTED_KEY: Final = "{resource}.rejected.{channel_id}"
HEARTBEAT_KEY: Final = "{resource}.heartbeat.{channel_id}"


def changed_routing_key(resource: Resource, channel_id: int) -> str:
    """Return e.g. ``stock.changed.5``."""
    return CHANGED_KEY.format(resource=resource.value, channel_id=channel_id)


def deleted_routing_key(resource: Resource, channel_id: int) -> str:
    """Return e.g. ``stock.deleted.5``."""
    return DELETED_KEY.format(resource=resource.value, channel_id=channel_id)


def reloaded_routing_key(resource: Resource, channel_id: int) -> str:
    """Return e.g. ``stock.reloaded.5``."""
    return RELOADED_KEY.format(resource=resource.value, channel_id=channel_id)


def heartbeat_routing_key(resource: Resource, channel_id: int) -> str:
    """Return e.g. ``stock.heartbeat.5`` (published on the heartbeat exchange)."""
    return HEARTBEAT_KEY.format(resource=resource.value, channel_id=channel_id)


def rejected_routing_key(resource: Resource, channel_id: int) -> str:
    """Return e.g. ``stock.rejected.5`` (published on the rejected exchange)."""
    return REJECTED_KEY.format(resource=resource.value, channel_id=channel_id)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one event type travels: its exchange, its routing-key template, its resources."""

    kind: EventType
    exchange: str
    template: str
    resources: tuple[Resource, ...]

    @property
    def channel(self) -> str:
        """Return the route's AsyncAPI channel name: its event type in camel case."""
        first, *rest = self.kind.value.split(".")
        return first + "".join(word.capitalize() for word in rest)

    @property
    def address(self) -> str:
        """Return the template with the resource filled in when the route carries only one."""
        if len(self.resources) == 1:
            return self.template.replace("{resource}", self.resources[0].value)
        return self.template

    def routing_key(self, resource: Resource, channel_id: int) -> str:
        """Return the routing key of an event of this route."""
        return self.template.format(resource=resource.value, channel_id=channel_id)

    def words(self) -> Iterator[tuple[str | None, ...]]:
        """Yield each routing key this route can carry as words; None stands for the channel."""
        for resource in self.resources:
            key = self.template.format(resource=resource.value, channel_id="{channel_id}")
            yield tuple(None if word == "{channel_id}" else word for word in key.split("."))


ROUTES: Final = (
    *(Route(CHANGED_TYPE[r], exchange_for(r), CHANGED_KEY, (r,)) for r in Resource),
    *(Route(DELETED_TYPE[r], exchange_for(r), DELETED_KEY, (r,)) for r in Resource),
    *(Route(RELOADED_TYPE[r], exchange_for(r), RELOADED_KEY, (r,)) for r in Resource),
    Route(EventType.RECORD_REJECTED, REJECTED_EXCHANGE, REJECTED_KEY, tuple(Resource)),
    Route(EventType.HEARTBEAT, HEARTBEAT_EXCHANGE, HEARTBEAT_KEY, tuple(Resource)),
)
