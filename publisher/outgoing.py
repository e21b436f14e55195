"""Build outgoing events from changes and rejections, ready to publish (pure: no I/O).

The documents are the ones the models of `publisher.events` describe, written straight from
plain values with orjson: a model per event would cost more than the rest of the hot path.
A test holds the two to the same shape. Every event goes through one envelope (`_event`).

The `id` of a change event is derived from (channel, resource, record key, sequence,
content digest, `modified_date`): a re-publish after a crash carries the same id, and a
record that goes A -> B -> A still gets a new id for its second A (the sequence differs),
even after the publisher lost its state and counts from 1 again (the date differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from publisher import topology
from publisher.deletes import ReloadPart
from publisher.diff import Change, Deletion, Rejection
from publisher.events import (
    CHANGED_TYPE,
    DATA_CONTENT_TYPE,
    DELETED_TYPE,
    MESSAGE_CONTENT_TYPE,
    RELOADED_TYPE,
    SPEC_VERSION,
    EventType,
)
from publisher.fingerprint import content_of, digest
from publisher.records import CONTENT_FIELDS, Resource

_BODY_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
PERSISTENT: Final = 2
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One encoded event with where it goes: what the publisher needs, nothing more."""

    id: str
    type: EventType
    subject: str
    source: str
    time: datetime
    exchange: str
    routing_key: str
    body: bytes
    # A heartbeat nobody is bound for is dropped, not returned: it is not worth keeping.
    mandatory: bool = True


@dataclass(frozen=True, slots=True)
class EventContext:
    """What every event of one sync step shares, worked out once per step.

    `reload`: the step loads the whole list into an empty state (the first load, or after
    the state was lost): what it sees for the first time is a `snapshot`, not `created`.
    `snapshot_id` marks the events of an on-demand snapshot; `queue` sends them to that
    one queue instead of the routing keys every consumer binds.
    """

    channel_id: int
    resource: Resource
    source: str
    observed_at: datetime
    reload: bool = False
    snapshot_id: str | None = None
    queue: str | None = None
    kind: EventType = field(init=False)
    exchange: str = field(init=False)
    routing_key: str = field(init=False)
    id_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        # Frozen for the callers; these derived values are set once, here.
        exchange = topology.exchange_for(self.resource)
        routing_key = topology.changed_routing_key(self.resource, self.channel_id)
        if self.queue is not None:
            exchange, routing_key = topology.DEFAULT_EXCHANGE, self.queue
        prefix = f"{self.channel_id}|{self.resource.value}|"
        if self.snapshot_id is not None:
            prefix += f"snapshot|{self.snapshot_id}|"
        for name, value in (
            ("kind", CHANGED_TYPE[self.resource]),
            ("exchange", exchange),
            ("routing_key", routing_key),
            ("id_prefix", prefix),
        ):
            object.__setattr__(self, name, value)

    def operation(self, change: Change) -> str:
        """Return the operation an event of this change carries (see `EventContext`)."""
        if self.snapshot_id is not None or (self.reload and change.operation == "created"):
            return "snapshot"
        return change.operation


def source_uri(base_url: str, channel_id: int) -> str:
    """Return the CloudEvents `source` of a channel: its Akinon URL, without credentials."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}/api/v1/channel/{channel_id}"


def _uuid_text(name: str) -> str:
    # The text of uuid.UUID(bytes=digest), written directly: this runs once per event.
    h = digest(name.encode())
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _microseconds(moment: datetime) -> int:
    """Return a moment as whole microseconds since the epoch (a naive one is UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def changed_fields(
    resource: Resource, before: dict[str, Any] | None, after: dict[str, Any]
) -> list[str]:
    """List the content fields whose values differ (all of them on first sight)."""
    fields = CONTENT_FIELDS[resource]
    if before is None:
        return list(fields)
    return [name for name in fields if before.get(name) != after.get(name)]


def change_event(ctx: EventContext, change: Change) -> OutgoingEvent:
    """Build the `stock.changed` / `price.changed` event of one change."""
    operation = ctx.operation(change)
    before = None
    if change.before is not None and operation != "snapshot":
        before = content_of(ctx.resource, change.before)
    after = change.content or content_of(ctx.resource, change.after)
    time = change.record.modified_date
    return _changed(ctx, change.key, operation, change.sequence, before, after, change.after, time)


def snapshot_event(
    ctx: EventContext, key: int, sequence: int, form: bytes, modified: datetime
) -> OutgoingEvent:
    """Build the snapshot event of a record whose stored version is its current content."""
    after = content_of(ctx.resource, form)
    return _changed(ctx, key, "snapshot", sequence, None, after, form, modified)


def _changed(
    ctx: EventContext,
    key: int,
    operation: str,
    sequence: int,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    form: bytes,
    time: datetime,
) -> OutgoingEvent:
    """Write a change event: every `*.changed` document comes through here."""
    fp = digest(form)
    # (channel, resource, key, sequence, digest, date), the step's shared part formatted once.
    ident = _uuid_text(f"{ctx.id_prefix}{key}|{sequence}|{fp}|{_microseconds(time)}")
    data = {
        "channel_id": ctx.channel_id,
        "key": key,
        "operation": operation,
        "sequence": sequence,
        "modified_date": time,
        "fingerprint": fp,
        "before": before,
        "after": after,
        "changed_fields": changed_fields(ctx.resource, before, after),
    }
    if ctx.snapshot_id is not None:
        data["snapshot_id"] = ctx.snapshot_id
    return _event(ctx, ctx.kind, ident, str(key), time, data, ctx.exchange, ctx.routing_key)


def deletion_event(
    ctx: EventContext, deletion: Deletion, when: datetime, known_until: datetime | None = None
) -> OutgoingEvent:
    """Build the `stock.deleted` / `price.deleted` event of a record that left its list.

    `when` is the moment the deletion is dated: after every version published of the record.
    `known_until`, the newest `modified_date` committed for the list before this step, tells
    one life of a record from the next in the id: a record deleted, created again with the
    same content (its sequences start again at 1) and deleted again gets a new id, while the
    same deletion published again after a crash keeps its id.
    """
    resource = ctx.resource
    fp = digest(deletion.before)
    life = f"|{known_until.isoformat()}" if known_until is not None else ""
    ident = _uuid_text(f"{ctx.id_prefix}deleted|{deletion.key}|{deletion.sequence}|{fp}{life}")
    data = {
        "channel_id": ctx.channel_id,
        "key": deletion.key,
        "operation": "deleted",
        "sequence": deletion.sequence,
        "modified_date": when,
        "fingerprint": fp,
        "before": content_of(resource, deletion.before),
    }
    return _event(
        ctx,
        DELETED_TYPE[resource],
        ident,
        str(deletion.key),
        when,
        data,
        topology.exchange_for(resource),
        topology.deleted_routing_key(resource, ctx.channel_id),
    )


def heartbeat_event(
    ctx: EventContext, completed_at: datetime, data: dict[str, Any]
) -> OutgoingEvent:
    """Build the heartbeat of a step that succeeded; `data` holds its counts and marks."""
    document = {"channel_id": ctx.channel_id, "resource": ctx.resource.value, **data}
    document["completed_at"] = completed_at
    ident = _uuid_text(f"{ctx.id_prefix}heartbeat|{completed_at.isoformat()}")
    routing_key = topology.heartbeat_routing_key(ctx.resource, ctx.channel_id)
    event = _event(
        ctx,
        EventType.HEARTBEAT,
        ident,
        ctx.resource.value,
        completed_at,
        document,
        topology.HEARTBEAT_EXCHANGE,
        routing_key,
    )
    return replace(event, mandatory=False)


def reload_events(
    ctx: EventContext, started_at: datetime, parts: list[ReloadPart]
) -> list[OutgoingEvent]:
    """Build the reload events that end a load of the whole list: one per part of its keys.

    Published again (the step failed after them), they keep their ids: the load's start
    and the part number name them.
    """
    resource = ctx.resource
    events = []
    for number, part in enumerate(parts, start=1):
        ident = _uuid_text(f"{ctx.id_prefix}reloaded|{started_at.isoformat()}|{number}")
        data = {
            "channel_id": ctx.channel_id,
            "resource": resource.value,
            "started_at": started_at,
            "lowest_key": part.lowest,
            "highest_key": part.highest,
            "keys": part.keys,
            "part": number,
            "parts": len(parts),
        }
        events.append(
            _event(
                ctx,
                RELOADED_TYPE[resource],
                ident,
                resource.value,
                started_at,
                data,
                topology.exchange_for(resource),
                topology.reloaded_routing_key(resource, ctx.channel_id),
            )
        )
    return events


def rejection_event(ctx: EventContext, rejection: Rejection) -> OutgoingEvent:
    """Build the `record.rejected` event of one record that failed validation."""
    subject = str(rejection.key) if rejection.key is not None else "unknown"
    name = f"{ctx.id_prefix}rejected|{subject}|{rejection.digest}"
    data = {
        "channel_id": ctx.channel_id,
        "resource": ctx.resource.value,
        "key": rejection.key,
        "reason": rejection.reason,
        "digest": rejection.digest,
        "raw": rejection.raw,
    }
    routing_key = topology.rejected_routing_key(ctx.resource, ctx.channel_id)
    return _event(
        ctx,
        EventType.RECORD_REJECTED,
        _uuid_text(name),
        subject,
        ctx.observed_at,
        data,
        topology.REJECTED_EXCHANGE,
        routing_key,
    )


def _event(
    ctx: EventContext,
    kind: EventType,
    ident: str,
    subject: str,
    time: datetime,
    data: dict[str, Any],
    exchange: str,
    routing_key: str,
) -> OutgoingEvent:
    """Wrap `data` in the CloudEvents envelope and encode it: every event comes through here."""
    document = {
        "specversion": SPEC_VERSION,
        "id": ident,
        "source": ctx.source,
        "type": kind.value,
        "subject": subject,
        "time": time,
        "datacontenttype": DATA_CONTENT_TYPE,
        "dataschema": kind.dataschema,
        "data": data,
    }
    body = orjson.dumps(document, option=_BODY_OPTIONS)
    return OutgoingEvent(ident, kind, subject, ctx.source, time, exchange, routing_key, body)


def ce_headers(event: OutgoingEvent) -> dict[str, str]:
    """Return the ce-* headers that let routers filter without parsing the body."""
    return {
        "ce-specversion": SPEC_VERSION,
        "ce-id": event.id,
        "ce-type": event.type.value,
        "ce-source": event.source,
        "ce-subject": event.subject,
    }


def message_properties(event: OutgoingEvent) -> dict[str, Any]:
    """Return the AMQP properties of one event, named as py-amqp's Message takes them.

    The one description of them: the frames of `publisher.framing`, the kombu producer and
    the AsyncAPI examples all take theirs from here.
    """
    return {
        "content_type": MESSAGE_CONTENT_TYPE,
        "content_encoding": "utf-8",
        "application_headers": ce_headers(event),
        "delivery_mode": PERSISTENT,
        "message_id": event.id,
        "timestamp": int(event.time.timestamp()),
        "type": event.type.value,
    }
