"""Judge one message: read its body into a typed event and say whether it is new.

Pure: no broker, no store. `read_event` parses a body (unknown types and majors are None,
unreadable bodies raise `InvalidEvent`); `position` names the record an event is about and
its sequence; `judge` compares that with the last event applied for the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError

from publisher.events import (
    EVENT_MODELS,
    SCHEMA_MAJOR,
    ChangeData,
    CloudEvent,
    EventType,
    RejectionData,
)
from publisher.records import describe_errors


class InvalidEvent(ValueError):
    """A message body that is not a readable event: it goes to the dead-letter queue."""


class Verdict(StrEnum):
    """What the stored position of a record says about an incoming event of it."""

    NEW = "new"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Applied:
    """The last event applied for one record: its sequence and its id."""

    sequence: int
    event_id: str


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Names one record's stream of events: channel, stream (event type) and record key."""

    channel_id: int
    stream: str
    key: int | None


def judge(last: Applied | None, sequence: int, event_id: str) -> Verdict:
    """Decide whether an event with this sequence and id should be applied."""
    if last is None or sequence > last.sequence:
        return Verdict.NEW
    if sequence < last.sequence:
        return Verdict.STALE
    # Same sequence: a re-publish of the same version, or a newer version that replaced
    # one the producer never committed (it then has another id).
    return Verdict.DUPLICATE if event_id == last.event_id else Verdict.NEW


def position(event: CloudEvent[Any]) -> tuple[RecordRef, int]:
    """Return which record an event is about and its sequence (0 for a rejection)."""
    data = event.data
    if isinstance(data, ChangeData):
        return RecordRef(data.channel_id, event.type, data.key), data.sequence
    if isinstance(data, RejectionData):
        return RecordRef(data.channel_id, f"{data.resource.value}.rejected", data.key), 0
    raise TypeError(f"no record position in {type(data).__name__}")


def read_event(body: bytes, major: int = SCHEMA_MAJOR) -> CloudEvent[Any] | None:
    """Parse a body into its typed event; None for a type or major this kit does not know.

    Unknown fields are ignored (minor versions may add some); a body that is not JSON, or
    that fails the model of its known type, raises `InvalidEvent`.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidEvent("not a JSON object")
    kind = _known_type(document.get("type"))
    if kind is None or _major_of(document.get("dataschema"), kind) not in (major, None):
        return None
    try:
        return EVENT_MODELS[kind].model_validate(document, extra="ignore")
    except ValidationError as exc:
        raise InvalidEvent(f"{kind.value}: {describe_errors(exc)}") from None


def _known_type(value: Any) -> EventType | None:
    try:
        return EventType(value)
    except ValueError:
        return None


def _major_of(dataschema: Any, kind: EventType) -> int | None:
    """Return the major version a `dataschema` names; None when it is not one of ours."""
    prefix = kind.dataschema.rsplit(":", 1)[0] + ":v"
    if isinstance(dataschema, str) and dataschema.startswith(prefix):
        number = dataschema[len(prefix) :]
        if number.isdigit():
            return int(number)
    return None
