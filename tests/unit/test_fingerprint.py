from __future__ import annotations

from decimal import Decimal

import pytest

from publisher.fingerprint import content_of, page_canonicals, raw_canonical, record_canonical
from publisher.records import PriceRecord, Resource, StockRecord
from tests.factories import as_page, price, stock


@pytest.mark.parametrize(
    ("resource", "raw"),
    [
        (Resource.STOCK, stock(1)),
        (Resource.STOCK, stock(2, extra_field={"b": [1, 2], "a": {"z": 1, "y": None}})),
        (Resource.PRICE, price(1)),
        (Resource.PRICE, price(2, retail_price=None, discount_percentage=None)),
    ],
)
def test_fast_path_matches_the_stored_form_of_a_valid_record(
    resource: Resource, raw: dict[str, object]
) -> None:
    model = StockRecord if resource is Resource.STOCK else PriceRecord
    canonical, content = record_canonical(model.model_validate(raw))
    assert raw_canonical(resource, raw) == canonical
    assert content_of(resource, canonical) == content
    assert page_canonicals(resource, [raw, raw]) == [canonical, canonical]


def test_the_canonical_form_starts_with_the_key() -> None:
    assert raw_canonical(Resource.STOCK, stock(7, stock=3)) == (b'[7,1007,"qty",3,0,{},7,null,10]')


def test_a_page_with_an_odd_record_still_gets_every_other_form() -> None:
    page = [stock(1), "not a record", {"pk": 2}, stock(3)]
    forms = page_canonicals(Resource.STOCK, page)
    expected = [raw_canonical(Resource.STOCK, stock(n)) for n in (1, 3)]
    assert forms == [expected[0], None, None, expected[1]]
    assert expected[1] is not None and expected[1].startswith(b"[3,")


def test_dates_are_not_content() -> None:
    touched = stock(1, modified_date="2030-01-01T00:00:00Z", created_date=None)
    assert raw_canonical(Resource.STOCK, stock(1)) == raw_canonical(Resource.STOCK, touched)


def test_nested_key_order_does_not_matter_but_values_do() -> None:
    one = stock(1, extra_field={"a": 1, "b": 2})
    same = stock(1, extra_field={"b": 2, "a": 1})
    other = stock(1, extra_field={"a": 1, "b": 3})
    assert raw_canonical(Resource.STOCK, one) == raw_canonical(Resource.STOCK, same)
    assert raw_canonical(Resource.STOCK, one) != raw_canonical(Resource.STOCK, other)


def test_money_keeps_its_exact_decimal_text() -> None:
    record = PriceRecord.model_validate(price(1, price="645670668.11"))
    assert record.price == Decimal("645670668.11")
    canonical, content = record_canonical(record)
    assert content["price"] == "645670668.11"
    assert b'"645670668.11"' in canonical
    assert content["retail_price"] == "129.90"


def test_price_key_may_arrive_as_pk() -> None:
    raw = price(9)
    raw["pk"] = raw.pop("id")
    assert raw_canonical(Resource.PRICE, raw) == raw_canonical(Resource.PRICE, price(9))
    assert page_canonicals(Resource.PRICE, [raw]) == [raw_canonical(Resource.PRICE, price(9))]
    assert PriceRecord.model_validate(raw).key == 9


def test_a_price_holding_both_id_and_pk_is_formed_under_its_id_in_a_pk_keyed_page() -> None:
    by_pk = price(2)
    by_pk["pk"] = by_pk.pop("id")
    both = {**price(1), "pk": 2}
    forms = page_canonicals(Resource.PRICE, [by_pk, both])
    assert forms == [
        raw_canonical(Resource.PRICE, price(2)),
        raw_canonical(Resource.PRICE, price(1)),
    ]
    assert forms[1] is not None and forms[1].startswith(b"[1,")


def test_a_decimal_sent_as_a_number_takes_the_slow_path_and_is_still_unchanged() -> None:
    from publisher.diff import Stored, diff_page

    as_text = price(3, price="120", tax_rate="18", adjusted_price="99.5")
    as_numbers = price(3, price=120, tax_rate=18, adjusted_price=99.5)
    canonical, _ = record_canonical(PriceRecord.model_validate(as_text))
    assert raw_canonical(Resource.PRICE, as_numbers) != canonical  # no fast-path match
    assert record_canonical(PriceRecord.model_validate(as_numbers))[0] == canonical
    diff = diff_page(as_page(Resource.PRICE, [as_numbers]), {3: Stored(1, canonical)})
    assert (diff.unchanged, diff.changes) == (1, [])
