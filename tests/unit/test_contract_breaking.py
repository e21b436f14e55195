"""The breaking-change checker on hand-made schema pairs (and on the real schemas)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from publisher.contract import breaking_changes, compare_contracts, compare_schemas, event_schema
from publisher.events import EventType

BASE: dict[str, Any] = {
    "$defs": {
        "Item": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            "required": ["sku"],
        }
    },
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "kind": {"const": "order.placed", "type": "string"},
        "state": {"enum": ["new", "paid"], "type": "string"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "item": {"$ref": "#/$defs/Item"},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
        "total": {"type": "string", "pattern": "^[0-9]+$"},
        "raw": {},
    },
    "required": ["id", "kind", "state", "item"],
}


def changed(edit: Any) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    edit(schema)
    return schema


def test_identical_schemas_have_no_findings() -> None:
    assert compare_schemas(BASE, copy.deepcopy(BASE)) == []


def test_adding_an_optional_field_is_minor() -> None:
    new = changed(lambda s: s["properties"].update(channel={"type": "integer"}))
    assert breaking_changes(BASE, new) == []
    (finding,) = compare_schemas(BASE, new)
    assert finding.where == "$.channel"
    assert finding.what == "optional field added"
    assert not finding.breaking


def test_adding_an_optional_field_deep_inside_a_ref_is_minor() -> None:
    new = changed(lambda s: s["$defs"]["Item"]["properties"].update(unit={"type": "string"}))
    assert breaking_changes(BASE, new) == []
    assert [f.where for f in compare_schemas(BASE, new)] == ["$.item.unit", "$.lines[].unit"]


def test_descriptions_and_titles_do_not_matter() -> None:
    def document(s: dict[str, Any]) -> None:
        s["properties"]["id"]["description"] = "The order id."
        s["title"] = "Order placed"

    assert compare_schemas(BASE, changed(document)) == []


@pytest.mark.parametrize(
    ("edit", "where", "what"),
    [
        (lambda s: s["properties"].pop("note"), "$.note", "field removed"),
        (
            lambda s: s["$defs"]["Item"]["properties"].pop("qty"),
            "$.item.qty",
            "field removed",
        ),
        (
            lambda s: (
                s["properties"].update(channel={"type": "integer"})
                or s["required"].append("channel")
            ),
            "$.channel",
            "required field added",
        ),
        (lambda s: s["required"].append("note"), "$.note", "optional field made required"),
        (lambda s: s["required"].remove("item"), "$.item", "required field made optional"),
        (
            lambda s: s["properties"].update(id={"type": "integer"}),
            "$.id",
            "type changed: string no longer allowed",
        ),
        (
            lambda s: s["properties"].update(id={"anyOf": [{"type": "string"}, {"type": "null"}]}),
            "$.id",
            "type changed: null now allowed",
        ),
        (
            lambda s: s["properties"].update(note={"type": "string"}),
            "$.note",
            "type changed: null no longer allowed",
        ),
        (
            lambda s: s["$defs"]["Item"]["properties"].update(qty={"type": "string"}),
            "$.lines[].qty",
            "type changed: integer no longer allowed",
        ),
        (
            lambda s: s["properties"]["state"].update(enum=["new"]),
            "$.state",
            "enum narrowed: ['paid'] removed",
        ),
        (
            lambda s: s["properties"]["kind"].update(const="order.created"),
            "$.kind",
            "enum narrowed: ['order.placed'] removed",
        ),
        (
            lambda s: s["properties"]["total"].update(pattern="^[0-9]+\\.[0-9]{2}$"),
            "$.total",
            "pattern changed",
        ),
        (lambda s: s["properties"].update(raw={"type": "object"}), "$.raw", "type changed"),
        (
            lambda s: s.update(additionalProperties=False),
            "$",
            "object closed to new fields",
        ),
    ],
)
def test_breaking_changes_are_reported_where_they_happen(edit: Any, where: str, what: str) -> None:
    problems = breaking_changes(BASE, changed(edit))
    assert any(p.startswith(f"{where}: {what}") for p in problems), problems


def test_widening_an_enum_is_minor() -> None:
    new = changed(lambda s: s["properties"]["state"].update(enum=["new", "paid", "shipped"]))
    assert breaking_changes(BASE, new) == []
    (finding,) = compare_schemas(BASE, new)
    assert finding.what == "enum widened: ['shipped'] added"


def test_removing_an_event_type_is_breaking_and_adding_one_is_minor() -> None:
    old = {"a/v1.json": BASE, "b/v1.json": BASE}
    new = {"a/v1.json": BASE, "c/v1.json": BASE}
    findings = compare_contracts(old, new)
    assert [(f.where, f.what, f.breaking) for f in findings] == [
        ("b/v1.json", "event type removed", True),
        ("c/v1.json", "event type added", False),
    ]


def test_a_new_major_side_by_side_does_not_break_the_old_one() -> None:
    v2 = changed(lambda s: s["properties"].update(id={"type": "integer"}))
    findings = compare_contracts({"a/v1.json": BASE}, {"a/v1.json": BASE, "a/v2.json": v2})
    assert [f.breaking for f in findings] == [False]


@pytest.mark.parametrize("kind", list(EventType))
def test_the_real_schemas_against_themselves_and_against_a_damaged_copy(kind: EventType) -> None:
    schema = event_schema(kind)
    assert compare_schemas(schema, copy.deepcopy(schema)) == []
    damaged = copy.deepcopy(schema)
    del damaged["properties"]["subject"]
    assert breaking_changes(schema, damaged) == ["$.subject: field removed"]


def test_a_price_that_becomes_a_number_is_breaking() -> None:
    schema = event_schema(EventType.PRICE_CHANGED)
    retyped = copy.deepcopy(schema)
    retyped["$defs"]["PriceContent"]["properties"]["price"] = {"type": "number"}
    problems = breaking_changes(schema, retyped)
    assert "$.data.after.price: type changed: string no longer allowed" in problems
    assert "$.data.before.price: type changed: number now allowed" in problems
