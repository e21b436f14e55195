"""Model Akinon's batch requests: the state machine clients use to acknowledge records (pure).

    initialized ──commit──▶ commit ──▶ sent_to_remote ──▶ ongoing ──▶ done
         │                    │              │               │
         └────────────────────┴──────────────┴───────────────┴──▶ fail (records given back)

`commit` is where acknowledgements are recorded, with each object's `version_date` as sent;
only one batch per (channel, content type) may sit in `commit` at a time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Final

from publisher.records import Resource
from publisher.sandbox.dates import format_us, parse_us
from publisher.sandbox.errors import InvalidError

CONTENT_TYPES: Final = {resource.content_type: resource for resource in Resource}

NEXT_STATUSES: Final[dict[str, frozenset[str]]] = {
    "initialized": frozenset({"commit", "fail"}),
    "commit": frozenset({"sent_to_remote", "ongoing", "done", "fail"}),
    "sent_to_remote": frozenset({"ongoing", "done", "fail"}),
    "ongoing": frozenset({"done", "fail"}),
    "done": frozenset(),
    "fail": frozenset(),
}


@dataclass(frozen=True)
class Acknowledgement:
    """One object of a batch: a record key, the version the client handled, and extras."""

    pk: int
    version_us: int | None
    remote_id: Any = None
    failed_reason_type: Any = None

    def to_json(self, content_type: str | None) -> dict[str, Any]:
        """Return the object as the batch's JSON shows it."""
        return {
            "pk": self.pk,
            "version_date": None if self.version_us is None else format_us(self.version_us),
            "content_type": content_type,
            "remote_id": self.remote_id,
            "failed_reason_type": self.failed_reason_type,
        }


@dataclass(frozen=True)
class Patch:
    """A validated PATCH body: the status asked for, its content type and objects."""

    status: str
    content_type: str | None
    objects: tuple[Acknowledgement, ...]


@dataclass
class Batch:
    """One batch request and what its commit acknowledged, so a fail can give it back."""

    pk: int
    channel: int
    created_us: int
    modified_us: int
    status: str = "initialized"
    content_type: str | None = None
    local_batch_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    objects: tuple[Acknowledgement, ...] = ()
    # pk -> (version acknowledged by this batch, version acknowledged before it)
    given: dict[int, tuple[int, int | None]] = field(default_factory=dict)

    @property
    def resource(self) -> Resource | None:
        """Return the resource this batch acknowledges, once its content type is known."""
        return CONTENT_TYPES.get(self.content_type or "")

    def to_json(self, with_objects: bool = False) -> dict[str, Any]:
        """Return the batch as Akinon's batch_requests endpoint shows it."""
        body: dict[str, Any] = {
            "pk": self.pk,
            "local_batch_id": self.local_batch_id,
            "status": self.status,
            "channel": self.channel,
            "content_type": self.content_type,
            "created_date": format_us(self.created_us),
            "modified_date": format_us(self.modified_us),
        }
        if with_objects:
            body["objects"] = [obj.to_json(self.content_type) for obj in self.objects]
        else:
            body["object_count"] = len(self.objects)
        return body


def check_transition(current: str, wanted: str) -> None:
    """Raise InvalidError unless a batch in `current` may move to `wanted`."""
    if wanted not in NEXT_STATUSES:
        raise InvalidError({"status": [f'"{wanted}" is not a valid choice.']})
    if wanted not in NEXT_STATUSES[current]:
        raise InvalidError({"status": [f"Cannot move a batch from {current} to {wanted}."]})


def parse_patch(body: Any, current_content_type: str | None) -> Patch:
    """Validate a batch PATCH body; raise InvalidError naming what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise InvalidError({"status": ["This field is required."]})
    content_type = body.get("content_type", current_content_type)
    if content_type is not None and content_type not in CONTENT_TYPES:
        raise InvalidError({"content_type": [f'"{content_type}" is not a valid choice.']})
    raw_objects = body.get("objects", [])
    if not isinstance(raw_objects, list):
        raise InvalidError({"objects": ["Expected a list of items."]})
    status = body["status"]
    # Only a commit records acknowledgements, so only there is a version_date required.
    versioned = status == "commit"
    objects = tuple(_parse_object(item, content_type, versioned) for item in raw_objects)
    return Patch(status=status, content_type=content_type, objects=objects)


def merge_objects(
    existing: tuple[Acknowledgement, ...], updates: tuple[Acknowledgement, ...]
) -> tuple[Acknowledgement, ...]:
    """Take remote ids and failure reasons from `updates`, keeping committed versions."""
    by_pk = {obj.pk: obj for obj in existing}
    for update in updates:
        known = by_pk.get(update.pk, update)
        by_pk[update.pk] = replace(
            known, remote_id=update.remote_id, failed_reason_type=update.failed_reason_type
        )
    return tuple(by_pk.values())


def _parse_version(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_us(value)
    except ValueError:
        return None


def _parse_object(item: Any, content_type: str | None, versioned: bool) -> Acknowledgement:
    if not isinstance(item, dict):
        raise InvalidError({"objects": ["Each object must be a JSON object."]})
    pk = item.get("pk")
    if isinstance(pk, bool) or not isinstance(pk, int):
        raise InvalidError({"objects": [f"pk must be an integer, got {pk!r}."]})
    given_type = item.get("content_type", content_type)
    if given_type != content_type:
        raise InvalidError({"objects": [f"Object {pk} has content_type {given_type!r}."]})
    version_us = _parse_version(item.get("version_date"))
    if versioned and version_us is None:
        raise InvalidError({"objects": [f"Object {pk} needs a valid version_date."]})
    return Acknowledgement(
        pk=pk,
        version_us=version_us,
        remote_id=item.get("remote_id"),
        failed_reason_type=item.get("failed_reason_type"),
    )
