"""Name every Redis key, exchange, queue and routing key the service uses.

Redis keys carry a hash tag per (channel, resource), ``{akp:<channel>:<resource>}``, so all
of one sync step's keys live in one Redis Cluster slot and can share a pipeline, a MULTI or
a Lua script.
"""

from __future__ import annotations

from typing import Final

from publisher.records import Resource

KEY_PREFIX: Final = "akp"

# Records are grouped into buckets of BUCKET_SIZE consecutive keys, one compressed string each
# (see `publisher.state`): far less memory than one top-level key per record, one MGET a page.
BUCKET_SIZE: Final = 100

STOCK_EXCHANGE: Final = "akinon.stock"
PRICE_EXCHANGE: Final = "akinon.price"
REJECTED_EXCHANGE: Final = "akinon.rejected"
UNROUTED_EXCHANGE: Final = "akinon.unrouted"
UNROUTED_QUEUE: Final = "akinon.unrouted"


def _tag(channel_id: int, resource: Resource) -> str:
    return f"{KEY_PREFIX}:{{{channel_id}:{resource.value}}}"


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


def lock(channel_id: int, resource: Resource) -> str:
    """Return the single-flight lock key of one (channel, resource)."""
    return f"{_tag(channel_id, resource)}:lock"


def exchange_for(resource: Resource) -> str:
    """Return the topic exchange that carries a resource's change events."""
    return STOCK_EXCHANGE if resource is Resource.STOCK else PRICE_EXCHANGE


def changed_routing_key(resource: Resource, channel_id: int) -> str:
    """Return e.g. ``stock.changed.5``."""
    return f"{resource.value}.changed.{channel_id}"


def rejected_routing_key(resource: Resource, channel_id: int) -> str:
    """Return e.g. ``stock.rejected.5`` (published on the rejected exchange)."""
    return f"{resource.value}.rejected.{channel_id}"
