"""COMMIT edge: keep each record's last published version, in Redis or in memory.

Per (channel, resource) the store keeps, for every record key, the sequence of its last
published change and its stored values (from which `before` and the fingerprint come),
and for rejected records the digest of the raw content last reported. Reads and writes go
one page at a time, never a round trip per record, and writes happen only after the broker
confirmed the page's events.

Redis layout: records are grouped in buckets of `keys.BUCKET_SIZE` consecutive keys; each
bucket is one string: zlib-compressed lines ``<key % size> <sequence> <canonical>``
(canonical JSON holds no newline). A page of 1,000 records is one MGET of about ten
strings, split in C; a hundred similar records compress to a few dozen bytes each. A
commit merges its changes into the buckets it touches under WATCH/MULTI, so it never
overwrites what it did not read.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, Protocol

import redis
from redis.typing import EncodableT, FieldT

from publisher import keys
from publisher.diff import Change, Rejection, Stored
from publisher.errors import StateStoreError
from publisher.records import Resource

_COMPRESSION: Final = 1  # zlib's fastest level already shrinks a bucket several times over

Bucket = dict[bytes, Stored]
_LINE: Final = re.compile(rb"^(\d+) (\d+) (.*)$", re.MULTILINE)


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


def encode_bucket(bucket: Bucket) -> bytes:
    """Encode one bucket's entries as the string Redis keeps."""
    lines = [b"%s %d %s" % (field, s.sequence, s.canonical) for field, s in bucket.items()]
    return zlib.compress(b"\n".join(lines), _COMPRESSION)


def decode_bucket(blob: bytes | str | None) -> Bucket:
    """Decode a bucket string (None: an empty bucket)."""
    if not blob:
        return {}
    data = blob if isinstance(blob, bytes) else blob.encode()
    entries = _LINE.findall(zlib.decompress(data))
    return {field: Stored(int(sequence), canonical) for field, sequence, canonical in entries}


def _by_bucket(record_keys: Sequence[int]) -> dict[int, list[tuple[int, bytes]]]:
    grouped: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    size = keys.BUCKET_SIZE
    for key in record_keys:
        bucket, field = divmod(key, size)
        grouped[bucket].append((key, b"%d" % field))
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
    """Keep state in Redis: compressed bucket strings, read and written per page."""

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
        """Return the stored state of those keys that have one (one MGET)."""
        grouped = _by_bucket(record_keys)
        if not grouped:
            return {}
        names = [keys.state_bucket(channel_id, resource, bucket) for bucket in grouped]
        with _translated("read"):
            blobs = self._redis.mget(names)
        found: dict[int, Stored] = {}
        for members, blob in zip(grouped.values(), blobs, strict=True):
            entries = decode_bucket(blob)
            for key, field in members:
                entry = entries.get(field)
                if entry is not None:
                    found[key] = entry
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
        """Merge a page's changes into their buckets and record its rejections, atomically."""
        if not changes and not rejections:
            return
        updates: dict[str, Bucket] = defaultdict(dict)
        for change in changes:
            bucket, field = keys.bucket_of(change.key)
            name = keys.state_bucket(channel_id, resource, bucket)
            updates[name][field.encode()] = Stored(change.sequence, change.after)

        def write(pipe: Any) -> None:
            current = pipe.mget(list(updates)) if updates else []
            pipe.multi()
            for (name, entries), blob in zip(updates.items(), current, strict=True):
                merged = decode_bucket(blob)
                merged.update(entries)
                pipe.set(name, encode_bucket(merged))
            _bookkeeping(pipe, channel_id, resource, changes, rejections)

        with _translated("write"):
            self._redis.transaction(write, *updates)

    def tracked(self, channel_id: int, resource: Resource) -> int:
        """Return how many records have a stored state."""
        with _translated("read"):
            value = self._redis.hget(keys.meta(channel_id, resource), "tracked")
        return int(value) if value is not None else 0

    def write_meta(self, channel_id: int, resource: Resource, fields: Mapping[str, str]) -> None:
        """Merge step bookkeeping into the meta hash."""
        if fields:
            mapping: dict[FieldT, EncodableT] = dict(fields.items())
            with _translated("write"):
                self._redis.hset(keys.meta(channel_id, resource), mapping=mapping)

    def read_meta(self, channel_id: int, resource: Resource) -> dict[str, str]:
        """Return the meta hash as text."""
        with _translated("read"):
            raw = self._redis.hgetall(keys.meta(channel_id, resource))
        return {_text(k): _text(v) for k, v in raw.items()}


def _bookkeeping(
    pipe: Any,
    channel_id: int,
    resource: Resource,
    changes: Sequence[Change],
    rejections: Sequence[Rejection],
) -> None:
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
