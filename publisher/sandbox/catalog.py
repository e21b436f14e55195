"""Hold the sandbox's channels, records and work queue in memory (no HTTP here).

One re-entrant lock guards everything; each public method holds it only for its own short
step, so the HTTP threads, the control API and the churn thread can interleave safely.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from publisher.records import Endpoint, Resource
from publisher.sandbox import fields
from publisher.sandbox.batch_requests import BatchRequests
from publisher.sandbox.channels import (
    SEED_EPOCH_US,
    SEED_SPREAD_US,
    Channel,
    Seeding,
    channel_state,
    seed_channel,
)
from publisher.sandbox.dates import MonotonicClock, format_us, wall_us
from publisher.sandbox.errors import InvalidError, NotFoundError
from publisher.sandbox.query import Filters, Paging
from publisher.sandbox.recordset import DROP, Entry, RecordSet


@dataclass(frozen=True)
class Page:
    """One page of a list: the total count and the page's records as JSON bytes."""

    count: int
    number: int
    limit: int
    items: list[bytes]

    @property
    def last(self) -> int:
        """Return the number of the last page (1 for an empty list)."""
        return max(1, -(-self.count // self.limit))

    @property
    def exists(self) -> bool:
        """Return whether the page number is within the list."""
        return self.number <= self.last

    @property
    def has_next(self) -> bool:
        """Return whether a page follows this one."""
        return self.number < self.last

    @property
    def has_previous(self) -> bool:
        """Return whether a page precedes this one."""
        return self.number > 1


def as_resource(value: Resource | str) -> Resource:
    """Return `value` as a Resource; raise NotFoundError for an unknown name."""
    try:
        return Resource(value)
    except ValueError as exc:
        raise NotFoundError(f"Unknown resource {value!r}.") from exc


class Catalog:
    """Serve and change channels' extra stock and price records, and track acknowledgements.

    Build one with `Catalog.seeded(...)`. Records come back as plain dicts (fresh copies);
    pages come back as lists of cached JSON bytes for the HTTP layer to join.
    """

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self._lock = threading.RLock()
        self._clock = MonotonicClock(clock or wall_us)
        self._channels: dict[int, Channel] = {}
        self._batches = BatchRequests(self._clock)
        self._seeding = Seeding(channels=())

    @classmethod
    def seeded(
        cls,
        channels: Iterable[int] = (1,),
        size: int = 1000,
        seed: int = 42,
        clock: Callable[[], int] | None = None,
    ) -> Catalog:
        """Return a catalog whose channels each hold `size` stock and `size` price records."""
        catalog = cls(clock)
        catalog.reseed(channels, size, seed)
        return catalog

    # -- channels -------------------------------------------------------------------------

    def reseed(
        self,
        channels: Iterable[int] | None = None,
        size: int | None = None,
        seed: int | None = None,
    ) -> None:
        """Replace every channel, record, batch and acknowledgement with a fresh seeding.

        Arguments left out keep the values of the previous seeding.
        """
        previous = self._seeding
        seeding = Seeding(
            channels=tuple(previous.channels if channels is None else channels),
            size=previous.size if size is None else size,
            seed=previous.seed if seed is None else seed,
        )
        built = {cid: seed_channel(cid, seeding.size, seeding.seed) for cid in seeding.channels}
        with self._lock:
            self._channels = built
            self._batches.clear()
            self._seeding = seeding
            self._clock.raise_floor(SEED_EPOCH_US + 2 * SEED_SPREAD_US)

    def add_channel(self, channel_id: int, size: int = 0, seed: int = 42) -> None:
        """Add a channel with `size` seeded records of each resource."""
        channel = seed_channel(channel_id, size, seed)
        with self._lock:
            if channel_id in self._channels:
                raise InvalidError(f"Channel {channel_id} already exists.")
            self._channels[channel_id] = channel

    @property
    def channel_ids(self) -> list[int]:
        """Return the ids of every channel, ascending."""
        with self._lock:
            return sorted(self._channels)

    def channel(self, channel_id: int) -> dict[str, Any]:
        """Return a channel as the channel endpoint shows it; NotFoundError if unknown."""
        with self._lock:
            return self._channel(channel_id).to_json()

    def list_id(self, channel_id: int, resource: Resource | str) -> int:
        """Return the channel's stock list id or price list id."""
        with self._lock:
            return self._channel(channel_id).list_id(as_resource(resource))

    def _channel(self, channel_id: int) -> Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise NotFoundError("Not found.")
        return channel

    def _records(self, channel_id: int, resource: Resource | str) -> RecordSet:
        return self._channel(channel_id).sets[as_resource(resource)]

    # -- records ----------------------------------------------------------------------------

    def set_stock(self, channel_id: int, pk: int, **values: Any) -> dict[str, Any]:
        """Change a stock record (bumping its modified_date) or create it; return it."""
        return self.upsert(channel_id, Resource.STOCK, pk, values)

    def set_price(self, channel_id: int, pk: int, **values: Any) -> dict[str, Any]:
        """Change a price record (bumping its modified_date) or create it; return it."""
        return self.upsert(channel_id, Resource.PRICE, pk, values)

    def upsert(
        self, channel_id: int, resource: Resource | str, pk: int, values: dict[str, Any]
    ) -> dict[str, Any]:
        """Set the given fields of a record, creating it with defaults if absent.

        Derived fields (`adjusted_stock`, `adjusted_price`, `discount_percentage`) follow the
        base values unless given too. Setting a field stops any malformed value for it.
        """
        kind = as_resource(resource)
        clean = fields.coerce(kind, values)
        with self._lock:
            channel = self._channel(channel_id)
            records = channel.sets[kind]
            entry = records.get(pk)
            now = self._clock.tick()
            if entry is None:
                record = fields.MAKERS[kind].default(pk, channel.list_id(kind))
                record.update(clean)
                fields.MAKERS[kind].derive(record, set(clean))
                entry = records.add(pk, record, now, now)
            else:
                entry.record.update(clean)
                fields.MAKERS[kind].derive(entry.record, set(clean))
                entry.clear_overrides(set(clean))
                entry.stamp(now)
                records.changed(pk)
            return _served_copy(entry)

    def delete(self, channel_id: int, resource: Resource | str, pk: int) -> bool:
        """Delete a record; return whether it existed."""
        with self._lock:
            return self._records(channel_id, resource).remove(pk)

    def get(self, channel_id: int, resource: Resource | str, pk: int) -> dict[str, Any] | None:
        """Return one record as served, or None when absent."""
        with self._lock:
            entry = self._records(channel_id, resource).get(pk)
            return None if entry is None else _served_copy(entry)

    def record_bytes(self, channel_id: int, resource: Resource | str, pk: int) -> bytes | None:
        """Return one record's served JSON bytes, or None when absent."""
        with self._lock:
            entry = self._records(channel_id, resource).get(pk)
            return None if entry is None else entry.blob()

    def records(self, channel_id: int, resource: Resource | str) -> list[dict[str, Any]]:
        """Return every record of a channel's list as served, sorted by key."""
        with self._lock:
            records = self._records(channel_id, resource)
            blobs = records.blobs(records.keys())
        return [orjson.loads(blob) for blob in blobs]

    def count(self, channel_id: int, resource: Resource | str) -> int:
        """Return how many records a channel's list holds."""
        with self._lock:
            return len(self._records(channel_id, resource))

    def churn(self, n: int, rng: random.Random) -> list[tuple[int, Resource, int]]:
        """Change `n` random records (a stock quantity or a price); return what changed."""
        changed: list[tuple[int, Resource, int]] = []
        for _ in range(n):
            # One lock hold per change keeps readers waiting microseconds, not the whole run.
            with self._lock:
                target = self._churn_one(rng)
            if target is None:
                break
            changed.append(target)
        return changed

    def _churn_one(self, rng: random.Random) -> tuple[int, Resource, int] | None:
        targets = [
            (cid, resource)
            for cid, channel in self._channels.items()
            for resource in Resource
            if len(channel.sets[resource])
        ]
        if not targets:
            return None
        channel_id, resource = rng.choice(targets)
        records = self._channels[channel_id].sets[resource]
        pk = records.random_key(rng)
        if pk is None:
            return None
        entry = records.entries[pk]
        _change_amount(entry, resource, rng)
        entry.stamp(self._clock.tick())
        records.changed(pk)
        return channel_id, resource, pk

    def mark_malformed(
        self,
        channel_id: int,
        resource: Resource | str,
        pk: int,
        field: str,
        value: Any = DROP,
        *,
        touch: bool = True,
    ) -> dict[str, Any]:
        """Serve a record with `value` in `field` (left out when `value` is DROP).

        The record's true values are kept for filtering and are served again once the field
        is set. With `touch` the record's modified_date moves on, so a client that already
        acknowledged it sees it again in `updates`.
        """
        with self._lock:
            records = self._records(channel_id, resource)
            entry = _existing(records, pk)
            entry.override(field, value)
            if touch:
                entry.stamp(self._clock.tick())
            records.changed(pk)
            return _served_copy(entry)

    def drop_field(
        self, channel_id: int, resource: Resource | str, pk: int, field: str
    ) -> dict[str, Any]:
        """Serve a record without `field` (a missing required field)."""
        return self.mark_malformed(channel_id, resource, pk, field, DROP)

    def clear_malformed(self, channel_id: int, resource: Resource | str, pk: int) -> dict[str, Any]:
        """Serve a record's true values again, without bumping its modified_date."""
        with self._lock:
            records = self._records(channel_id, resource)
            entry = _existing(records, pk)
            entry.clear_overrides()
            records.changed(pk)
            return _served_copy(entry)

    def page(
        self,
        channel_id: int,
        resource: Resource | str,
        endpoint: Endpoint,
        filters: Filters,
        paging: Paging,
    ) -> Page:
        """Return one page of an endpoint's list: the total count and the page's bytes."""
        with self._lock:
            records = self._records(channel_id, resource)
            keys = records.view(endpoint, filters)
            chosen = keys[paging.start : paging.start + paging.limit]
            items = records.blobs(chosen)
            count = len(keys)
        return Page(count=count, number=paging.page, limit=paging.limit, items=items)

    def pending(
        self, channel_id: int, resource: Resource | str, endpoint: Endpoint = Endpoint.INSERTS
    ) -> list[int]:
        """Return the keys an endpoint would list now, with no filters (sorted)."""
        with self._lock:
            return list(self._records(channel_id, resource).view(endpoint, Filters()))

    # -- the work queue ------------------------------------------------------------------

    def create_batch(self, channel_id: int) -> dict[str, Any]:
        """Open a batch request on a channel and return it (status `initialized`)."""
        with self._lock:
            self._channel(channel_id)
            return self._batches.create(channel_id)

    def batch(self, channel_id: int, pk: int, with_objects: bool = True) -> dict[str, Any]:
        """Return one batch request of a channel; NotFoundError if unknown."""
        with self._lock:
            self._channel(channel_id)
            return self._batches.find(channel_id, pk).to_json(with_objects)

    def batches(self, open_only: bool = False) -> list[dict[str, Any]]:
        """Return every batch (or only those not yet done or failed), oldest first."""
        with self._lock:
            return self._batches.to_json(open_only)

    def update_batch(self, channel_id: int, pk: int, body: Any) -> dict[str, Any]:
        """Move a batch to the status in `body`; a commit records its acknowledgements.

        Raises InvalidError for a bad body, a transition the state machine forbids, or a
        second commit while another batch of the same channel and content type is in commit.
        """
        with self._lock:
            return self._batches.update(self._channel(channel_id), pk, body)

    def acknowledgements(self, channel_id: int, resource: Resource | str) -> dict[int, str]:
        """Return each acknowledged key of a channel's list with its acknowledged version."""
        with self._lock:
            acks = dict(self._records(channel_id, resource).acks)
        return {pk: format_us(version) for pk, version in sorted(acks.items())}

    def errors(self, channel_id: int, resource: Resource | str) -> list[dict[str, Any]]:
        """Return the records of a channel's list acknowledged with a `failed_reason_type`."""
        with self._lock:
            return self._batches.errors(channel_id, as_resource(resource))

    # -- inspection ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Return counts per channel and the open batches, for the control API."""
        with self._lock:
            channels = [channel_state(channel) for _, channel in sorted(self._channels.items())]
            seeding = self._seeding
            total = len(self._batches)
        return {
            "seeding": {
                "channels": list(seeding.channels),
                "size": seeding.size,
                "seed": seeding.seed,
            },
            "channels": channels,
            "batches": {"total": total, "open": self.batches(open_only=True)},
        }


def _existing(records: RecordSet, pk: int) -> Entry:
    entry = records.get(pk)
    if entry is None:
        raise NotFoundError("Not found.")
    return entry


def _served_copy(entry: Entry) -> dict[str, Any]:
    return orjson.loads(entry.blob())  # type: ignore[no-any-return]


def _change_amount(entry: Entry, resource: Resource, rng: random.Random) -> None:
    entry.clear_overrides(fields.MAKERS[resource].churn(rng, entry.record))
