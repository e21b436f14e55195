"""Stop a step that lost its lock before it publishes or commits anything more.

A worker paused past its lock's TTL (SIGSTOP, a VM pause, a Redis outage its renewer could
not get through) may find that another step took the lock and moved records on. Whatever
it publishes or commits from then on is stale: its events would supersede newer ones
downstream. So every write of a step goes through these wrappers, which make sure first
that the step still holds its lock (`StepLock.ensure`: a round trip only when the last
renewal is more than half a TTL old, as after a pause) and raise `LockLost` otherwise.
Stored versions never move backwards anyway (`publisher.buckets.Bucket.merged`): this
keeps the stale events from being published at all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from publisher.deletes import Pending
from publisher.diff import Change, Deletion, Rejection, StoredPage
from publisher.lock import StepLock
from publisher.outgoing import OutgoingEvent
from publisher.ports import EventPublisher, StateStore
from publisher.records import Resource


class FencedPublisher:
    """An event publisher that sends only while its step holds the lock."""

    def __init__(self, publisher: EventPublisher, lock: StepLock) -> None:
        self._publisher = publisher
        self._lock = lock

    def send(self, events: Sequence[OutgoingEvent]) -> int:
        """Send a batch, if the step still holds its lock."""
        if events:
            self._lock.ensure()
        return self._publisher.send(events)

    def confirm(self, ticket: int) -> None:
        """Wait for the confirms of what was sent."""
        self._publisher.confirm(ticket)

    def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Send a batch and wait for its confirms, if the step still holds its lock."""
        if events:
            self._lock.ensure()
        self._publisher.publish(events)

    def close(self) -> None:
        """Leave the connection to its owner (the edges close it)."""


class FencedState:
    """A state store that writes only while its step holds the lock; reads pass through."""

    def __init__(self, state: StateStore, lock: StepLock) -> None:
        self._state = state
        self._lock = lock

    def load(self, channel_id: int, resource: Resource, record_keys: Collection[int]) -> StoredPage:
        """Return the stored state of those keys that have one."""
        return self._state.load(channel_id, resource, record_keys)

    def load_rejected(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int | str]
    ) -> dict[int | str, str]:
        """Return key -> digest of the raw content last reported as rejected."""
        return self._state.load_rejected(channel_id, resource, record_keys)

    def commit(
        self,
        channel_id: int,
        resource: Resource,
        changes: Sequence[Change],
        rejections: Sequence[Rejection],
    ) -> None:
        """Commit a page, if the step still holds its lock."""
        if changes or rejections:
            self._lock.ensure()
        self._state.commit(channel_id, resource, changes, rejections)

    def forget(self, channel_id: int, resource: Resource, deletions: Sequence[Deletion]) -> None:
        """Forget deleted records, if the step still holds its lock."""
        if deletions:
            self._lock.ensure()
        self._state.forget(channel_id, resource, deletions)

    def write_pending(
        self, channel_id: int, resource: Resource, entries: Mapping[int, bytes]
    ) -> None:
        """Write down versions about to be sent, if the step still holds its lock."""
        if entries:
            self._lock.ensure()
        self._state.write_pending(channel_id, resource, entries)

    def read_pending(self, channel_id: int, resource: Resource) -> dict[int, Pending]:
        """Return key -> version sent but never committed."""
        return self._state.read_pending(channel_id, resource)

    def keys(self, channel_id: int, resource: Resource) -> list[int]:
        """Return every key with a stored state."""
        return self._state.keys(channel_id, resource)

    def tracked(self, channel_id: int, resource: Resource) -> int:
        """Return how many records have a stored state."""
        return self._state.tracked(channel_id, resource)

    def write_meta(self, channel_id: int, resource: Resource, fields: Mapping[str, str]) -> None:
        """Write bookkeeping, if the step still holds its lock."""
        self._lock.ensure()
        self._state.write_meta(channel_id, resource, fields)

    def read_meta(self, channel_id: int, resource: Resource) -> dict[str, str]:
        """Return the step bookkeeping."""
        return self._state.read_meta(channel_id, resource)

    def save_batch(self, channel_id: int, resource: Resource, pk: str, journal: bytes) -> None:
        """Write down a batch request of ours, if the step still holds its lock."""
        self._lock.ensure()
        self._state.save_batch(channel_id, resource, pk, journal)

    def open_batches(self, channel_id: int, resource: Resource) -> dict[str, bytes | None]:
        """Return pk -> journal entry of every batch of ours not yet ended."""
        return self._state.open_batches(channel_id, resource)

    def drop_batch(self, channel_id: int, resource: Resource, pk: str) -> None:
        """Forget a batch of ours once it ended, if the step still holds its lock."""
        self._lock.ensure()
        self._state.drop_batch(channel_id, resource, pk)
