"""Publish the current content of every record of a list, on demand (no change state moves).

A consumer that joins late, or lost its data, asks for a snapshot (`akinon-publisher
snapshot`, or the Celery task `akinon.snapshot`): every valid record of the channel's list
is published as a change event with `operation` `snapshot` and the request's `snapshot_id`,
either on the usual routing keys (every bound queue gets it) or to one named queue only
(through the default exchange), so others are not disturbed.

Each record carries the place the change stream gives that version (its `modified_date`,
and the sequence of its stored version, or the sequence its next change event will carry
if the stored one is older), so a consumer's ordering rule treats a snapshot event like
any other. The publisher's state is read, never written: the next sync step publishes
what changed as usual. Records that fail validation are counted, not reported again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from publisher.diff import Change, diff_page
from publisher.outgoing import EventContext, OutgoingEvent, change_event, snapshot_event, source_uri
from publisher.pages import RecordPage
from publisher.ports import ChangeSource, EventPublisher, StateStore
from publisher.records import Endpoint, Resource


@dataclass(frozen=True, slots=True)
class SnapshotSpec:
    """What one snapshot reads and where its events go (`queue` None: the usual keys)."""

    channel_id: int
    resource: Resource
    base_url: str
    snapshot_id: str
    queue: str | None = None
    endpoint: Endpoint = Endpoint.LIST
    # The channel's queries (lists and filters, `publisher.channels`), read in turn.
    queries: tuple[tuple[tuple[str, str], ...], ...] = ((),)


@dataclass(frozen=True, slots=True)
class SnapshotSummary:
    """What a snapshot published."""

    channel_id: int
    resource: str
    snapshot_id: str
    queue: str | None
    pages: int = 0
    seen: int = 0
    published: int = 0
    rejected: int = 0
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready values."""
        return asdict(self)

    def line(self) -> str:
        """Return the one-line human summary."""
        where = f"queue={self.queue}" if self.queue else "routing=changed"
        return (
            f"snapshot={self.snapshot_id} channel={self.channel_id} resource={self.resource} "
            f"{where} pages={self.pages} seen={self.seen} published={self.published} "
            f"rejected={self.rejected} duration={self.duration_seconds:.3f}s"
        )


def snapshot_step(
    spec: SnapshotSpec,
    source: ChangeSource,
    state: StateStore,
    publisher: EventPublisher,
    on_page: Callable[[SnapshotSummary], None] | None = None,
) -> SnapshotSummary:
    """Publish every valid record of the list as a snapshot event, page by page, confirmed."""
    started = time.monotonic()
    ctx = EventContext(
        spec.channel_id,
        spec.resource,
        source_uri(spec.base_url, spec.channel_id),
        datetime.now(UTC),
        snapshot_id=spec.snapshot_id,
        queue=spec.queue,
    )
    summary = SnapshotSummary(spec.channel_id, spec.resource.value, spec.snapshot_id, spec.queue)
    pages = (
        page
        for query in spec.queries
        for page in source.iter_pages(
            spec.channel_id, spec.resource, spec.endpoint, dict(query) or None
        )
    )
    for page in pages:
        events, rejected = page_events(ctx, page, state)
        publisher.publish(events)
        summary = replace(
            summary,
            pages=summary.pages + 1,
            seen=summary.seen + len(page),
            published=summary.published + len(events),
            rejected=summary.rejected + rejected,
        )
        if on_page is not None:
            on_page(summary)
    return replace(summary, duration_seconds=time.monotonic() - started)


def page_events(
    ctx: EventContext, page: RecordPage, state: StateStore
) -> tuple[list[OutgoingEvent], int]:
    """Return the snapshot events of a page's valid records, and how many were rejected."""
    keys = {key for key in page.keys if key is not None}
    stored = state.load(ctx.channel_id, ctx.resource, keys)
    diff = diff_page(page, stored)
    changed: dict[int, Change] = {change.key: change for change in diff.changes}
    rejected = {r.key for r in diff.rejections}
    events: list[OutgoingEvent] = []
    done: set[int] = set()
    for index, key in enumerate(page.keys):
        if key is None or key in rejected or key in done:
            continue
        done.add(key)
        change = changed.get(key)
        if change is not None:  # new, or newer than its stored version
            events.append(change_event(ctx, change))
            continue
        version = stored.current(key)
        modified = page.modified(index)
        if version is not None and modified is not None:
            moment = datetime.fromisoformat(modified)
            events.append(snapshot_event(ctx, key, version.sequence, version.canonical, moment))
    return events, len(diff.rejections)
