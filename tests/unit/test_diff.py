from __future__ import annotations

from typing import Any

import pytest

from publisher.diff import Rejection, Stored, StoredPage, diff_page, unreported
from publisher.fingerprint import record_canonical
from publisher.pages import page_keys
from publisher.records import PriceRecord, Resource, StockRecord
from tests.factories import as_page, price, stock


def _stored(raw: dict[str, Any], sequence: int = 1) -> Stored:
    return Stored(sequence, record_canonical(StockRecord.model_validate(raw))[0])


def test_first_sight_creates_every_record_at_sequence_one() -> None:
    diff = diff_page(as_page(Resource.STOCK, [stock(1), stock(2)]), {})
    assert [(c.key, c.operation, c.sequence, c.before) for c in diff.changes] == [
        (1, "created", 1, None),
        (2, "created", 1, None),
    ]
    assert diff.seen == 2
    assert diff.unchanged == 0


def test_unchanged_and_touched_records_are_not_changes() -> None:
    stored = {1: _stored(stock(1)), 2: _stored(stock(2))}
    touched = stock(2, modified_date="2031-01-01T00:00:00Z")
    diff = diff_page(as_page(Resource.STOCK, [stock(1), touched]), stored)
    assert diff.changes == []
    assert diff.unchanged == 2


def test_a_different_spelling_of_the_same_value_is_not_a_change() -> None:
    stored = {1: _stored(stock(1, stock=10))}
    diff = diff_page(as_page(Resource.STOCK, [stock(1, stock="10")]), stored)
    assert diff.changes == []
    assert diff.unchanged == 1


def test_a_real_change_carries_before_and_the_next_sequence() -> None:
    stored = {1: _stored(stock(1, stock=10), sequence=4)}
    diff = diff_page(as_page(Resource.STOCK, [stock(1, stock=3)]), stored)
    (change,) = diff.changes
    assert change.operation == "updated"
    assert change.sequence == 5
    assert change.before == stored[1].canonical
    assert change.content["stock"] == 3
    assert change.after.startswith(b'[1,1001,"qty",3,')  # the key, then the content


def test_a_price_is_compared_under_its_own_key_when_the_page_mixes_id_and_pk() -> None:
    # Record 1 now holds what record 2 holds; it also carries a `pk` of 2, and record 2
    # comes keyed by `pk` only. Record 1 has changed and must not pass for record 2.
    def form(raw: dict[str, Any]) -> bytes:
        return record_canonical(PriceRecord.model_validate(raw))[0]

    stored = {1: Stored(3, form(price(1, price="10.00"))), 2: Stored(1, form(price(2)))}
    by_pk = price(2)
    by_pk["pk"] = by_pk.pop("id")
    page = [by_pk, {**price(1, product=price(2)["product"]), "pk": 2}]
    diff = diff_page(as_page(Resource.PRICE, page), stored)
    assert [(c.key, c.operation, c.sequence) for c in diff.changes] == [(1, "updated", 4)]
    assert diff.unchanged == 1


@pytest.mark.parametrize("spelling", ["12", 12.0, True])
def test_a_key_that_is_not_a_json_integer_is_rejected_not_restarted(spelling: object) -> None:
    # Taken as 12, it would be "created" at sequence 1 over record 12's history.
    diff = diff_page(
        as_page(Resource.STOCK, [{**stock(12), "pk": spelling}]), {12: _stored(stock(12), 5)}
    )
    assert diff.changes == []
    (rejection,) = diff.rejections
    assert rejection.key is None
    assert rejection.reason.startswith("pk: the key must be a JSON integer")


def test_a_price_with_a_null_id_is_not_filed_under_its_pk() -> None:
    # The model reads `id` (present, null) and rejects it; `pk` may be another record's key.
    diff = diff_page(as_page(Resource.PRICE, [{**price(1), "id": None, "pk": 2}]), {})
    (rejection,) = diff.rejections
    assert rejection.key is None
    assert rejection.reason.startswith("id: ")


def test_unchanged_records_are_never_validated_even_beside_records_without_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unchanged = [stock(k) for k in range(1, 51)]
    stored = {k: _stored(raw) for k, raw in enumerate(unchanged, start=1)}
    validated: list[object] = []
    original = StockRecord.model_validate

    def counting(raw: object) -> StockRecord:
        validated.append(raw)
        return original(raw)

    monkeypatch.setattr(StockRecord, "model_validate", counting)
    page = [*unchanged, {"stock": 1}, "not a record", stock(60)]
    diff = diff_page(as_page(Resource.STOCK, page), stored)
    assert validated == page[50:]  # the two keyless records and the new one, nothing else
    assert (diff.unchanged, len(diff.rejections), len(diff.changes)) == (50, 2, 1)


def test_an_invalid_record_is_rejected_alone() -> None:
    page = [stock(1), stock(2, stock="many"), stock(3), "not a record", {"stock": 1}]
    diff = diff_page(as_page(Resource.STOCK, page), {})
    assert [c.key for c in diff.changes] == [1, 3]
    assert [r.key for r in diff.rejections] == [2, None, None]
    assert "stock" in diff.rejections[0].reason
    assert "'many'" in diff.rejections[0].reason


def test_a_key_repeated_within_a_page_compares_with_its_newer_self() -> None:
    diff = diff_page(
        as_page(Resource.STOCK, [stock(1, stock=1), stock(1, stock=2), stock(1, stock=2)]), {}
    )
    assert [(c.sequence, c.operation) for c in diff.changes] == [(1, "created"), (2, "updated")]
    assert diff.unchanged == 1


def test_price_records_diff_on_decimal_text() -> None:
    first = diff_page(as_page(Resource.PRICE, [price(1)]), {})
    stored = {1: Stored(1, first.changes[0].after)}
    assert diff_page(as_page(Resource.PRICE, [price(1, price="119.90")]), stored).changes == []
    changed = diff_page(as_page(Resource.PRICE, [price(1, price="119.91")]), stored)
    assert [c.key for c in changed.changes] == [1]


def test_page_keys_follow_the_page_with_none_for_keyless_records() -> None:
    page = [stock(3), stock(1), stock(3), {"x": 1}, []]
    assert page_keys(Resource.STOCK, page) == [3, 1, 3, None, None]
    assert page_keys(Resource.STOCK, [stock(True)]) == [None]  # a bool is not a key


def test_a_rejection_is_reported_once_per_distinct_content() -> None:
    old = Rejection(1, "bad", {"pk": 1}, "d1")
    new = Rejection(2, "bad", {"pk": 2}, "d2")
    keyless = Rejection(None, "bad", "x", "d3")
    assert unreported([old, new, keyless], {1: "d1", 2: "older"}) == [new, keyless]


def test_a_repeated_key_is_compared_in_page_order_even_when_a_copy_is_stored() -> None:
    stored = {1: _stored(stock(1, stock=10), sequence=3)}
    page = [stock(1, stock=2), stock(1, stock=10)]
    diff = diff_page(as_page(Resource.STOCK, page), stored)
    assert [(c.sequence, c.content["stock"]) for c in diff.changes] == [(4, 2), (5, 10)]


def test_an_overlaid_version_replaces_the_loaded_one() -> None:
    loaded = StoredPage({1: _stored(stock(1, stock=10), sequence=3)})
    loaded.overlay({1: _stored(stock(1, stock=4), sequence=4)})  # not committed yet
    back = diff_page(as_page(Resource.STOCK, [stock(1, stock=10)]), loaded)
    assert [(c.sequence, c.operation) for c in back.changes] == [(5, "updated")]
    same = diff_page(as_page(Resource.STOCK, [stock(1, stock=4)]), loaded)
    assert (same.changes, same.unchanged) == ([], 1)


def test_a_form_of_another_key_never_counts_as_unchanged() -> None:
    # Records 1 and 2 with the same content: their forms differ by the key they start with.
    twin = {"product": 5}
    loaded = StoredPage({1: _stored(stock(1, **twin))})
    diff = diff_page(as_page(Resource.STOCK, [stock(2, **twin)]), loaded)
    assert [(c.key, c.operation) for c in diff.changes] == [(2, "created")]
