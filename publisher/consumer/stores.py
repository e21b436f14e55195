"""Remember, per record, the last event applied: in this process or in Redis.

The Redis store's compare-and-set is the Lua script `remember.lua`, next to this module.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from importlib.resources import files
from typing import Final, Protocol

from publisher import topology
from publisher.consumer.rules import Applied, RecordRef
from publisher.redis_client import REDIS_ERRORS, RedisClient, connect, translate

# Read once, at import: the script ships as package data.
_REMEMBER: Final = (
    files(__package__ or "publisher.consumer").joinpath("remember.lua").read_text(encoding="utf-8")
)


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
        """Record an applied event, unless a later one is already remembered."""
        with self._lock:
            current = self._last.get(ref)
            if current is None or _not_before(applied, current):
                self._last[ref] = applied

    def close(self) -> None:
        """Nothing to release."""


class RedisStore:
    """Keep the last applied events in Redis, shared by every process of one consumer queue.

    Layout: hash ``akc:{<queue>}:<channel>:<stream>:<key // 100>``, field ``<key % 100>``,
    value ``<sequence> <event id> <modified, microseconds>`` (values written before 1.1 of
    the kit have no third part, and read as an unknown `modified`). The ``{<queue>}`` hash
    tag puts all of a queue's keys in one Redis Cluster slot; a Lua script makes `remember`
    a compare-and-set.
    """

    def __init__(
        self, client: RedisClient, queue: str, *, prefix: str = topology.CONSUMER_PREFIX
    ) -> None:
        self.client = client
        self.namespace = topology.consumer_namespace(queue, prefix)
        self._remember = client.register_script(_REMEMBER)

    @classmethod
    def from_url(
        cls, url: str, queue: str, *, prefix: str = topology.CONSUMER_PREFIX
    ) -> RedisStore:
        """Connect to the Redis at `url`."""
        return cls(connect(url), queue, prefix=prefix)

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
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        return _applied(text)

    def remember(self, ref: RecordRef, applied: Applied) -> None:
        """Record an applied event, unless a higher sequence is already remembered."""
        key, slot = self.where(ref)
        with _translated():
            modified = "" if applied.modified is None else applied.modified
            self._remember(keys=[key], args=[slot, applied.sequence, applied.event_id, modified])

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
    except REDIS_ERRORS as exc:
        raise translate(exc, "consumer store") from exc


def _applied(text: str) -> Applied | None:
    """Read a stored position; None (as if nothing was applied) for one that is unreadable."""
    sequence, _, rest = text.partition(" ")
    event_id, _, modified = rest.partition(" ")
    if not sequence.lstrip("-").isascii() or not sequence.lstrip("-").isdigit() or not event_id:
        return None
    return Applied(int(sequence), event_id, int(modified) if modified.isdigit() else None)


def _not_before(applied: Applied, current: Applied) -> bool:
    """Say whether `applied` is at least as late as `current` in a record's order."""
    new, old = applied.modified, current.modified
    if new is not None and old is not None and new != old:
        return new > old
    return applied.sequence >= current.sequence
