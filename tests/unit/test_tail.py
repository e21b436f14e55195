"""`tail`'s one-line view: every field escaped, any JSON body described without raising."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from publisher.deletes import reload_parts
from publisher.outgoing import EventContext, reload_events
from publisher.records import Resource
from publisher.tail import event_line, json_line

# Every character a terminal may act on: C0 (newline, escape...), DEL, C1, line separators
# and the bidirectional overrides that reorder what is shown.
CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + [
    "\u2028",
    "\u2029",
    "\u202e",
    "\u2066",
    "\u200f",
]


def _price_event(**data: Any) -> bytes:
    fields = {
        "channel_id": 1,
        "key": 7,
        "operation": "created",
        "sequence": 1,
        "before": None,
        "after": {"price": "1.00", "currency_type": "TRY"},
        "changed_fields": ["price", "currency_type"],
    }
    return orjson.dumps(
        {"type": "price.changed", "time": "2024-05-01T10:00:00+00:00", "data": fields | data}
    )


def _shows_no_control(line: str) -> None:
    assert not [c for c in line if c in CONTROLS], repr(line)


def test_a_plain_event_reads_as_before() -> None:
    line = event_line(_price_event())
    assert line == (
        "2024-05-01T10:00:00 price.changed   ch=1 key=7 created seq=1 price=1.00, currency_type=TRY"
    )


def test_a_newline_in_a_field_cannot_forge_a_second_line() -> None:
    forged = "TRY\n2024-05-01T10:00:00 price.changed   ch=1 key=8 created seq=1 price=0.01"
    line = event_line(_price_event(after={"price": "1.00", "currency_type": forged}))
    assert "\n" not in line
    assert "currency_type=TRY\\n2024" in line


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_no_control_character_of_any_field_reaches_the_terminal(control: str) -> None:
    evil = f"a{control}[31mb"
    bodies = [
        _price_event(after={"price": evil, "currency_type": evil}, key=evil, operation=evil),
        _price_event(
            operation="updated",
            before={"price": evil},
            after={"price": "2"},
            changed_fields=[evil, "price"],
            sequence=evil,
            channel_id=evil,
        ),
        orjson.dumps(
            {"type": "record.rejected", "time": evil, "data": {"key": evil, "reason": evil}}
        ),
        orjson.dumps({"type": evil, "time": "x", "data": {}}),
        f"not json {control}".encode(),
        orjson.dumps(["an", evil]),
    ]
    for body in bodies:
        _shows_no_control(event_line(body))
        _shows_no_control(json_line(body))


@pytest.mark.parametrize(
    "event",
    [
        {"type": "price.changed", "time": 1714557600, "data": {}},
        {"type": "price.changed", "time": None, "data": {"key": 1}},
        {"type": ["a"], "time": {"t": 1}, "data": {"changed_fields": "price"}},
        {"type": "price.changed", "data": {"operation": "updated", "before": "x", "after": 3}},
        {"type": "price.changed", "data": {"operation": "created", "after": ["x"]}},
        {"type": "price.changed", "data": {"changed_fields": [1, None, {"a": 1}]}},
        {"type": "record.rejected", "data": {"key": {"a": [1]}, "reason": 5}},
        {"type": "price.changed", "data": None},
        {"type": "price.changed", "data": [1, 2]},
        {"data": "text"},
        [1, 2, 3],
        "just a string",
        12,
        None,
    ],
)
def test_a_malformed_json_body_is_described_on_one_line_without_raising(event: Any) -> None:
    line = event_line(orjson.dumps(event))
    assert line
    assert "\n" not in line


def test_a_body_that_is_not_json_or_not_utf8_is_described() -> None:
    assert event_line(b"\xff\xfe{").startswith("(not a CloudEvent)")
    assert event_line("plain text").startswith("(not a CloudEvent)")


def test_a_long_field_is_clipped() -> None:
    line = event_line(_price_event(key="k" * 10_000))
    assert len(line) < 400


def test_json_line_is_the_event_as_compact_json_on_one_line() -> None:
    body = orjson.dumps({"type": "t", "data": {"a": "x\u2028y\x85z"}}, option=orjson.OPT_INDENT_2)
    line = json_line(body)
    assert "\n" not in line
    assert orjson.loads(line) == orjson.loads(body)


def test_a_snapshot_reads_like_a_creation_and_a_deletion_shows_what_went() -> None:
    snap = event_line(_price_event(operation="snapshot"))
    assert snap.endswith("key=7 snapshot seq=1 price=1.00, currency_type=TRY")
    gone = _price_event(
        operation="deleted", sequence=2, before={"price": "1.00", "currency_type": "TRY"}
    )
    gone = gone.replace(b'"price.changed"', b'"price.deleted"').replace(
        b'"after":{"price":"1.00","currency_type":"TRY"}', b'"after":null'
    )
    assert event_line(gone).endswith("key=7 deleted seq=2 price=1.00, currency_type=TRY")


def test_a_reload_event_is_one_line_with_its_part_and_how_many_keys() -> None:
    ctx = EventContext(5, Resource.STOCK, "https://x/api/v1/channel/5", datetime.now(UTC))
    parts = reload_parts(iter([1, 2, 3]), size=2)
    first, last = (event_line(e.body) for e in reload_events(ctx, datetime.now(UTC), parts))
    assert "stock.reloaded" in first and "part=1/2 keys=2 span=None..2" in first
    assert "part=2/2 keys=1 span=3..None" in last
