"""Define the published events and build them from changes (pure: no I/O).

Every event is a CloudEvents 1.0 structured JSON document. The pydantic models below are the
contract: `schemas/` is generated from them and consumers parse with them. The builders
write the same documents straight from plain values with orjson, because a model per event
would cost more than the rest of the hot path; a test holds the two to the same shape.

The `id` of a change event is derived from (channel, resource, record key, sequence,
content digest): a re-publish after a crash carries the same id, and a record that goes
A -> B -> A still gets a new id for its second A (the sequence differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict

from publisher import keys
from publisher.diff import Change, Operation, Rejection
from publisher.fingerprint import content_of, digest
from publisher.records import CONTENT_FIELDS, PriceContent, Resource, StockContent

SPEC_VERSION: Final = "1.0"
DATA_CONTENT_TYPE: Final = "application/json"
# The AMQP content type of a structured-mode CloudEvent.
MESSAGE_CONTENT_TYPE: Final = "application/cloudevents+json"
SCHEMA_MAJOR: Final = 1
_BODY_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


class EventType(StrEnum):
    """Name every event type the service publishes."""

    STOCK_CHANGED = "stock.changed"
    PRICE_CHANGED = "price.changed"
    RECORD_REJECTED = "record.rejected"

    @property
    def dataschema(self) -> str:
        """Return the URI of this type's schema; it carries the major version."""
        return f"urn:akinon-publisher:schema:{self.value}:v{SCHEMA_MAJOR}"


CHANGED_TYPE: Final = {
    Resource.STOCK: EventType.STOCK_CHANGED,
    Resource.PRICE: EventType.PRICE_CHANGED,
}

# ---------------------------------------------------------------------------- the contract

# The attribute docstrings below become the field descriptions of the published schemas.
_CONTRACT = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
ContentT = TypeVar("ContentT", StockContent, PriceContent)
DataT = TypeVar("DataT", bound=BaseModel)


class ChangeData(BaseModel, Generic[ContentT]):
    """The `data` of a change event."""

    model_config = _CONTRACT

    channel_id: int
    """The Akinon sales channel the record belongs to."""
    key: int
    """The record key: `pk` of a stock, `id` of a price."""
    operation: Operation
    """`created` the first time the service sees the record, `updated` afterwards."""
    sequence: int
    """The record's change count (per channel, type and key): 1, 2, 3 ..., one per change."""
    modified_date: datetime
    """Akinon's `modified_date` of the record version this event carries."""
    fingerprint: str
    """Digest of the record's content in `after`: equal content, equal fingerprint."""
    before: ContentT | None
    """The content last published for this record, or null when `operation` is `created`."""
    after: ContentT
    """The record's content now."""
    changed_fields: list[str]
    """The content fields whose values differ between `before` and `after`."""


class RejectionData(BaseModel):
    """The `data` of a `record.rejected` event."""

    model_config = _CONTRACT

    channel_id: int
    """The Akinon sales channel the record came from."""
    resource: Resource
    """Which kind of record failed validation."""
    key: int | None
    """The record key, or null when the record has none that can be read."""
    reason: str
    """What was wrong, field by field."""
    digest: str
    """Digest of the raw record: the same bad content is reported once."""
    raw: Any
    """The record exactly as Akinon sent it."""


class CloudEvent(BaseModel, Generic[DataT]):
    """The CloudEvents 1.0 envelope shared by every event."""

    model_config = _CONTRACT

    specversion: Literal["1.0"]
    """The CloudEvents version."""
    id: str
    """Identifies the event; a re-publish of the same event carries the same id."""
    source: str
    """The Akinon channel the event is about, as a URL without credentials."""
    type: str
    """The event type; with `dataschema`, it says how to read `data`."""
    subject: str
    """The record key as text (`unknown` for a rejected record without one)."""
    time: datetime
    """When the change happened: the record's `modified_date`, or when it was rejected."""
    datacontenttype: Literal["application/json"]
    """The media type of `data`."""
    dataschema: str
    """The URN of this type's schema; its last segment is the major version (`:v1`)."""
    data: DataT
    """The event's payload."""


class StockChanged(CloudEvent[ChangeData[StockContent]]):
    """A stock record was created or its content changed."""

    type: Literal["stock.changed"]


class PriceChanged(CloudEvent[ChangeData[PriceContent]]):
    """A price record was created or its content changed."""

    type: Literal["price.changed"]


class RecordRejected(CloudEvent[RejectionData]):
    """A record failed validation and was not published as a change."""

    type: Literal["record.rejected"]


EVENT_MODELS: Final[dict[EventType, type[CloudEvent[Any]]]] = {
    EventType.STOCK_CHANGED: StockChanged,
    EventType.PRICE_CHANGED: PriceChanged,
    EventType.RECORD_REJECTED: RecordRejected,
}

# ---------------------------------------------------------------------------- the builders


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


@dataclass(frozen=True, slots=True)
class EventContext:
    """What every event of one sync step shares, worked out once per step."""

    channel_id: int
    resource: Resource
    source: str
    observed_at: datetime
    kind: EventType = field(init=False)
    type_name: str = field(init=False)
    dataschema: str = field(init=False)
    exchange: str = field(init=False)
    routing_key: str = field(init=False)
    id_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        # Frozen for the callers; these derived values are set once, here.
        for name, value in (
            ("kind", CHANGED_TYPE[self.resource]),
            ("type_name", CHANGED_TYPE[self.resource].value),
            ("dataschema", CHANGED_TYPE[self.resource].dataschema),
            ("exchange", keys.exchange_for(self.resource)),
            ("routing_key", keys.changed_routing_key(self.resource, self.channel_id)),
            ("id_prefix", f"{self.channel_id}|{self.resource.value}|"),
        ):
            object.__setattr__(self, name, value)


def source_uri(base_url: str, channel_id: int) -> str:
    """Return the CloudEvents `source` of a channel: its Akinon URL, without credentials."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}/api/v1/channel/{channel_id}"


def event_id(channel_id: int, resource: Resource, key: int, sequence: int, fp: str) -> str:
    """Derive a change event's id; the same inputs always give the same id."""
    return _uuid_text(f"{channel_id}|{resource.value}|{key}|{sequence}|{fp}")


def _uuid_text(name: str) -> str:
    # The text of uuid.UUID(bytes=digest), written directly: this runs once per event.
    h = digest(name.encode())
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
    resource = ctx.resource
    before = None if change.before is None else content_of(resource, change.before)
    after = change.content or content_of(resource, change.after)
    fp = digest(change.after)
    ident = _uuid_text(f"{ctx.id_prefix}{change.key}|{change.sequence}|{fp}")
    time = change.record.modified_date
    document = {
        "specversion": SPEC_VERSION,
        "id": ident,
        "source": ctx.source,
        "type": ctx.type_name,
        "subject": str(change.key),
        "time": time,
        "datacontenttype": DATA_CONTENT_TYPE,
        "dataschema": ctx.dataschema,
        "data": {
            "channel_id": ctx.channel_id,
            "key": change.key,
            "operation": change.operation,
            "sequence": change.sequence,
            "modified_date": time,
            "fingerprint": fp,
            "before": before,
            "after": after,
            "changed_fields": changed_fields(resource, before, after),
        },
    }
    body = orjson.dumps(document, option=_BODY_OPTIONS)
    return OutgoingEvent(
        ident, ctx.kind, str(change.key), ctx.source, time, ctx.exchange, ctx.routing_key, body
    )


def rejection_event(ctx: EventContext, rejection: Rejection) -> OutgoingEvent:
    """Build the `record.rejected` event of one record that failed validation."""
    subject = str(rejection.key) if rejection.key is not None else "unknown"
    name = f"{ctx.channel_id}|{ctx.resource.value}|rejected|{subject}|{rejection.digest}"
    ident = _uuid_text(name)
    data = {
        "channel_id": ctx.channel_id,
        "resource": ctx.resource.value,
        "key": rejection.key,
        "reason": rejection.reason,
        "digest": rejection.digest,
        "raw": rejection.raw,
    }
    return _envelope(
        ctx,
        EventType.RECORD_REJECTED,
        ident=ident,
        subject=subject,
        time=ctx.observed_at,
        data=data,
        exchange=keys.REJECTED_EXCHANGE,
    )


def _envelope(
    ctx: EventContext,
    kind: EventType,
    *,
    ident: str,
    subject: str,
    time: datetime,
    data: dict[str, Any],
    exchange: str,
) -> OutgoingEvent:
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
    routing_key = (
        keys.rejected_routing_key(ctx.resource, ctx.channel_id)
        if kind is EventType.RECORD_REJECTED
        else keys.changed_routing_key(ctx.resource, ctx.channel_id)
    )
    body = orjson.dumps(document, option=_BODY_OPTIONS)
    return OutgoingEvent(ident, kind, subject, ctx.source, time, exchange, routing_key, body)


def parse_event(body: bytes) -> CloudEvent[Any]:
    """Parse a published body into its typed event model (for consumers and tests)."""
    document = orjson.loads(body)
    model = EVENT_MODELS[EventType(document["type"])]
    return model.model_validate(document)
