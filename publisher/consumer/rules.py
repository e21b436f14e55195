"""Judge one message: read its body into a typed event and say whether it is new.

Pure: no broker, no store. `read_event` parses a body (unknown types and majors are None,
unreadable bodies raise `InvalidEvent`); `locate` names the record an event is about and
its place in the record's order; `judge` compares that with the last event applied for the
record. The order is the contract's (`publisher.events.ORDERING_RULE`): `modified_date`
first, `sequence` second, so it holds after the publisher lost its state and its sequences
started again at 1. A record's change and deletion events share one stream.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError

from publisher.events import (
    CHANGED_TYPE,
    DELETED_TYPE,
    EVENT_MODELS,
    SCHEMA_MAJOR,
    ChangeData,
    CloudEvent,
    DeletionData,
    EventType,
    RejectionData,
    ReloadData,
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
    """The last event applied for one record: its sequence, its id, its `modified_date`.

    `modified` is in microseconds since the epoch; None where it is not known (a position
    remembered before version 1.1 of the kit).
    """

    sequence: int
    event_id: str
    modified: int | None = None


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Names one record's stream of events: channel, stream (event type) and record key."""

    channel_id: int
    stream: str
    key: int | None


def judge(
    last: Applied | None, sequence: int, event_id: str, modified: int | None = None
) -> Verdict:
    """Decide whether an event at (modified, sequence) with this id should be applied.

    Where either `modified` is unknown, the sequence alone decides (the 1.0 rule).
    """
    if last is None:
        return Verdict.NEW
    if modified is not None and last.modified is not None and modified != last.modified:
        return Verdict.NEW if modified > last.modified else Verdict.STALE
    if sequence != last.sequence:
        return Verdict.NEW if sequence > last.sequence else Verdict.STALE
    # Same place: a re-publish of the same version, or a newer version that replaced one
    # the producer never committed (it then has another id).
    return Verdict.DUPLICATE if event_id == last.event_id else Verdict.NEW


@dataclass(frozen=True, slots=True)
class Place:
    """Where an event stands: its record and its place in the record's order."""

    ref: RecordRef
    sequence: int
    modified: int | None

    def applied(self, event_id: str) -> Applied:
        """Return what to remember once this event is applied."""
        return Applied(self.sequence, event_id, self.modified)


# A resource's change and deletion events share its change stream's name.
_STREAMS = {
    **{kind.value: kind.value for kind in CHANGED_TYPE.values()},
    **{deleted.value: CHANGED_TYPE[r].value for r, deleted in DELETED_TYPE.items()},
}


def locate(event: CloudEvent[Any]) -> Place | None:
    """Return an event's record and place; None for an event about no record (a heartbeat)."""
    data = event.data
    if isinstance(data, ChangeData | DeletionData):
        ref = RecordRef(data.channel_id, _STREAMS[event.type], data.key)
        return Place(ref, data.sequence, microseconds(data.modified_date))
    if isinstance(data, RejectionData):
        return Place(
            RecordRef(data.channel_id, f"{data.resource.value}.rejected", data.key), 0, None
        )
    return None


def reload_drops(data: ReloadData, key: int, modified: int | None) -> bool:
    """Say whether a reload event removes a held record (`publisher.events.RELOAD_RULE`).

    `modified` is the record's last applied `modified_date` in microseconds (None: unknown,
    then it is kept: only its own events can tell).
    """
    if data.lowest_key is not None and key < data.lowest_key:
        return False
    if data.highest_key is not None and key > data.highest_key:
        return False
    if modified is None or modified >= microseconds(data.started_at):
        return False
    keys = data.keys  # ascending, as the contract says: a binary search, not a scan
    at = bisect_left(keys, key)
    return at == len(keys) or keys[at] != key


def position(event: CloudEvent[Any]) -> tuple[RecordRef, int]:
    """Return which record an event is about and its sequence (0 for a rejection)."""
    place = locate(event)
    if place is None:
        raise TypeError(f"no record position in {type(event.data).__name__}")
    return place.ref, place.sequence


def microseconds(moment: datetime) -> int:
    """Return a moment as whole microseconds since the epoch (a naive one is UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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
        event = EVENT_MODELS[kind].model_validate(document, extra="ignore")
    except ValidationError as exc:
        raise InvalidEvent(f"{kind.value}: {describe_errors(exc)}") from None
    problem = _out_of_bounds(event.data)
    if problem is not None:
        raise InvalidEvent(f"{kind.value}: {problem}")
    return event


# The publisher never sends an id or a sequence below 1, nor one past 64 bits; one that is
# would be stored as a record's position and hold back (or, past 64 bits, break) every
# later event of the record. The released schemas do not say so (a new constraint is a
# breaking change by the contract's rules), so the kit holds these bounds itself.
_BOUNDED = ("channel_id", "key", "sequence")
_LARGEST = 2**63 - 1


def _out_of_bounds(data: Any) -> str | None:
    """Say which id or sequence of an event's data is not within 1 .. 2**63 - 1, if any."""
    for name in _BOUNDED:
        value = getattr(data, name, None)
        if isinstance(value, int) and not 1 <= value <= _LARGEST:
            return f"data.{name}: must be between 1 and {_LARGEST} (got {value})"
    return None


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
