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

Operation = Literal["created", "updated"]


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


def parse_event(body: bytes) -> CloudEvent[Any]:
    """Parse a published body into its typed event model (for consumers and tests)."""
    document = orjson.loads(body)
    model = EVENT_MODELS[EventType(document["type"])]
    return model.model_validate(document)
