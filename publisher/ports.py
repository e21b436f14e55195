"""Name what a sync step talks to: the ports the pipeline is written against (pure: no I/O).

    ChangeSource    where records come from: the Akinon client (`publisher.akinon`)
    StateStore      what was last published per record: Redis, or memory (`publisher.state`)
    EventPublisher  where events go, confirmed: RabbitMQ through kombu (`publisher.publish`)

The pipeline imports these Protocols, never the edges, so importing it loads no httpx,
redis, kombu or lz4; the edges satisfy them structurally. The values that cross a port and
belong to no other module (`Ack`) are defined here too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from publisher.deletes import Pending
from publisher.diff import Change, Deletion, Rejection, StoredPage
from publisher.outgoing import OutgoingEvent
from publisher.pages import RecordPage
from publisher.records import Endpoint, Resource


@dataclass(frozen=True, slots=True)
class Ack:
    """One record version a batch acknowledges; a rejected record carries a reason."""

    key: int
    version_date: str
    failed_reason_type: str | None = None

    def to_json(self, resource: Resource) -> dict[str, Any]:
        """Return the object as a batch-request PATCH carries it."""
        body: dict[str, Any] = {
            "pk": self.key,
            "version_date": self.version_date,
            "content_type": resource.content_type,
        }
        if self.failed_reason_type is not None:
            body["failed_reason_type"] = self.failed_reason_type
        return body


class ChangeSource(Protocol):
    """Where records come from: the Akinon client, or anything shaped like it."""

    def iter_pages(
        self,
        channel_id: int,
        resource: Resource,
        endpoint: Endpoint,
        params: Mapping[str, str] | None = None,
        *,
        prefetch: bool = True,
    ) -> Iterator[RecordPage]:
        """Yield the records of each page."""
        ...

    def open_batch(self, channel_id: int) -> str:
        """Open a batch request on a channel; return its pk."""
        ...

    def move_batch(
        self, channel_id: int, resource: Resource, pk: str, status: str, acks: Sequence[Ack]
    ) -> None:
        """Move a batch to `status` with these objects (a retry reads the batch first)."""
        ...

    def batch_status(self, channel_id: int, pk: str) -> str | None:
        """Return a batch's status, or None if Akinon does not know it."""
        ...


class StateStore(Protocol):
    """Read and commit the stored state of one (channel, resource) at a time."""

    def load(self, channel_id: int, resource: Resource, record_keys: Collection[int]) -> StoredPage:
        """Return the stored state of those keys that have one."""
        ...

    def load_rejected(
        self, channel_id: int, resource: Resource, record_keys: Sequence[int | str]
    ) -> dict[int | str, str]:
        """Return key -> digest of the raw content last reported as rejected.

        A key is a record key, or what a record without one is reported under (a text:
        `publisher.diff.report_key`).
        """
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

    def forget(self, channel_id: int, resource: Resource, deletions: Sequence[Deletion]) -> None:
        """Remove records whose deletion was published, all or nothing per call."""
        ...

    def write_pending(
        self, channel_id: int, resource: Resource, entries: Mapping[int, bytes]
    ) -> None:
        """Write down versions before they are sent (key -> `Pending`, encoded by
        `publisher.deletes.journal_entries`); a commit (or forget) of a key removes its
        entry, so what remains was sent by a step that failed before committing it."""
        ...

    def read_pending(self, channel_id: int, resource: Resource) -> dict[int, Pending]:
        """Return key -> version sent but never committed (`write_pending`)."""
        ...

    def keys(self, channel_id: int, resource: Resource) -> list[int]:
        """Return every key with a stored state, ascending (a slow, whole-state read)."""
        ...

    def tracked(self, channel_id: int, resource: Resource) -> int:
        """Return how many records have a stored state (a count kept as records come and go)."""
        ...

    def write_meta(self, channel_id: int, resource: Resource, fields: Mapping[str, str]) -> None:
        """Merge step bookkeeping (last step, last error) into the meta hash."""
        ...

    def read_meta(self, channel_id: int, resource: Resource) -> dict[str, str]:
        """Return the step bookkeeping of one (channel, resource)."""
        ...

    def save_batch(self, channel_id: int, resource: Resource, pk: str, journal: bytes) -> None:
        """Write down a batch request of ours before it is committed (`publisher.acks`)."""
        ...

    def open_batches(self, channel_id: int, resource: Resource) -> dict[str, bytes | None]:
        """Return pk -> journal entry of every batch of ours not yet ended."""
        ...

    def drop_batch(self, channel_id: int, resource: Resource, pk: str) -> None:
        """Forget a batch of ours once it ended."""
        ...


class EventPublisher(Protocol):
    """Publish batches of events; a batch is safe on the broker once `confirm` returns."""

    def send(self, events: Sequence[OutgoingEvent]) -> int:
        """Write a batch to the broker without waiting; return its ticket."""
        ...

    def confirm(self, ticket: int) -> None:
        """Wait until every event sent up to `ticket` is confirmed, or raise `BrokerError`."""
        ...

    def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Send a batch and wait for its confirms."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
