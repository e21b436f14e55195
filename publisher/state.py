"""COMMIT edge: keep each record's last published version, in Redis or in memory.

Per (channel, resource) the store keeps, for every record key, the sequence of its last
published change and its stored values (from which `before` and the fingerprint come),
and for rejected records the digest of the raw content last reported. Reads and writes go
one page at a time, never a round trip per record, and writes happen only after the broker
confirmed the page's events.

Redis layout: records are grouped in buckets of `topology.BUCKET_SIZE` consecutive keys,
each kept as one compressed string (its format: `publisher.buckets`). A page of 1,000
records is one MGET of about ten strings. A commit merges its changes into the buckets as
last read or written (split as its page loaded them, if no commit changed them since;
else decoded again, which is cheap with LZ4) and sends them, with the page's bookkeeping,
to a script (`state_commit.lua`) that writes them only if every bucket still holds what
the merge started from: one round trip, and it never overwrites what it did not read.

Beside the state, a journal (`topology.pending`, a hash of key -> `deletes.Pending`) holds
the versions a step sent but has not committed yet: a read-only step writes a page's down
before sending it, and the commit script removes them as it stores them (a deletion's
forget too). Whatever remains was sent by a step that failed between its send and its
commit, so consumers may hold records the state does not know; a complete scan that no
longer sees one publishes its deletion (`publisher.deletes`). It holds at most the pages
of such failed steps, and is empty in the steady state (a page without changes writes
nothing).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict, deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.resources import files
from typing import Final

from redis.typing import EncodableT, FieldT

from publisher import topology
from publisher.buckets import Bucket
from publisher.deletes import Pending
from publisher.diff import Change, Deletion, Rejection, Stored, StoredPage, report_key
from publisher.errors import StateStoreError
from publisher.records import Resource
from publisher.redis_client import REDIS_ERRORS, RedisClient, connect, translate


class _BucketVersions(Mapping[int, Stored]):
    """The versions of some keys, found in their buckets on demand."""

    def __init__(self, buckets: Mapping[int, Bucket], wanted: Collection[int]) -> None:
        self._buckets = buckets
        self._wanted = wanted if isinstance(wanted, set | frozenset) else set(wanted)

    def __getitem__(self, key: int) -> Stored:
        bucket = self._buckets.get(key // topology.BUCKET_SIZE)
        found = bucket.find(key) if bucket is not None and key in self._wanted else None
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[int]:
        for bucket in self._buckets.values():
            yield from (key for key in bucket.versions() if key in self._wanted)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except REDIS_ERRORS as exc:
        raise translate(exc, f"redis {action}") from exc


# One commit, atomically and in one round trip (the script's KEYS and ARGV are described in
# it). Read once, at import: the script ships as package data.
_COMMIT_SCRIPT: Final = (
    files(__package__ or "publisher").joinpath("state_commit.lua").read_text(encoding="utf-8")
)
# A commit whose buckets changed under it reads them again and retries; only a second writer
# of the same (channel, resource), which the step lock rules out, can make that happen.
_COMMIT_ATTEMPTS: Final = 5
# Buckets read per MGET when every tracked key is listed.
_KEYS_CHUNK: Final = 500
# Bucket strings this store read or wrote last, so a commit need not read them again.
_RECENT_BUCKETS: Final = 512
# The buckets of the last loads, split into lines: a page is committed after the next page
# is loaded, so its commit merges into them without decoding them again. Only two pages'
# worth: a 64-bucket cache added 16 MiB to a worker's peak RSS (long-lived small objects,
# most likely keeping the allocator's arenas from being freed).
_SPLIT_LOADS: Final = 2


class RedisStateStore:
    """Keep state in Redis: compressed bucket strings, read and written per page.

    The store remembers the bucket strings it read or wrote last, so that committing a page
    is one round trip: a script checks that every bucket still holds the string the merge
    started from and writes the merged ones (or, if one changed, nothing: read and retry).
    Remembering costs a bounded amount of memory (`_RECENT_BUCKETS` strings, and the
    buckets of the last `_SPLIT_LOADS` loads split).
    """

    def __init__(self, client: RedisClient) -> None:
        self._redis = client
        self._commit_script = client.register_script(_COMMIT_SCRIPT)
        self._recent: OrderedDict[str, bytes | None] = OrderedDict()
        self._split: deque[dict[str, tuple[bytes | None, Bucket]]] = deque(maxlen=_SPLIT_LOADS)
        self._recent_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> RedisStateStore:
        """Connect to the Redis at `url` (any REDIS_URL form) with timeouts set."""
        return cls(connect(url))

    @property
    def client(self) -> RedisClient:
        """Return the Redis client (the step locks share it)."""
        return self._redis

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    def load(self, channel_id: int, resource: Resource, record_keys: Collection[int]) -> StoredPage:
        """Return the stored state of those keys that have one (one MGET)."""
        # key // BUCKET_SIZE for every key, mapped in C: this runs for every record scanned.
        numbers = sorted(set(map(topology.BUCKET_SIZE.__rfloordiv__, record_keys)))
        if not numbers:
            return StoredPage({})
        names = [topology.state_bucket(channel_id, resource, number) for number in numbers]
        blobs = self._read(names)
        split = [Bucket.decode(blob, number) for blob, number in zip(blobs, numbers, strict=True)]
        with self._recent_lock:
            self._split.append(dict(zip(names, zip(blobs, split, strict=True), strict=True)))
        buckets = dict(zip(numbers, split, strict=True))
        forms: set[bytes] = set()
        for bucket in buckets.values():
            forms.update(bucket.forms)
        return StoredPage(_BucketVersions(buckets, record_keys), forms)

    def load_rejected(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int | str]
    ) -> dict[int | str, str]:
        """Return key -> last reported digest for those keys that have one."""
        if not record_keys:
            return {}
        with _translated("read"):
            values = self._redis.hmget(
                topology.rejected(channel_id, resource), [str(k) for k in record_keys]
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
        versions = {change.key: Stored(change.sequence, change.after) for change in changes}
        created = sum(1 for c in changes if c.operation != "updated")
        reported = {report_key(r): r.digest for r in rejections}
        self._write(channel_id, resource, versions, created, reported)

    def forget(self, channel_id: int, resource: Resource, deletions: Sequence[Deletion]) -> None:
        """Remove deleted records from their buckets (and from the rejected), atomically."""
        if deletions:
            gone: dict[int, Stored | None] = {d.key: None for d in deletions}
            self._write(channel_id, resource, gone, -len(gone), {})

    def _write(
        self,
        channel_id: int,
        resource: Resource,
        versions: Mapping[int, Stored | None],
        tracked: int,
        reported: Mapping[int | str, str],
    ) -> None:
        """Merge versions (None: forget) into their buckets with compare-and-set, one script.

        `tracked` changes the tracked count; `reported` are rejections (key -> digest); every
        key in `versions` is no longer rejected.
        """
        updates: dict[int, dict[int, Stored | None]] = defaultdict(dict)
        for key, version in versions.items():
            updates[key // topology.BUCKET_SIZE][key] = version
        names = [topology.state_bucket(channel_id, resource, number) for number in updates]
        script_keys = [
            *names,
            topology.rejected(channel_id, resource),
            topology.meta(channel_id, resource),
            topology.pending(channel_id, resource),
        ]
        pairs = [item for key, digest in reported.items() for item in (key, digest)]
        bookkeeping = [tracked, len(reported), *pairs, *versions]
        for _ in range(_COMMIT_ATTEMPTS):
            bases = self._recall(names)
            blobs = [
                self._bucket(name, base, number).merged(entries).encoded()
                for name, base, (number, entries) in zip(names, bases, updates.items(), strict=True)
            ]
            expected = [b"" if base is None else base for base in bases]
            with _translated("write"):
                conflict = self._commit_script(
                    keys=script_keys, args=[len(names), *expected, *blobs, *bookkeeping]
                )
            if not conflict:
                self._remember(names, [blob or None for blob in blobs])
                return
            self._forget(names)  # read them afresh and merge again
        raise StateStoreError(
            f"state buckets of channel {channel_id} {resource.value} kept changing during a "
            f"commit ({_COMMIT_ATTEMPTS} attempts): is another process writing them?"
        )

    def write_pending(
        self, channel_id: int, resource: Resource, entries: Mapping[int, bytes]
    ) -> None:
        """Write down versions about to be sent (one HSET); the commit removes them.

        `entries` are key -> `deletes.Pending` as `deletes.journal_entries` encodes them.
        """
        if entries:
            mapping: dict[FieldT, EncodableT] = dict(entries.items())
            with _translated("write"):
                self._redis.hset(topology.pending(channel_id, resource), mapping=mapping)

    def read_pending(self, channel_id: int, resource: Resource) -> dict[int, Pending]:
        """Return key -> version sent but never committed (empty in the steady state)."""
        with _translated("read"):
            raw = self._redis.hgetall(topology.pending(channel_id, resource))
        return {int(_text(key)): Pending.decode(_blob(entry)) for key, entry in raw.items()}

    def keys(self, channel_id: int, resource: Resource) -> list[int]:
        """Return every tracked key, ascending: a scan of the keyspace (for reconciliation)."""
        pattern = topology.state_bucket(channel_id, resource, 0)[:-1] + "*"
        with _translated("read"):
            names = sorted(set(self._redis.scan_iter(match=pattern, count=1000)))
            found: list[int] = []
            for start in range(0, len(names), _KEYS_CHUNK):
                chunk = names[start : start + _KEYS_CHUNK]
                for name, blob in zip(chunk, self._redis.mget(chunk), strict=True):
                    number = int(_text(name).rsplit(":", 1)[1])
                    found.extend(Bucket.decode(blob, number).versions())
        return sorted(found)

    def _read(self, names: list[str]) -> list[bytes | None]:
        """Read bucket strings (one MGET) and remember them."""
        with _translated("read"):
            found = self._redis.mget(names)
        blobs = [v.encode() if isinstance(v, str) else v for v in found]
        self._remember(names, blobs)
        return blobs

    def _recall(self, names: list[str]) -> list[bytes | None]:
        """Return the bucket strings as last read or written, reading any not remembered."""
        with self._recent_lock:
            recalled = [self._recent.get(name, b"") for name in names]
        if b"" in recalled:  # not remembered (a string read or written is never empty)
            return self._read(names)
        return recalled

    def _remember(self, names: Sequence[str], blobs: Sequence[bytes | None]) -> None:
        with self._recent_lock:
            for name, blob in zip(names, blobs, strict=True):
                self._recent[name] = blob
                self._recent.move_to_end(name)
            while len(self._recent) > _RECENT_BUCKETS:
                self._recent.popitem(last=False)

    def _forget(self, names: Sequence[str]) -> None:
        with self._recent_lock:
            for name in names:
                self._recent.pop(name, None)

    def _bucket(self, name: str, blob: bytes | None, number: int) -> Bucket:
        """Return a bucket string split: as a recent load split it, if it is that string."""
        with self._recent_lock:
            kept = [load[name] for load in self._split if name in load]
        for loaded, bucket in kept:
            if loaded == blob:
                return bucket
        return Bucket.decode(blob, number)

    def tracked(self, channel_id: int, resource: Resource) -> int:
        """Return how many records have a stored state."""
        with _translated("read"):
            value = self._redis.hget(topology.meta(channel_id, resource), "tracked")
        return int(value) if value is not None else 0

    def write_meta(self, channel_id: int, resource: Resource, fields: Mapping[str, str]) -> None:
        """Merge step bookkeeping into the meta hash."""
        if fields:
            mapping: dict[FieldT, EncodableT] = dict(fields.items())
            with _translated("write"):
                self._redis.hset(topology.meta(channel_id, resource), mapping=mapping)

    def read_meta(self, channel_id: int, resource: Resource) -> dict[str, str]:
        """Return the meta hash as text."""
        with _translated("read"):
            raw = self._redis.hgetall(topology.meta(channel_id, resource))
        return {_text(k): _text(v) for k, v in raw.items()}

    def save_batch(self, channel_id: int, resource: Resource, pk: str, journal: bytes) -> None:
        """Write down a batch request of ours before it is committed."""
        with _translated("write"):
            self._redis.hset(topology.batches(channel_id, resource), pk, journal)

    def open_batches(self, channel_id: int, resource: Resource) -> dict[str, bytes | None]:
        """Return pk -> journal entry of every batch of ours not yet ended."""
        with _translated("read"):
            raw = self._redis.hgetall(topology.batches(channel_id, resource))
        return {_text(pk): _blob(entry) for pk, entry in raw.items()}

    def drop_batch(self, channel_id: int, resource: Resource, pk: str) -> None:
        """Forget a batch of ours once it ended."""
        with _translated("write"):
            self._redis.hdel(topology.batches(channel_id, resource), pk)


def _blob(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


class MemoryStateStore:
    """Keep state in a dict: the embedded demo's store and the tests' twin of Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[tuple[int, Resource], dict[int, Stored]] = defaultdict(dict)
        self._rejected: dict[tuple[int, Resource], dict[int | str, str]] = defaultdict(dict)
        self._meta: dict[tuple[int, Resource], dict[str, str]] = defaultdict(dict)
        self._batches: dict[tuple[int, Resource], dict[str, bytes]] = defaultdict(dict)
        self._pending: dict[tuple[int, Resource], dict[int, bytes]] = defaultdict(dict)

    def load(self, channel_id: int, resource: Resource, record_keys: Collection[int]) -> StoredPage:
        """Return the stored state of those keys that have one."""
        with self._lock:
            table = self._state[(channel_id, resource)]
            return StoredPage({k: table[k] for k in record_keys if k in table})

    def load_rejected(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int | str]
    ) -> dict[int | str, str]:
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
                self._pending[where].pop(change.key, None)
            for rejection in rejections:
                self._rejected[where][report_key(rejection)] = rejection.digest

    def forget(self, channel_id: int, resource: Resource, deletions: Sequence[Deletion]) -> None:
        """Remove deleted records."""
        where = (channel_id, resource)
        with self._lock:
            for deletion in deletions:
                self._state[where].pop(deletion.key, None)
                self._rejected[where].pop(deletion.key, None)
                self._pending[where].pop(deletion.key, None)

    def write_pending(
        self, channel_id: int, resource: Resource, entries: Mapping[int, bytes]
    ) -> None:
        """Write down versions about to be sent (`deletes.journal_entries`); commits remove them."""
        with self._lock:
            self._pending[(channel_id, resource)].update(entries)

    def read_pending(self, channel_id: int, resource: Resource) -> dict[int, Pending]:
        """Return key -> version sent but never committed."""
        with self._lock:
            entries = self._pending[(channel_id, resource)]
            return {key: Pending.decode(entry) for key, entry in entries.items()}

    def keys(self, channel_id: int, resource: Resource) -> list[int]:
        """Return every tracked key, ascending."""
        with self._lock:
            return sorted(self._state[(channel_id, resource)])

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

    def save_batch(self, channel_id: int, resource: Resource, pk: str, journal: bytes) -> None:
        """Write down a batch request of ours before it is committed."""
        with self._lock:
            self._batches[(channel_id, resource)][pk] = journal

    def open_batches(self, channel_id: int, resource: Resource) -> dict[str, bytes | None]:
        """Return pk -> journal entry of every batch of ours not yet ended."""
        with self._lock:
            return dict(self._batches[(channel_id, resource)])

    def drop_batch(self, channel_id: int, resource: Resource, pk: str) -> None:
        """Forget a batch of ours once it ended."""
        with self._lock:
            self._batches[(channel_id, resource)].pop(pk, None)
