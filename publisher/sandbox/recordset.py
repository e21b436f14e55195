"""Keep one channel's records of one resource, with their serialised bytes and work queue.

Not thread-safe on its own: the Catalog holds one lock around every call. Each record's JSON
is cached as bytes and dropped when the record changes, so a page is a join of cached bytes.
The work queue (`inserts`, `updates`) is kept incrementally, so reading it never scans.
"""

from __future__ import annotations

import bisect
import random
from typing import Any, Final

import orjson

from publisher.records import Endpoint, Resource
from publisher.sandbox import products
from publisher.sandbox.dates import format_us
from publisher.sandbox.query import Filters


class _Drop:
    """Mark a field to leave out of a served record (see `Catalog.mark_malformed`)."""

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop()
_MAX_VIEWS: Final = 64


def _derived(record: dict[str, Any], field: str) -> Any:
    """Return a value a filter reads beyond the record's own fields (see `products`)."""
    head, _, rest = field.partition(".")
    if head == "extra_field":
        extra = record.get("extra_field")
        found = extra.get(rest) if isinstance(extra, dict) else None
        return None if found is None else str(found)
    product = record.get("product")
    if head != "product" or not isinstance(product, int):
        return None
    if rest == "sku":
        return products.sku(product)
    return products.attributes(product).get(rest.removeprefix("attributes."))


class Entry:
    """Hold one record, its dates as microseconds, its cached JSON and any malformed fields."""

    __slots__ = ("_blob", "created_us", "modified_us", "overrides", "record")

    def __init__(self, record: dict[str, Any], created_us: int, modified_us: int) -> None:
        self.record = record
        self.created_us = created_us
        self.modified_us = modified_us
        self.overrides: dict[str, Any] = {}
        self._blob: bytes | None = None
        record["created_date"] = format_us(created_us)
        record["modified_date"] = format_us(modified_us)

    def value(self, field: str) -> Any:
        """Return a field's true value for filtering; dates as microseconds."""
        if field == "modified_date":
            return self.modified_us
        if field == "created_date":
            return self.created_us
        if "." in field:  # a derived field: product.sku, product.attributes.<k>, extra_field.<k>
            return _derived(self.record, field)
        return self.record.get(field)

    def stamp(self, modified_us: int) -> None:
        """Record a change at `modified_us` and drop the cached bytes."""
        self.modified_us = modified_us
        self.record["modified_date"] = format_us(modified_us)
        self._blob = None

    def override(self, field: str, value: Any) -> None:
        """Serve `field` as `value` (or leave it out for DROP) whatever the record holds."""
        self.overrides[field] = value
        self._blob = None

    def clear_overrides(self, fields: set[str] | None = None) -> None:
        """Stop serving malformed values for `fields` (all of them when None)."""
        if fields is None:
            self.overrides.clear()
        else:
            for field in fields:
                self.overrides.pop(field, None)
        self._blob = None

    def served(self) -> dict[str, Any]:
        """Return the record as the API serves it, malformed fields included."""
        if not self.overrides:
            return dict(self.record)
        served = {name: self.overrides.get(name, value) for name, value in self.record.items()}
        served.update(self.overrides)
        return {name: value for name, value in served.items() if value is not DROP}

    def blob(self) -> bytes:
        """Return the served record as JSON bytes, serialising at most once per change."""
        if self._blob is None:
            self._blob = orjson.dumps(self.served())
        return self._blob


class RecordSet:
    """Hold the records, acknowledgements and pending work of one (channel, resource)."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.entries: dict[int, Entry] = {}
        self.acks: dict[int, int] = {}
        self.inserts: set[int] = set()
        self.updates: set[int] = set()
        # `generation` moves on every change; `membership` only when a view's key set may
        # change (a record added, removed, or moved between inserts/updates/neither), so
        # unfiltered queue views survive churn among records already pending.
        self.generation = 0
        self.membership = 0
        self._keys: list[int] = []
        self._views: dict[tuple[Endpoint, Filters], tuple[int, int, list[int]]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def keys(self) -> list[int]:
        """Return every record key in ascending order (the live list: do not mutate)."""
        return self._keys

    def get(self, pk: int) -> Entry | None:
        """Return the entry of `pk`, or None."""
        return self.entries.get(pk)

    def add(self, pk: int, record: dict[str, Any], created_us: int, modified_us: int) -> Entry:
        """Store a new record under `pk` (which must be absent) and queue it as an insert."""
        entry = Entry(record, created_us, modified_us)
        self.entries[pk] = entry
        bisect.insort(self._keys, pk)
        self.membership += 1
        self.changed(pk)
        return entry

    def changed(self, pk: int) -> None:
        """Re-file `pk` in the work queue and invalidate cached views after a change."""
        self.generation += 1
        before = (pk in self.inserts, pk in self.updates)
        self.inserts.discard(pk)
        self.updates.discard(pk)
        entry = self.entries.get(pk)
        acked = self.acks.get(pk)
        if entry is not None and acked is None:
            self.inserts.add(pk)
        elif entry is not None and acked is not None and entry.modified_us > acked:
            self.updates.add(pk)
        if before != (pk in self.inserts, pk in self.updates):
            self.membership += 1

    def remove(self, pk: int) -> bool:
        """Delete `pk` and its acknowledgement; return whether it existed."""
        if self.entries.pop(pk, None) is None:
            return False
        del self._keys[bisect.bisect_left(self._keys, pk)]
        self.acks.pop(pk, None)
        self.membership += 1
        self.changed(pk)
        return True

    def acknowledge(self, pk: int, version_us: int) -> int | None:
        """Record that a client handled `pk` as of `version_us`; return the previous version."""
        previous = self.acks.get(pk)
        self.acks[pk] = version_us
        self.changed(pk)
        return previous

    def give_back(self, pk: int, given_us: int, previous_us: int | None) -> None:
        """Undo an acknowledgement of `given_us`, unless a later batch replaced it since."""
        if self.acks.get(pk) != given_us:
            return
        if previous_us is None:
            self.acks.pop(pk, None)
        else:
            self.acks[pk] = previous_us
        self.changed(pk)

    def view(self, endpoint: Endpoint, filters: Filters) -> list[int]:
        """Return the sorted keys an endpoint lists under `filters` (cached until a change)."""
        if not filters and endpoint in (Endpoint.LIST, Endpoint.DETAILED):
            return self._keys
        cache_key = (endpoint, filters)
        cached = self._views.get(cache_key)
        # Filters read values, so any change may alter a filtered view; an unfiltered one
        # depends only on which keys are where.
        generation = self.generation if filters else -1
        if cached is not None and cached[:2] == (generation, self.membership):
            return cached[2]
        keys = self._base(endpoint)
        if filters:
            keys = [pk for pk in keys if filters.matches(self.entries[pk].value)]
        if len(self._views) >= _MAX_VIEWS:
            self._views.clear()
        self._views[cache_key] = (generation, self.membership, keys)
        return keys

    def _base(self, endpoint: Endpoint) -> list[int]:
        if endpoint is Endpoint.INSERTS:
            return sorted(self.inserts)
        if endpoint is Endpoint.UPDATES:
            return sorted(self.updates)
        if endpoint is Endpoint.INSERTS_OR_UPDATES:
            return sorted(self.inserts | self.updates)
        return self._keys

    def blobs(self, keys: list[int]) -> list[bytes]:
        """Return the cached JSON bytes of `keys`, in order."""
        entries = self.entries
        return [entries[pk].blob() for pk in keys]

    def random_key(self, rng: random.Random) -> int | None:
        """Return a random existing key, or None when the set is empty."""
        return rng.choice(self._keys) if self._keys else None
