"""COMMIT edge: keep each record's last published version, in Redis or in memory.

Per (channel, resource) the store keeps, for every record key, the sequence of its last
published change and its canonical content (from which `before` and the fingerprint come),
and for rejected records the digest of the raw content last reported. Reads and writes go
one page at a time: one pipeline of HMGETs in, one pipeline of HSETs out, never a round trip
per record. Writes happen only after the broker confirmed the page's events.

Value layout in a bucket hash: ``b"<sequence>|" + canonical content``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol

import redis
from redis.typing import EncodableT, FieldT

from publisher import keys
from publisher.diff import Change, Rejection, Stored
from publisher.errors import StateStoreError
from publisher.records import Resource


class StateStore(Protocol):
    """Read and commit the stored state of one (channel, resource) at a time."""

    def load(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int]
    ) -> dict[int, Stored]:
        """Return the stored state of those keys that have one."""
        ...

    def load_rejected(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int]
    ) -> dict[int, str]:
        """Return key -> digest of the raw content last reported as rejected."""
        ...

    def commit(
        self,
        channel_id: int,
        resource: Resource,
        changes: Sequence[Change],
        rejections: Sequence[Rejection],
    ) -> None:
        """Record published changes and reported rejections, all or nothing per call."""
        ...

    def tracked(self, channel_id: int, resource: Resource) -> int:
        """Return how many records have a stored state."""
        ...

    def write_meta(self, channel_id: int, resource: Resource, fields: Mapping[str, str]) -> None:
        """Merge step bookkeeping (last step, last error) into the meta hash."""
        ...

    def read_meta(self, channel_id: int, resource: Resource) -> dict[str, str]:
        """Return the step bookkeeping of one (channel, resource)."""
        ...


def encode_stored(stored: Stored) -> bytes:
    """Encode a stored state as a bucket value."""
    return b"%d|" % stored.sequence + stored.content


def decode_stored(value: bytes) -> Stored:
    """Decode a bucket value into a stored state."""
    sequence, _, content = value.partition(b"|")
    return Stored(int(sequence), content)


def _by_bucket(record_keys: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
    grouped: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for key in record_keys:
        bucket, field = keys.bucket_of(key)
        grouped[bucket].append((key, field))
    return grouped


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise StateStoreError(f"redis {action} failed: {type(exc).__name__}: {exc}") from exc


class RedisStateStore:
    """Keep state in Redis, in per-bucket hashes, batched per page."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> RedisStateStore:
        """Connect lazily to the Redis at `url` with timeouts set."""
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        return cls(client)

    @property
    def client(self) -> redis.Redis:
        """Return the Redis client (the step locks share it)."""
        return self._redis

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    def load(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int]
    ) -> dict[int, Stored]:
        """Return the stored state of those keys that have one (one pipeline)."""
        grouped = _by_bucket(record_keys)
        pipe = self._redis.pipeline(transaction=False)
        for bucket, members in grouped.items():
            name = keys.state_bucket(channel_id, resource, bucket)
            pipe.hmget(name, [field for _, field in members])
        with _translated("read"):
            replies = pipe.execute()
        found: dict[int, Stored] = {}
        for members, values in zip(grouped.values(), replies, strict=True):
            for (key, _), value in zip(members, values, strict=True):
                if value is not None:
                    found[key] = decode_stored(value)
        return found

    def load_rejected(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int]
    ) -> dict[int, str]:
        """Return key -> last reported digest for those keys that have one."""
        if not record_keys:
            return {}
        with _translated("read"):
            values = self._redis.hmget(
                keys.rejected(channel_id, resource), [str(k) for k in record_keys]
            )
        found = zip(record_keys, values, strict=True)
        return {k: _text(v) for k, v in found if v is not None}

    def commit(
        self,
        channel_id: int,
        resource: Resource,
        changes: Sequence[Change],
        rejections: Sequence[Rejection],
    ) -> None:
        """Write a page's state in one MULTI/EXEC (all keys share one cluster slot)."""
        if not changes and not rejections:
            return
        pipe = self._redis.pipeline(transaction=True)
        buckets: dict[int, dict[FieldT, EncodableT]] = defaultdict(dict)
        for change in changes:
            bucket, field = keys.bucket_of(change.key)
            buckets[bucket][field] = encode_stored(Stored(change.sequence, change.after))
        for bucket, mapping in buckets.items():
            pipe.hset(keys.state_bucket(channel_id, resource, bucket), mapping=mapping)
        rejected_key = keys.rejected(channel_id, resource)
        reported: dict[FieldT, EncodableT] = {
            str(r.key): r.digest for r in rejections if r.key is not None
        }
        if reported:
            pipe.hset(rejected_key, mapping=reported)
        if changes:
            # A key that is valid again is no longer a reported rejection.
            pipe.hdel(rejected_key, *(str(c.key) for c in changes))
        created = sum(1 for c in changes if c.operation == "created")
        if created:
            pipe.hincrby(keys.meta(channel_id, resource), "tracked", created)
        with _translated("write"):
            pipe.execute()

    def tracked(self, channel_id: int, resource: Resource) -> int:
        """Return how many records have a stored state."""
        with _translated("read"):
            value = self._redis.hget(keys.meta(channel_id, resource), "tracked")
        return int(value) if value is not None else 0

    def write_meta(self, channel_id: int, resource: Resource, fields: Mapping[str, str]) -> None:
        """Merge step bookkeeping into the meta hash."""
        if fields:
            with _translated("write"):
                mapping: dict[FieldT, EncodableT] = {k: v for k, v in fields.items()}
                self._redis.hset(keys.meta(channel_id, resource), mapping=mapping)

    def read_meta(self, channel_id: int, resource: Resource) -> dict[str, str]:
        """Return the meta hash as text."""
        with _translated("read"):
            raw = self._redis.hgetall(keys.meta(channel_id, resource))
        return {_text(k): _text(v) for k, v in raw.items()}


class MemoryStateStore:
    """Keep state in a dict: the embedded demo's store and the tests' twin of Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[tuple[int, Resource], dict[int, Stored]] = defaultdict(dict)
        self._rejected: dict[tuple[int, Resource], dict[int, str]] = defaultdict(dict)
        self._meta: dict[tuple[int, Resource], dict[str, str]] = defaultdict(dict)

    def load(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int]
    ) -> dict[int, Stored]:
        """Return the stored state of those keys that have one."""
        with self._lock:
            table = self._state[(channel_id, resource)]
            return {k: table[k] for k in record_keys if k in table}

    def load_rejected(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int]
    ) -> dict[int, str]:
        """Return key -> last reported digest for those keys that have one."""
        with self._lock:
            table = self._rejected[(channel_id, resource)]
            return {k: table[k] for k in record_keys if k in table}

    def commit(
        self,
        channel_id: int,
        resource: Resource,
        changes: Sequence[Change],
        rejections: Sequence[Rejection],
    ) -> None:
        """Record published changes and reported rejections."""
        where = (channel_id, resource)
        with self._lock:
            for change in changes:
                self._state[where][change.key] = Stored(change.sequence, change.after)
                self._rejected[where].pop(change.key, None)
            for rejection in rejections:
                if rejection.key is not None:
                    self._rejected[where][rejection.key] = rejection.digest

    def tracked(self, channel_id: int, resource: Resource) -> int:
        """Return how many records have a stored state."""
        with self._lock:
            return len(self._state[(channel_id, resource)])

    def write_meta(self, channel_id: int, resource: Resource, fields: Mapping[str, str]) -> None:
        """Merge step bookkeeping into the meta mapping."""
        with self._lock:
            self._meta[(channel_id, resource)].update(fields)

    def read_meta(self, channel_id: int, resource: Resource) -> dict[str, str]:
        """Return the step bookkeeping of one (channel, resource)."""
        with self._lock:
            return dict(self._meta[(channel_id, resource)])
