"""The fault suite's oracle: a consumer built on the consumer kit, and what it must hold.

`Oracle` runs a real `Subscription` (the kit's dedupe and ordering by `(modified_date,
sequence)`, a `MemoryStore`) on a durable queue bound to every record's changes and
deletions, and applies each new event to a plain map of records, as a downstream catalog
would. A raw queue bound the same way sees every copy of every event, to check that an id
always names the same content. `History` is what the sandbox served: each record's content
at each of its `modified_date`s, so every applied version is checked against the one the
sandbox really had at that date.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kombu
import orjson

from publisher.consumer import (
    MemoryStore,
    Subscription,
    change_patterns,
    microseconds,
    reload_drops,
)
from publisher.events import ChangeData, CloudEvent, DeletionData, ReloadData
from publisher.records import RESOURCES, Resource
from tests.integration.collect import Collector

RecordId = tuple[int, Resource, int]  # channel, resource, key
_BY_STREAM = {f"{r.value}.changed": r for r in Resource} | {
    f"{r.value}.deleted": r for r in Resource
}


def content(resource: Resource, values: dict[str, Any]) -> dict[str, Any]:
    """Return a record's content as plain JSON values, whatever form it came in."""
    model = RESOURCES[resource].content
    fields = RESOURCES[resource].content_fields
    return model.model_validate({k: values[k] for k in fields if k in values}).model_dump(
        mode="json"
    )


@dataclass
class History:
    """Every version of every record the sandbox served: content by `modified_date`."""

    versions: dict[RecordId, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def saw(self, channel_id: int, resource: Resource, record: dict[str, Any]) -> None:
        """Remember a record as served (with its `modified_date`)."""
        key = record[resource.key_field]
        moment = microseconds(_date(record["modified_date"]))
        self.versions[channel_id, resource, key][moment] = content(resource, record)


def _date(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Problems:
    """What the oracle found wrong, by kind; empty when the run held every promise."""

    lost: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    wrong_content: list[str] = field(default_factory=list)
    reused_ids: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lost or self.out_of_order or self.wrong_content or self.reused_ids)

    def lines(self) -> list[str]:
        """Return one line per problem, its kind first."""
        return [
            f"{kind}: {line}"
            for kind in ("lost", "out_of_order", "wrong_content", "reused_ids")
            for line in getattr(self, kind)
        ]


class Oracle:
    """A downstream copy of the channels' records, fed by the kit from a real queue."""

    def __init__(self, amqp_url: str, history: History) -> None:
        self.history = history
        self.queue = f"test.faults.{uuid.uuid4().hex[:8]}"
        self.records: dict[RecordId, dict[str, Any]] = {}
        # The (modified_date) of the last version applied per record, deletions included.
        self._applied: dict[RecordId, int] = {}
        self._contents: dict[str, tuple[Any, ...]] = {}  # event id -> what it carried
        self.deletion_ids: list[tuple[RecordId, str]] = []  # every copy, in arrival order
        self.problems = Problems()
        # The channels of this run: queues see every channel's events, other runs' too.
        self.channels: set[int] = set()
        self.applied = 0
        self.copies = 0
        self.swept = 0  # records a reload event dropped
        self._amqp_url = amqp_url
        patterns = change_patterns([])
        self._raw = Collector(amqp_url, *patterns)
        self._sub = Subscription(
            amqp_url,
            queue=self.queue,
            patterns=patterns,
            handler=self._apply,
            dedupe=MemoryStore(),
            prefetch=500,
            retry_delay=0,
        )
        self._sub.declare()

    def drain(self, quiet: float) -> None:
        """Take in what the queues hold, until nothing came for `quiet` seconds.

        Call it once the publisher is quiet: every event it published was confirmed, so is
        in the queues already.
        """
        self._sub.drain(timeout=quiet)
        for body in self._raw.settle(quiet=quiet):
            self._check_id(body)
        self._raw.clear()

    def close(self) -> None:
        """Stop consuming and delete the oracle's queues."""
        self._sub.close()
        self._raw.__exit__(None, None, None)
        with kombu.Connection(self._amqp_url) as conn:
            channel = conn.channel()
            for name in (self.queue, f"{self.queue}.dead"):
                channel.queue_delete(name)

    # -- what the kit hands over -------------------------------------------------------------

    def _apply(self, event: CloudEvent[Any]) -> None:
        data = event.data
        if isinstance(data, ReloadData) and data.channel_id in self.channels:
            self._reloaded(data)
            return
        if not isinstance(data, ChangeData | DeletionData) or data.channel_id not in self.channels:
            return
        resource = _BY_STREAM[str(event.type)]
        record: RecordId = (data.channel_id, resource, data.key)
        moment = microseconds(data.modified_date)
        self.applied += 1
        last = self._applied.get(record)
        if last is not None and moment < last:
            self.problems.out_of_order.append(
                f"{event.type} {record} dated {moment} applied after {last} (id {event.id})"
            )
        self._applied[record] = moment
        if isinstance(data, DeletionData):
            self.records.pop(record, None)
            return
        after = data.after.model_dump(mode="json")
        served = self.history.versions.get(record, {}).get(moment)
        if served != after:
            self.problems.wrong_content.append(
                f"{record} at {data.modified_date.isoformat()} seq {data.sequence}: applied "
                f"{after}, the sandbox served {served}"
            )
        self.records[record] = after

    def _reloaded(self, data: ReloadData) -> None:
        """Drop what a load after a state loss no longer found, as a consumer must."""
        moment = microseconds(data.started_at)
        for record in list(self.records):
            channel, resource, key = record
            same_list = channel == data.channel_id and resource is data.resource
            if same_list and reload_drops(data, key, self._applied.get(record)):
                del self.records[record]
                self._applied[record] = moment
                self.swept += 1

    def _check_id(self, body: dict[str, Any]) -> None:
        """Every copy of an event id carries the same record version."""
        data = body["data"]
        if data["channel_id"] not in self.channels:
            return
        self.copies += 1
        if body["type"].endswith(".reloaded"):
            reload = (body["type"], data["started_at"], data["part"], data["keys"])
            first_reload = self._contents.setdefault(body["id"], reload)
            if first_reload != reload:
                self.problems.reused_ids.append(f"id {body['id']} carried {first_reload}")
            return
        carried = (
            body["type"],
            data["channel_id"],
            data["key"],
            data["sequence"],
            data["modified_date"] if body["type"].endswith(".changed") else None,
            orjson.dumps(data.get("after") or data.get("before"), option=orjson.OPT_SORT_KEYS),
        )
        if body["type"].endswith(".deleted"):
            record = (data["channel_id"], _BY_STREAM[body["type"]], data["key"])
            self.deletion_ids.append((record, body["id"]))
        first = self._contents.setdefault(body["id"], carried)
        if first != carried:
            self.problems.reused_ids.append(f"id {body['id']} carried {first} and {carried}")

    # -- the verdict -------------------------------------------------------------------------

    def compare(
        self, channel_id: int, resource: Resource, served: list[dict[str, Any]]
    ) -> list[tuple[int, str]]:
        """Hold the oracle's copy of one list against the sandbox's records now.

        Return (key, what differs) per record that differs.
        """
        expected = {r[resource.key_field]: content(resource, r) for r in served}
        held = {
            key: after
            for (channel, kind, key), after in self.records.items()
            if channel == channel_id and kind is resource
        }
        differ = []
        for key in sorted(expected.keys() | held.keys()):
            want, got = expected.get(key), held.get(key)
            if want == got:
                continue
            if want is None:
                what = "deleted in the sandbox, still held"
            elif got is None:
                what = f"never arrived (want {want})"
            else:
                what = f"holds {got}, the sandbox has {want}"
            differ.append((key, f"{resource.value} key {key}: {what}"))
        return differ
