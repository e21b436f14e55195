"""Define the published events: the contract's models, types and versions (pure: no I/O).

Every event is a CloudEvents 1.0 structured JSON document. The pydantic models below are the
contract: `schemas/` is generated from them (`publisher.contract`) and consumers parse with
them (`parse_event`, `publisher.consumer`). The producer writes the same documents straight
from plain values (`publisher.outgoing`); a test holds the two to the same shape.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict

from publisher.records import PriceContent, Resource, StockContent

SPEC_VERSION: Final = "1.0"
DATA_CONTENT_TYPE: Final = "application/json"
# The AMQP content type of a structured-mode CloudEvent.
MESSAGE_CONTENT_TYPE: Final = "application/cloudevents+json"
SCHEMA_MAJOR: Final = 1

# created: first seen since the publisher's state began; updated: its content changed;
# snapshot: read by a load of the whole list (the first load, a load after the publisher's
# state was lost, an on-demand snapshot): the current content, which a consumer may hold.
Operation = Literal["created", "updated", "snapshot"]


class EventType(StrEnum):
    """Name every event type the service publishes."""

    STOCK_CHANGED = "stock.changed"
    PRICE_CHANGED = "price.changed"
    STOCK_DELETED = "stock.deleted"
    PRICE_DELETED = "price.deleted"
    RECORD_REJECTED = "record.rejected"
    HEARTBEAT = "publisher.heartbeat"
    STOCK_RELOADED = "stock.reloaded"
    PRICE_RELOADED = "price.reloaded"

    @property
    def dataschema(self) -> str:
        """Return the URI of this type's schema; it carries the major version."""
        return f"urn:akinon-publisher:schema:{self.value}:v{SCHEMA_MAJOR}"


CHANGED_TYPE: Final = {
    Resource.STOCK: EventType.STOCK_CHANGED,
    Resource.PRICE: EventType.PRICE_CHANGED,
}
DELETED_TYPE: Final = {
    Resource.STOCK: EventType.STOCK_DELETED,
    Resource.PRICE: EventType.PRICE_DELETED,
}
RELOADED_TYPE: Final = {
    Resource.STOCK: EventType.STOCK_RELOADED,
    Resource.PRICE: EventType.PRICE_RELOADED,
}

ORDERING_RULE: Final = """\
Order a record's events by (`modified_date`, `sequence`): the later `modified_date` wins, and
between equal ones the higher `sequence`. An event that sorts before the last one applied is
stale: never apply it. Equal on both with the same `id` is a duplicate; with another `id` it
supersedes a version the publisher never committed (it stopped in between): apply it.
`modified_date` is Akinon's, so the order holds even after the publisher lost its state and
its sequences started again at 1."""

RELOAD_RULE: Final = """\
A reload event (`stock.reloaded`, `price.reloaded`) ends a load of a whole list that the
publisher made after losing its state, when it could no longer tell which records had been
deleted. For each record of that channel and list a consumer holds with a key between
`lowest_key` and `highest_key` (a null bound is no bound), that is not in `keys`, and whose
last applied `modified_date` is before `started_at`: the record left the list. Delete it as
if a deletion dated `started_at` had arrived (so an older event of it stays stale). A record
last changed at or after `started_at` is kept: its own events decide. Applying a reload
event again changes nothing."""

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
    """`created` the first time the service sees the record, `updated` when its content
    changed, `snapshot` when it was read by a load of the whole list (the first load, a load
    after the publisher's state was lost, an on-demand snapshot): the current content, which
    a consumer may already hold."""
    sequence: int
    """The record's change count as the publisher counts it (per channel, type and key): 1,
    2, 3 ... Order by (`modified_date`, `sequence`): sequences start again at 1 if the
    publisher's state is lost."""
    modified_date: datetime
    """Akinon's `modified_date` of the record version this event carries: the first key of
    a record's order."""
    fingerprint: str
    """Digest of the record's content in `after`: equal content, equal fingerprint."""
    before: ContentT | None
    """The content last published for this record, or null (`created`, `snapshot`)."""
    after: ContentT
    """The record's content now."""
    changed_fields: list[str]
    """The content fields whose values differ between `before` and `after`."""
    snapshot_id: str | None = None
    """The on-demand snapshot this event belongs to, or null (since 1.1)."""


class DeletionData(BaseModel, Generic[ContentT]):
    """The `data` of a deletion event: a record left the channel's list."""

    model_config = _CONTRACT

    channel_id: int
    """The Akinon sales channel the record belonged to."""
    key: int
    """The record key: `pk` of a stock, `id` of a price."""
    operation: Literal["deleted"]
    """Always `deleted`."""
    sequence: int
    """The record's change count: one more than its last change event."""
    modified_date: datetime
    """When the publisher found the record gone (after every version it published of it):
    the first key of the record's order."""
    fingerprint: str
    """Digest of the content in `before`, the last content published."""
    before: ContentT
    """The content last published for this record."""


class HeartbeatData(BaseModel):
    """The `data` of a heartbeat: one sync step of one (channel, resource) succeeded."""

    model_config = _CONTRACT

    channel_id: int
    """The Akinon sales channel the step read."""
    resource: Resource
    """Which kind of record the step read."""
    completed_at: datetime
    """When the step ended."""
    interval_seconds: float | None
    """How often steps are scheduled, or null when they are not (a one-off `poll`)."""
    complete_scan: bool
    """Whether this step read the whole list (it can find deletes) or a date range."""
    watermark: datetime | None
    """The latest `modified_date` the publisher has committed for this (channel, resource)."""
    last_complete_scan_at: datetime | None
    """When the last complete scan of the list began."""
    seen: int
    """Records the step read."""
    published: int
    """Events the step published (changes, deletions, rejections)."""
    deleted: int
    """Records the step found deleted."""
    rejected: int
    """Records the step rejected."""


class ReloadData(BaseModel):
    """The `data` of a reload event: which keys a complete load of the list found.

    After the publisher lost its state it knows no record, so it cannot announce the ones
    deleted meanwhile; it loads the whole list again (every record a `snapshot`) and then
    says what the list held, in parts of sorted keys that together cover every key.
    """

    model_config = _CONTRACT

    channel_id: int
    """The Akinon sales channel the list belongs to."""
    resource: Resource
    """Which kind of record the list holds."""
    started_at: datetime
    """When the load began (the publisher's clock). A record last changed before it and
    not in `keys` had left the list by then."""
    lowest_key: int | None
    """The lowest key this part covers, or null: no lower bound."""
    highest_key: int | None
    """The highest key this part covers, or null: no upper bound."""
    keys: list[int]
    """The keys, between `lowest_key` and `highest_key`, that the list held (ascending)."""
    part: int
    """This part's number, from 1."""
    parts: int
    """How many parts this load's reload events have."""


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
    """The record key as text (`unknown` for a rejected record without one; the resource for
    a heartbeat)."""
    time: datetime
    """When the change happened: the record's `modified_date`, when it was found deleted or
    rejected, when a heartbeat's step ended."""
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


class StockDeleted(CloudEvent[DeletionData[StockContent]]):
    """A stock record left the channel's stock list (since 1.1)."""

    type: Literal["stock.deleted"]


class PriceDeleted(CloudEvent[DeletionData[PriceContent]]):
    """A price record left the channel's price list (since 1.1)."""

    type: Literal["price.deleted"]


class RecordRejected(CloudEvent[RejectionData]):
    """A record failed validation and was not published as a change."""

    type: Literal["record.rejected"]


class Heartbeat(CloudEvent[HeartbeatData]):
    """A sync step succeeded: the publisher is alive for this (channel, resource) (since 1.1)."""

    type: Literal["publisher.heartbeat"]


class StockReloaded(CloudEvent[ReloadData]):
    """A load of the whole stock list after a state loss ended: what it held (since 1.2)."""

    type: Literal["stock.reloaded"]


class PriceReloaded(CloudEvent[ReloadData]):
    """A load of the whole price list after a state loss ended: what it held (since 1.2)."""

    type: Literal["price.reloaded"]


EVENT_MODELS: Final[dict[EventType, type[CloudEvent[Any]]]] = {
    EventType.STOCK_CHANGED: StockChanged,
    EventType.PRICE_CHANGED: PriceChanged,
    EventType.STOCK_DELETED: StockDeleted,
    EventType.PRICE_DELETED: PriceDeleted,
    EventType.RECORD_REJECTED: RecordRejected,
    EventType.HEARTBEAT: Heartbeat,
    EventType.STOCK_RELOADED: StockReloaded,
    EventType.PRICE_RELOADED: PriceReloaded,
}


def parse_event(body: bytes) -> CloudEvent[Any]:
    """Parse a published body into its typed event model (for consumers and tests)."""
    document = orjson.loads(body)
    model = EVENT_MODELS[EventType(document["type"])]
    return model.model_validate(document)
