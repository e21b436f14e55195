"""Keep the sandbox's batch requests: open, read and move them, recording acknowledgements.

A batch moves through the state machine in `batches`; its commit acknowledges records in
their channel's record set and a fail gives them back. Only one batch per (channel, content
type) may sit in `commit` at a time. No lock of its own: the catalog holds its one lock
around every call, so a batch and the records it acknowledges change together.
"""

from __future__ import annotations

import itertools
from typing import Any

from publisher.records import Resource
from publisher.sandbox.batches import (
    CONTENT_TYPES,
    Batch,
    Patch,
    check_transition,
    merge_objects,
    parse_patch,
)
from publisher.sandbox.channels import Channel
from publisher.sandbox.dates import MonotonicClock
from publisher.sandbox.errors import InvalidError, NotFoundError


class BatchRequests:
    """Hold every channel's batch requests and the batch in commit per content type."""

    def __init__(self, clock: MonotonicClock) -> None:
        self._clock = clock
        self._batches: dict[int, Batch] = {}
        self._committing: dict[tuple[int, str], int] = {}
        self._batch_ids = itertools.count(1)

    def __len__(self) -> int:
        """Return how many batches there are, open or not."""
        return len(self._batches)

    def clear(self) -> None:
        """Forget every batch (batch ids keep counting)."""
        self._batches.clear()
        self._committing.clear()

    def create(self, channel_id: int) -> dict[str, Any]:
        """Open a batch request on a channel and return it (status `initialized`)."""
        now = self._clock.tick()
        batch = Batch(pk=next(self._batch_ids), channel=channel_id, created_us=now, modified_us=now)
        self._batches[batch.pk] = batch
        return batch.to_json()

    def find(self, channel_id: int, pk: int) -> Batch:
        """Return one batch request of a channel; NotFoundError if unknown."""
        batch = self._batches.get(pk)
        if batch is None or batch.channel != channel_id:
            raise NotFoundError("Not found.")
        return batch

    def to_json(self, open_only: bool = False) -> list[dict[str, Any]]:
        """Return every batch (or only those not yet done or failed), oldest first."""
        chosen = [
            batch
            for batch in self._batches.values()
            if not open_only or batch.status not in ("done", "fail")
        ]
        return [batch.to_json() for batch in chosen]

    def errors(self, channel_id: int, resource: Resource) -> list[dict[str, Any]]:
        """Return the records acknowledged with a `failed_reason_type`, oldest batch first.

        Akinon keeps an error for each of them (an integration action in error); a batch
        that failed gave its records back, so its objects are not errors any more.
        """
        found = []
        for batch in self._batches.values():
            if batch.channel != channel_id or batch.resource is not resource:
                continue
            if batch.status == "fail":
                continue
            for obj in batch.objects:
                if obj.failed_reason_type is not None:
                    found.append({**obj.to_json(batch.content_type), "batch": batch.pk})
        return found

    def update(self, channel: Channel, pk: int, body: Any) -> dict[str, Any]:
        """Move a batch of `channel` to the status in `body`; see `Catalog.update_batch`."""
        batch = self.find(channel.pk, pk)
        patch = parse_patch(body, batch.content_type)
        check_transition(batch.status, patch.status)
        if patch.status == "commit":
            self._commit(channel, batch, patch)
        elif patch.status == "fail":
            self._give_back(channel, batch)
        elif patch.objects:
            batch.objects = merge_objects(batch.objects, patch.objects)
        if batch.status == "commit" and batch.content_type is not None:
            self._committing.pop((batch.channel, batch.content_type), None)
        batch.status = patch.status
        batch.modified_us = self._clock.tick()
        return batch.to_json(with_objects=True)

    def _commit(self, channel: Channel, batch: Batch, patch: Patch) -> None:
        content_type = patch.content_type
        if content_type is None:
            raise InvalidError({"content_type": ["This field is required."]})
        holder = self._committing.get((batch.channel, content_type))
        if holder is not None:
            raise InvalidError(
                {"status": [f"Batch {holder} of this channel is already in commit."]}
            )
        records = channel.sets[CONTENT_TYPES[content_type]]
        for obj in patch.objects:
            if obj.version_us is None or records.get(obj.pk) is None:
                continue
            previous = records.acknowledge(obj.pk, obj.version_us)
            earlier = batch.given.get(obj.pk)
            batch.given[obj.pk] = (obj.version_us, previous if earlier is None else earlier[1])
        batch.content_type = content_type
        batch.objects = patch.objects
        self._committing[(batch.channel, content_type)] = batch.pk

    def _give_back(self, channel: Channel, batch: Batch) -> None:
        resource = batch.resource
        if resource is None:
            return
        records = channel.sets[resource]
        for pk, (given, previous) in batch.given.items():
            records.give_back(pk, given, previous)
        batch.given.clear()
