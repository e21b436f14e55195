"""Build the sandbox's channels: their record sets and a reproducible seeding of them.

A channel owns one stock list and one price list. Seeded records are generated from a seed
and the channel id alone, so a channel's records are the same whatever else is seeded.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from publisher.records import Resource
from publisher.sandbox import fields
from publisher.sandbox.dates import parse_us
from publisher.sandbox.recordset import RecordSet

# Seeded records are dated in early 2024 so every later change, dated by the wall clock,
# sorts after them.
SEED_EPOCH_US: Final = parse_us("2024-01-01T00:00:00Z")
SEED_SPREAD_US: Final = 30 * 24 * 3600 * 1_000_000
PRODUCT_BASE: Final = 100_000
KEY_STRIDE: Final = 1_000_000


@dataclass
class Channel:
    """One sales channel: its own stock list, price list and records of each."""

    pk: int
    name: str
    lists: dict[Resource, int]
    sets: dict[Resource, RecordSet] = field(
        default_factory=lambda: {resource: RecordSet(resource) for resource in Resource}
    )

    def list_id(self, resource: Resource) -> int:
        """Return the id of this channel's stock list or price list."""
        return self.lists[resource]

    def to_json(self) -> dict[str, Any]:
        """Return the channel as `GET /api/v1/channels/{id}/` shows it."""
        return {"pk": self.pk, "name": self.name, "is_active": True}


@dataclass(frozen=True)
class Seeding:
    """The arguments a catalog was seeded with, so a reset can seed it the same way."""

    channels: tuple[int, ...] = (1,)
    size: int = 1000
    seed: int = 42


def first_key(channel_id: int) -> int:
    """Return the first record key of a channel (keys never collide across channels)."""
    return channel_id * KEY_STRIDE + 1


def seed_channel(channel_id: int, size: int, seed: int) -> Channel:
    """Build a channel with `size` stock and `size` price records, reproducible from `seed`."""
    channel = Channel(
        pk=channel_id,
        name=f"Sandbox channel {channel_id}",
        # One list per resource: the stock list <channel>1, the price list <channel>2, ...
        lists={resource: channel_id * 10 + n for n, resource in enumerate(Resource, 1)},
    )
    # A string seed per channel keeps a channel's records the same whatever else is seeded.
    rng = random.Random(f"{seed}:{channel_id}")
    for resource in Resource:
        _seed_records(channel, resource, size, rng)
    return channel


def _seed_records(channel: Channel, resource: Resource, size: int, rng: random.Random) -> None:
    make = fields.MAKERS[resource].seeded
    records = channel.sets[resource]
    list_id = channel.list_id(resource)
    # Distinct modified dates, in an order unrelated to the keys, like a real list's history.
    offsets = rng.sample(range(max(size, 1) * 1000), size)
    for index, offset in enumerate(offsets):
        pk = first_key(channel.pk) + index
        record = make(rng, pk, PRODUCT_BASE + index + 1, list_id)
        created = SEED_EPOCH_US + index * 1000
        records.add(pk, record, created, SEED_EPOCH_US + SEED_SPREAD_US + offset)


def channel_state(channel: Channel) -> dict[str, Any]:
    """Return a channel's ids and its counts per resource, for the control API."""

    def per_resource(measure: Callable[[RecordSet], int]) -> dict[str, int]:
        return {resource.value: measure(channel.sets[resource]) for resource in Resource}

    return {
        "pk": channel.pk,
        "name": channel.name,
        **{resource.spec.list_field: channel.lists[resource] for resource in Resource},
        "records": per_resource(len),
        "inserts": per_resource(lambda records: len(records.inserts)),
        "updates": per_resource(lambda records: len(records.updates)),
        "acknowledged": per_resource(lambda records: len(records.acks)),
    }
