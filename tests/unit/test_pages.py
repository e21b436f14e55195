"""The typed page decoder: the diff's outcome is the same whichever way a page was decoded."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import orjson
import pytest
from pydantic import ValidationError

from publisher.diff import PageDiff, Stored, StoredPage, diff_page
from publisher.errors import AkinonBadResponse
from publisher.fingerprint import page_canonicals, record_canonical
from publisher.pages import ROWS, RecordPage, decode_page, newest_modified, page_keys
from publisher.records import CONTENT_FIELDS, MODELS, Resource
from tests.factories import as_page, price, stock

FACTORIES = {Resource.STOCK: stock, Resource.PRICE: price}


def _body(resource: Resource, records: list[Any]) -> bytes:
    # As Akinon serves them: stocks as a bare array, prices inside {count, next, results}.
    # The standard library writes integers of any size, as a server may.
    if resource is Resource.STOCK:
        return json.dumps(records).encode()
    envelope = {"count": len(records), "next": None, "previous": None, "results": records}
    return json.dumps(envelope).encode()


def _records(decoded: Any) -> Any:
    return decoded["results"] if isinstance(decoded, dict) else decoded


def _outcome(diff: PageDiff) -> tuple[Any, ...]:
    changes = [(c.key, c.operation, c.sequence, c.before, c.after) for c in diff.changes]
    rejections = [(r.key, r.reason, r.digest) for r in diff.rejections]
    return changes, rejections, diff.seen, diff.unchanged, diff.newest_modified


def _stored_form(resource: Resource, raw: dict[str, Any]) -> bytes:
    return record_canonical(MODELS[resource].model_validate(raw))[0]


@pytest.mark.parametrize("resource", list(Resource))
def test_the_rows_read_the_content_fields_in_their_order_then_the_dates(resource: Resource) -> None:
    fields = ROWS[resource].__struct_fields__
    assert fields == (*CONTENT_FIELDS[resource], "modified_date", "created_date")
    # ... which are every field the record's model reads.
    assert set(fields) == {f.alias or name for name, f in MODELS[resource].model_fields.items()}


@pytest.mark.parametrize("resource", list(Resource))
def test_a_plain_page_gets_the_keys_forms_and_date_the_dict_way_gives(resource: Resource) -> None:
    make = FACTORIES[resource]
    records = [
        make(
            1,
            extra_field={
                "colour": "k\u0131rm\u0131z\u0131",
                "sizes": [38, 39.5],
                "note": 'a "b" \\ c',
            },
        ),
        make(2, modified_date="2026-01-02T00:00:00.000001Z"),
        make(3),
    ]
    page = _records(decode_page(resource, _body(resource, records)))
    assert isinstance(page, RecordPage)
    assert page.keys == page_keys(resource, records) == [1, 2, 3]
    assert page.forms == page_canonicals(resource, records)
    assert page.newest_modified == newest_modified(records) == "2026-01-02T00:00:00.000001Z"
    # The records themselves, decoded on demand, are what orjson gives.
    assert list(page) == records
    assert page[-1] == records[2] and page[1:] == records[1:]
    assert page[0] is page[0]
    with pytest.raises(IndexError):
        page[3]


def test_an_envelope_keeps_its_next_link() -> None:
    body = json.dumps({"count": 9, "next": "http://a/?page=2", "results": [price(1)]}).encode()
    decoded = decode_page(Resource.PRICE, body)
    assert decoded["next"] == "http://a/?page=2"
    assert isinstance(decoded["results"], RecordPage)


ODD_RECORDS = {
    "key as a string": {"pk": "12"},
    "key as a float": {"pk": 12.0},
    "key past 64 bits": {"pk": 2**64},
    "key null": {"pk": None},
    "content field missing": {"stock_list": msgspec.UNSET},
    "content field past 64 bits": {"product": 2**63},
    "integer as a boolean": {"stock": True},
    "date missing": {"modified_date": msgspec.UNSET},
    "date not a string": {"modified_date": 20260101},
    "extra_field not an object": {"extra_field": []},
}


@pytest.mark.parametrize("change", ODD_RECORDS.values(), ids=ODD_RECORDS.keys())
def test_one_odd_record_leaves_the_page_to_the_plain_way(change: dict[str, Any]) -> None:
    odd = {k: v for k, v in (stock(2) | change).items() if v is not msgspec.UNSET}
    records = [stock(1), odd, stock(3)]
    body = _body(Resource.STOCK, records)
    decoded = decode_page(Resource.STOCK, body)
    assert decoded == orjson.loads(body)
    assert isinstance(decoded, RecordPage) and not decoded.is_typed


@pytest.mark.parametrize(
    "records",
    [[price(1, price=119.9)], [{k: v for k, v in price(1).items() if k != "id"} | {"pk": 1}]],
    ids=["decimal as a number", "price keyed by pk"],
)
def test_a_price_the_typed_pass_cannot_read_goes_the_plain_way(records: list[Any]) -> None:
    decoded = decode_page(Resource.PRICE, _body(Resource.PRICE, records))
    assert not decoded["results"].is_typed


def test_a_page_that_is_not_a_record_array_is_decoded_as_it_is() -> None:
    assert decode_page(Resource.STOCK, b'{"detail": "nope"}') == {"detail": "nope"}
    assert decode_page(Resource.STOCK, b"[1, null]") == [1, None]
    with pytest.raises(orjson.JSONDecodeError):
        decode_page(Resource.STOCK, b'[{"pk": 1,')


def test_bad_text_in_a_field_the_typed_pass_reads_rejects_that_record_alone() -> None:
    body = _body(Resource.STOCK, [stock(1), stock(2)]).replace(b'"qty"', b'"q\xffty"', 1)
    page = decode_page(Resource.STOCK, body)
    assert page.keys == [1, 2]
    assert [type(page.fields(i)).__name__ for i in range(2)] == ["Unreadable", "dict"]
    [rejection] = diff_page(page, {}).rejections
    assert rejection.key == 1 and "not valid JSON" in rejection.reason


def test_nesting_too_deep_for_msgspec_is_left_to_orjson() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    body = _body(Resource.STOCK, [stock(1)]).replace(
        b'"extra_field": {}', b'"extra_field": ' + deep
    )
    with pytest.raises(orjson.JSONDecodeError, match="depth"):
        decode_page(Resource.STOCK, body)


def _with_bad_text_in_a_skipped_field(records: list[Any]) -> bytes:
    # The last record gets a field no model reads, holding a byte that is not UTF-8.
    records[-1]["note"] = "sp"
    body = _body(Resource.STOCK, records)
    at = body.rindex(b'"note": "s') + len(b'"note": "s')
    return body[:at] + b"\xff" + body[at:]


def test_bad_text_in_a_skipped_field_refuses_only_that_record_when_it_is_decoded() -> None:
    body = _with_bad_text_in_a_skipped_field([stock(1), stock(2)])
    page = decode_page(Resource.STOCK, body)
    assert isinstance(page, RecordPage)
    assert page.keys == [1, 2]
    assert page[0] == stock(1)
    with pytest.raises(AkinonBadResponse, match=r"record 1 \(key 2\) of a stock page"):
        page[1]


def test_a_changed_record_with_bad_text_in_a_skipped_field_is_still_published() -> None:
    stored = {2: Stored(1, _stored_form(Resource.STOCK, stock(2)))}
    page = decode_page(Resource.STOCK, _with_bad_text_in_a_skipped_field([stock(2, stock=3)]))
    (change,) = diff_page(as_page(Resource.STOCK, page), StoredPage(stored)).changes
    assert (change.key, change.sequence, change.content["stock"]) == (2, 2, 3)


def test_a_rejected_record_is_reported_whole_as_it_came() -> None:
    # The typed pass takes any date text; the model refuses this one.
    record = stock(1, created_date="yesterday", note="kept in the report")
    page = decode_page(Resource.STOCK, _body(Resource.STOCK, [stock(2), record]))
    assert isinstance(page, RecordPage)
    (rejection,) = diff_page(as_page(Resource.STOCK, page), StoredPage({})).rejections
    assert rejection.key == 1 and rejection.reason.startswith("created_date: ")
    assert rejection.raw == record


def test_a_field_sent_twice_counts_last_as_in_orjson() -> None:
    # The stored version has stock 5; the record says 5, then 6: that is a change to 6.
    stored = {1: Stored(1, _stored_form(Resource.STOCK, stock(1, stock=5)))}
    body = _body(Resource.STOCK, [stock(1, stock=5)])
    body = body.replace(b'"stock": 5,', b'"stock": 5, "stock": 6,')
    page = decode_page(Resource.STOCK, body)
    assert isinstance(page, RecordPage)
    (change,) = diff_page(as_page(Resource.STOCK, page), StoredPage(stored)).changes
    assert change.content["stock"] == 6


def test_a_change_is_found_without_decoding_any_record_whole() -> None:
    records = [stock(key) for key in range(1, 6)]
    stored = {r["pk"]: Stored(1, _stored_form(Resource.STOCK, r)) for r in records}
    records[3] = stock(4, stock=11)
    page = decode_page(Resource.STOCK, _body(Resource.STOCK, records))
    (change,) = diff_page(as_page(Resource.STOCK, page), StoredPage(stored)).changes
    assert change.key == 4 and change.content["stock"] == 11
    assert page._raws is None and not page._decoded  # validated from its row


def test_a_change_with_extra_fields_is_validated_from_the_record_as_orjson_reads_it() -> None:
    # orjson reads an integer past 64 bits as a float, msgspec exactly: the dict way decides.
    record = stock(4, extra_field={"big": 2**70})
    page = decode_page(Resource.STOCK, _body(Resource.STOCK, [record]))
    (change,) = diff_page(as_page(Resource.STOCK, page), StoredPage({})).changes
    assert change.content["extra_field"] == {"big": float(2**70)}
    assert page._decoded.keys() == {0}


# ---------------------------------------------------------------------------- agreement

_ODD_VALUES: list[Any] = [
    0,
    -1,
    2**53 + 1,
    2**63 - 1,
    2**64 - 1,
    2**70,
    0.1,
    -0.0,
    1e100,
    1.5e-7,
    "",
    "é ş \u0131 漢字 🎈",
    'quote " backslash \\ slash / tab \t',
    "\u2028\u2029\x7f",
    None,
    True,
    [],
    {},
    {"b": 1, "a": [1, {"d": None, "c": "x"}]},
]


def _field_value(rng: random.Random, resource: Resource, name: str) -> Any:
    # Mostly values the model takes, now and then one it rejects or coerces.
    if rng.random() < 0.15:
        return rng.choice(_ODD_VALUES)
    if name == "extra_field":
        return {rng.choice("abcz"): rng.choice(_ODD_VALUES) for _ in range(rng.randint(0, 3))}
    if name in ("unit_type", "currency_type", "price_type"):
        return rng.choice(["qty", "kg", "try", "usd", "default", "İ"])
    if name in ("retail_price", "tax_rate", "price", "discount_percentage", "adjusted_price"):
        return rng.choice(["1.00", "119.90", "0", "12", None, "-3.5", "abc", "1e3"])
    return rng.choice([1, 2, 3, None, 10**12])


def _random_record(rng: random.Random, resource: Resource, key: int) -> Any:
    if rng.random() < 0.02:
        return rng.choice([None, 5, "record", [key]])
    record = FACTORIES[resource](key)
    for name in rng.sample(CONTENT_FIELDS[resource][1:], rng.randint(0, 3)):
        if rng.random() < 0.1:
            del record[name]
        else:
            record[name] = _field_value(rng, resource, name)
    if rng.random() < 0.03:
        record[resource.key_field] = rng.choice(["7", 7.0, None, 2**64, True])
    if rng.random() < 0.03:
        record["modified_date"] = rng.choice([None, 1, "2020-01-01T00:00:00Z", "soon"])
    if rng.random() < 0.05:
        record["created_date"] = rng.choice([None, 1, "yesterday", "2020-01-01", msgspec.UNSET])
    if rng.random() < 0.05:
        record["note"] = rng.choice(_ODD_VALUES)  # a field no model reads
    return {name: value for name, value in record.items() if value is not msgspec.UNSET}


def _random_state(rng: random.Random, resource: Resource, keys: list[int]) -> dict[int, Stored]:
    stored = {}
    for key in keys:
        if rng.random() < 0.2:
            continue  # never seen
        for _ in range(20):  # a valid earlier version
            try:
                # As it would have come over the wire (an integer past 64 bits is a float).
                earlier = orjson.loads(json.dumps(_random_record(rng, resource, key)))
                stored[key] = Stored(rng.randint(1, 9), _stored_form(resource, earlier))
                break
            except ValidationError:
                continue
    return stored


@pytest.mark.parametrize("resource", list(Resource))
def test_random_pages_diff_the_same_whichever_way_they_were_decoded(resource: Resource) -> None:
    rng = random.Random(f"pages-{resource.value}")
    typed = 0
    for _ in range(400):
        keys = rng.sample(range(1, 30), rng.randint(1, 8))
        records = [
            _random_record(rng, resource, key) if rng.random() < 0.5 else FACTORIES[resource](key)
            for key in keys
        ]
        state = _random_state(rng, resource, keys)
        for key in rng.sample(sorted(state), rng.randint(0, len(state))):
            # Some records are exactly what was stored: the fast path must settle them.
            records[keys.index(key)] = FACTORIES[resource](key)
            state[key] = Stored(2, _stored_form(resource, FACTORIES[resource](key)))
        body = _body(resource, records)
        fast = _records(decode_page(resource, body))
        typed += isinstance(fast, RecordPage)
        plain = _records(orjson.loads(body))
        assert _outcome(diff_page(as_page(resource, fast), StoredPage(dict(state)))) == _outcome(
            diff_page(as_page(resource, plain), StoredPage(dict(state)))
        ), body
    assert typed >= 100  # the typed pass was really exercised, not only the fallback
