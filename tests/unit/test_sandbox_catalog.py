"""The sandbox catalog on its own: seeded records, changes, filters and the work queue."""

from __future__ import annotations

import random
import re
import threading
from decimal import Decimal
from typing import Any

import orjson
import pytest

from publisher.records import MODELS, Endpoint, Resource
from publisher.sandbox import DROP, Catalog, Faults, Filters, InvalidError, NotFoundError, Paging
from publisher.sandbox.catalog import Page
from publisher.sandbox.dates import MonotonicClock, format_us, parse_us
from publisher.sandbox.fields import FIELD_ORDER
from publisher.sandbox.shapes import Shape, ShapeConfig

DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
MONEY = re.compile(r"^\d+\.\d{2}$")
MONEY_FIELDS = ("retail_price", "tax_rate", "price", "discount_percentage", "adjusted_price")
STOCK, PRICE = Resource.STOCK, Resource.PRICE


@pytest.fixture
def catalog() -> Catalog:
    # A frozen wall clock: only the monotonic counter can order changes.
    return Catalog.seeded(channels=[1, 2], size=20, seed=7, clock=lambda: 0)


def _commit(
    catalog: Catalog, channel: int, resource: Resource, records: list[dict[str, Any]]
) -> int:
    batch = catalog.create_batch(channel)
    objects = [{"pk": r[resource.key_field], "version_date": r["modified_date"]} for r in records]
    catalog.update_batch(
        channel,
        batch["pk"],
        {"status": "commit", "content_type": resource.content_type, "objects": objects},
    )
    return int(batch["pk"])


def _page_keys(resource: Resource, page: Page) -> list[int]:
    return [orjson.loads(item)[resource.key_field] for item in page.items]


# -- seeding ------------------------------------------------------------------------------


def test_seeding_is_reproducible_and_depends_on_the_seed() -> None:
    first = Catalog.seeded(channels=[1, 2], size=50, seed=42)
    again = Catalog.seeded(channels=[2, 1], size=50, seed=42)
    other = Catalog.seeded(channels=[1, 2], size=50, seed=43)
    for resource in Resource:
        assert first.records(1, resource) == again.records(1, resource)
        assert first.records(1, resource) != other.records(1, resource)


def test_seeded_records_have_akinons_fields_in_order_and_keys_per_channel() -> None:
    catalog = Catalog.seeded(channels=[1, 2], size=30, seed=1)
    for channel in (1, 2):
        for resource in Resource:
            records = catalog.records(channel, resource)
            keys = [r[resource.key_field] for r in records]
            start = channel * 1_000_000 + 1
            assert keys == list(range(start, start + 30))
            assert all(tuple(r) == FIELD_ORDER[resource] for r in records)
            list_field = "stock_list" if resource is STOCK else "price_list"
            assert {r[list_field] for r in records} == {catalog.list_id(channel, resource)}
    assert catalog.list_id(1, STOCK) != catalog.list_id(2, STOCK)


def test_money_is_two_place_strings_dates_have_microseconds_and_models_accept_all() -> None:
    catalog = Catalog.seeded(channels=[1], size=200, seed=3)
    prices = catalog.records(1, PRICE)
    assert any(p["retail_price"] is None for p in prices)
    for record in prices:
        for name in MONEY_FIELDS:
            value = record[name]
            assert value is None or MONEY.match(value), (name, value)
        assert record["price"] == record["adjusted_price"]
    for resource in Resource:
        for record in catalog.records(1, resource):
            assert DATE.match(record["created_date"])
            assert DATE.match(record["modified_date"])
            MODELS[resource].model_validate(record)  # the publisher's own parser takes it


def test_stock_records_hold_integers() -> None:
    catalog = Catalog.seeded(channels=[1], size=50, seed=3)
    for record in catalog.records(1, STOCK):
        assert isinstance(record["stock"], int)
        assert record["adjusted_stock"] == max(
            record["stock"] - record["sold_quantity_unreported"], 0
        )


# -- changes ------------------------------------------------------------------------------


def test_every_change_moves_modified_date_strictly_forward_even_in_one_microsecond(
    catalog: Catalog,
) -> None:
    seen = [catalog.records(1, STOCK)[0]["modified_date"]]
    for quantity in range(5):
        seen.append(catalog.set_stock(1, 1_000_001, stock=quantity)["modified_date"])
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)


def test_monotonic_clock_never_repeats_or_goes_back() -> None:
    readings = iter([100, 100, 50, 200])
    clock = MonotonicClock(lambda: next(readings))
    assert [clock.tick() for _ in range(4)] == [100, 101, 102, 200]


def test_set_stock_changes_only_the_given_fields(catalog: Catalog) -> None:
    before = catalog.get(1, STOCK, 1_000_003)
    assert before is not None
    after = catalog.set_stock(1, 1_000_003, stock=before["stock"] + 5)
    assert after["stock"] == before["stock"] + 5
    assert after["product"] == before["product"]
    assert after["created_date"] == before["created_date"]
    assert after["modified_date"] > before["modified_date"]
    assert catalog.get(1, STOCK, 1_000_003) == after


def test_set_creates_a_missing_record_with_defaults(catalog: Catalog) -> None:
    created = catalog.set_price(2, 2_999_999, price="10", retail_price=Decimal("12.5"))
    assert created["id"] == 2_999_999
    assert created["price"] == "10.00"
    assert created["retail_price"] == "12.50"
    assert created["price_list"] == catalog.list_id(2, PRICE)
    assert created["created_date"] == created["modified_date"]
    assert catalog.records(2, PRICE)[-1] == created
    assert catalog.count(2, PRICE) == 21


def test_derived_fields_follow_their_base_unless_given(catalog: Catalog) -> None:
    repriced = catalog.set_price(1, 1_000_001, retail_price="200.00", price="150.00")
    assert (repriced["adjusted_price"], repriced["discount_percentage"]) == ("150.00", "25.00")
    explicit = catalog.set_price(1, 1_000_001, price="120.00", adjusted_price="100.00")
    assert (explicit["adjusted_price"], explicit["discount_percentage"]) == ("100.00", "25.00")
    restocked = catalog.set_stock(1, 1_000_001, stock=10, sold_quantity_unreported=3)
    assert restocked["adjusted_stock"] == 7


def test_floats_are_stored_as_exact_decimal_strings(catalog: Catalog) -> None:
    assert catalog.set_price(1, 1_000_001, price=0.1)["price"] == "0.10"


@pytest.mark.parametrize(
    ("values", "field"),
    [({"stock": "12"}, "stock"), ({"stok": 1}, "stok"), ({"stock": True}, "stock")],
)
def test_set_refuses_unknown_fields_and_wrong_types(
    catalog: Catalog, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidError) as caught:
        catalog.set_stock(1, 1_000_001, **values)
    assert isinstance(caught.value.detail, dict)
    assert field in caught.value.detail


def test_changes_to_an_unknown_channel_are_not_found(catalog: Catalog) -> None:
    with pytest.raises(NotFoundError):
        catalog.set_stock(99, 1, stock=1)
    with pytest.raises(NotFoundError):
        catalog.channel(99)


def test_delete_removes_the_record_once(catalog: Catalog) -> None:
    assert catalog.delete(1, PRICE, 1_000_005) is True
    assert catalog.delete(1, PRICE, 1_000_005) is False
    assert 1_000_005 not in [r["id"] for r in catalog.records(1, PRICE)]
    assert catalog.get(1, PRICE, 1_000_005) is None


def test_churn_changes_the_amount_of_each_returned_record(catalog: Catalog) -> None:
    before = {
        (channel, resource): {r[resource.key_field]: r for r in catalog.records(channel, resource)}
        for channel in (1, 2)
        for resource in Resource
    }
    changed = catalog.churn(10, random.Random(5))
    assert len(changed) == 10
    for channel, resource, pk in changed:
        old = before[(channel, resource)][pk]
        new = catalog.get(channel, resource, pk)
        assert new is not None
        assert new["modified_date"] > old["modified_date"]
        amount = "stock" if resource is STOCK else "price"
        if sum(1 for c in changed if c == (channel, resource, pk)) == 1:
            assert new[amount] != old[amount]
    assert catalog.churn(3, random.Random(5)) == changed[:3]  # the same seed picks the same


def test_mark_malformed_serves_the_bad_value_until_the_field_is_set(catalog: Catalog) -> None:
    bad = catalog.mark_malformed(1, STOCK, 1_000_002, "stock", "abc")
    assert bad["stock"] == "abc"
    assert catalog.records(1, STOCK)[1]["stock"] == "abc"
    fixed = catalog.set_stock(1, 1_000_002, stock=4)
    assert fixed["stock"] == 4


def test_a_dropped_field_is_left_out_and_clear_restores_it(catalog: Catalog) -> None:
    dropped = catalog.drop_field(1, PRICE, 1_000_002, "price")
    assert "price" not in dropped
    assert catalog.mark_malformed(1, PRICE, 1_000_003, "product", DROP)["id"] == 1_000_003
    restored = catalog.clear_malformed(1, PRICE, 1_000_002)
    assert MONEY.match(restored["price"])


# -- paging and filters -------------------------------------------------------------------


def test_pages_follow_key_order_and_report_the_total(catalog: Catalog) -> None:
    first = catalog.page(1, STOCK, Endpoint.LIST, Filters(), Paging(page=1, limit=8))
    last = catalog.page(1, STOCK, Endpoint.LIST, Filters(), Paging(page=3, limit=8))
    assert (first.count, first.has_next, first.has_previous) == (20, True, False)
    assert _page_keys(STOCK, first) == list(range(1_000_001, 1_000_009))
    assert _page_keys(STOCK, last) == list(range(1_000_017, 1_000_021))
    assert (last.has_next, last.exists, last.last) == (False, True, 3)
    beyond = catalog.page(1, STOCK, Endpoint.LIST, Filters(), Paging(page=4, limit=8))
    assert not beyond.exists
    assert beyond.items == []


def test_paging_parameters_follow_drf() -> None:
    assert Paging.parse({}) == Paging(1, 10)
    assert Paging.parse({"page": ["3"], "limit": ["1000"]}) == Paging(3, 1000)
    assert Paging.parse({"limit": ["zero"]}).limit == 10
    for bad in ("0", "-1", "x"):
        with pytest.raises(NotFoundError):
            Paging.parse({"page": [bad]})


def test_modified_date_filters_select_later_changes(catalog: Catalog) -> None:
    cut = catalog.records(1, STOCK)[0]["modified_date"]
    later = max(r["modified_date"] for r in catalog.records(1, STOCK))
    changed = catalog.set_stock(1, 1_000_010, stock=1)
    newer = Filters.parse(STOCK, {"modified_date__gt": [later]})
    page = catalog.page(1, STOCK, Endpoint.LIST, newer, Paging(limit=100))
    assert _page_keys(STOCK, page) == [1_000_010]
    at_or_after = Filters.parse(STOCK, {"modified_date__gte": [changed["modified_date"]]})
    assert catalog.page(1, STOCK, Endpoint.LIST, at_or_after, Paging()).count == 1
    before = Filters.parse(STOCK, {"modified_date__lt": [cut]})
    expected = sum(1 for r in catalog.records(1, STOCK) if r["modified_date"] < cut)
    assert catalog.page(1, STOCK, Endpoint.LIST, before, Paging(limit=100)).count == expected


def test_key_product_and_list_filters(catalog: Catalog) -> None:
    keys = Filters.parse(PRICE, {"pk__in": ["1000003,1000001,42"]})
    page = catalog.page(1, PRICE, Endpoint.LIST, keys, Paging())
    assert _page_keys(PRICE, page) == [1_000_001, 1_000_003]
    product = catalog.records(1, PRICE)[4]["product"]
    by_product = Filters.parse(PRICE, {"product": [str(product)]})
    assert catalog.page(1, PRICE, Endpoint.LIST, by_product, Paging()).count == 1
    foreign_list = Filters.parse(STOCK, {"stock_list": [str(catalog.list_id(2, STOCK))]})
    assert catalog.page(1, STOCK, Endpoint.LIST, foreign_list, Paging()).count == 0
    euros = Filters.parse(PRICE, {"currency_type": ["eur"]})
    assert catalog.page(1, PRICE, Endpoint.LIST, euros, Paging()).count == 0
    catalog.set_price(1, 1_000_007, currency_type="eur")
    assert catalog.page(1, PRICE, Endpoint.LIST, euros, Paging()).count == 1


def test_unreadable_filter_values_are_refused_and_unknown_ones_ignored() -> None:
    with pytest.raises(InvalidError) as caught:
        Filters.parse(STOCK, {"modified_date__gt": ["yesterday"]})
    assert caught.value.body() == {
        "modified_date__gt": ["Enter a valid value for modified_date__gt."]
    }
    assert not Filters.parse(STOCK, {"colour": ["red"], "currency_type": ["try"]})


def test_unfiltered_queue_views_follow_membership_changes(catalog: Catalog) -> None:
    view = catalog.pending(1, STOCK, Endpoint.INSERTS)
    catalog.set_stock(1, view[0], stock=1)  # still an insert: the list is the same
    assert catalog.pending(1, STOCK, Endpoint.INSERTS) == view
    _commit(catalog, 1, STOCK, catalog.records(1, STOCK)[:1])
    assert catalog.pending(1, STOCK, Endpoint.INSERTS) == view[1:]
    catalog.set_stock(1, view[0], stock=2)
    assert catalog.pending(1, STOCK, Endpoint.INSERTS_OR_UPDATES) == view
    catalog.set_stock(1, 1_000_100, stock=2)
    assert catalog.pending(1, STOCK, Endpoint.INSERTS)[-1] == 1_000_100


def test_a_decoded_plus_in_an_offset_still_parses() -> None:
    expected = parse_us("2024-05-01T10:00:00+03:00")
    assert parse_us("2024-05-01T10:00:00 03:00") == expected
    assert format_us(expected) == "2024-05-01T07:00:00.000000Z"


# -- the work queue -----------------------------------------------------------------------


def test_committed_records_leave_inserts_and_changes_come_back_as_updates(
    catalog: Catalog,
) -> None:
    records = catalog.records(1, STOCK)[:5]
    _commit(catalog, 1, STOCK, records)
    inserts = catalog.pending(1, STOCK, Endpoint.INSERTS)
    assert len(inserts) == 15
    assert not set(inserts) & {r["pk"] for r in records}
    assert catalog.pending(1, STOCK, Endpoint.UPDATES) == []
    catalog.set_stock(1, records[2]["pk"], stock=77)
    assert catalog.pending(1, STOCK, Endpoint.UPDATES) == [records[2]["pk"]]
    assert records[2]["pk"] not in catalog.pending(1, STOCK, Endpoint.INSERTS)
    both = catalog.pending(1, STOCK, Endpoint.INSERTS_OR_UPDATES)
    assert both == sorted([*inserts, records[2]["pk"]])
    # Acknowledgement is per channel and resource.
    assert len(catalog.pending(2, STOCK, Endpoint.INSERTS)) == 20
    assert len(catalog.pending(1, PRICE, Endpoint.INSERTS)) == 20


def test_a_change_after_the_read_stays_pending_though_the_read_was_acknowledged(
    catalog: Catalog,
) -> None:
    read = catalog.records(1, PRICE)[:1]
    catalog.set_price(1, read[0]["id"], price="1.00")  # lands between read and commit
    _commit(catalog, 1, PRICE, read)
    assert catalog.pending(1, PRICE, Endpoint.UPDATES) == [read[0]["id"]]


def test_fail_gives_the_records_back(catalog: Catalog) -> None:
    records = catalog.records(1, STOCK)[:3]
    batch = _commit(catalog, 1, STOCK, records)
    catalog.update_batch(1, batch, {"status": "fail"})
    assert catalog.pending(1, STOCK, Endpoint.INSERTS)[:3] == [r["pk"] for r in records]
    assert catalog.acknowledgements(1, STOCK) == {}


def test_fail_restores_the_previous_acknowledgement(catalog: Catalog) -> None:
    first = catalog.records(1, STOCK)[:1]
    done = _commit(catalog, 1, STOCK, first)
    catalog.update_batch(1, done, {"status": "done"})
    changed = catalog.set_stock(1, first[0]["pk"], stock=3)
    failing = _commit(catalog, 1, STOCK, [changed])
    assert catalog.pending(1, STOCK, Endpoint.UPDATES) == []
    catalog.update_batch(1, failing, {"status": "fail"})
    assert catalog.pending(1, STOCK, Endpoint.UPDATES) == [first[0]["pk"]]
    assert catalog.acknowledgements(1, STOCK) == {first[0]["pk"]: first[0]["modified_date"]}


def test_only_one_batch_per_channel_and_content_type_may_be_in_commit(catalog: Catalog) -> None:
    records = catalog.records(1, STOCK)
    open_batch = _commit(catalog, 1, STOCK, records[:2])
    with pytest.raises(InvalidError, match="already in commit"):
        _commit(catalog, 1, STOCK, records[2:4])
    _commit(catalog, 1, PRICE, catalog.records(1, PRICE)[:1])  # other content type: fine
    _commit(catalog, 2, STOCK, catalog.records(2, STOCK)[:1])  # other channel: fine
    catalog.update_batch(1, open_batch, {"status": "sent_to_remote"})
    _commit(catalog, 1, STOCK, records[2:4])
    stock_batches = [
        (b["pk"] == open_batch, b["status"])
        for b in catalog.batches(open_only=True)
        if b["channel"] == 1 and b["content_type"] == "productstock"
    ]
    assert stock_batches == [(True, "sent_to_remote"), (False, "commit")]


@pytest.mark.parametrize(
    ("steps", "refused"),
    [
        ([], {"status": "done"}),
        ([], {"status": "commit"}),  # no content type
        ([], {"status": "finished"}),
        (["commit", "done"], {"status": "commit", "content_type": "productstock"}),
        (["commit", "fail"], {"status": "done"}),
        (["commit"], {"status": "commit", "content_type": "productstock"}),
    ],
)
def test_invalid_transitions_are_refused(
    catalog: Catalog, steps: list[str], refused: dict[str, Any]
) -> None:
    batch = catalog.create_batch(1)["pk"]
    for status in steps:
        body: dict[str, Any] = {"status": status, "content_type": "productstock", "objects": []}
        catalog.update_batch(1, batch, body)
    before = catalog.batch(1, batch)["status"]
    with pytest.raises(InvalidError):
        catalog.update_batch(1, batch, refused)
    assert catalog.batch(1, batch)["status"] == before


def test_commit_objects_need_a_valid_version_date(catalog: Catalog) -> None:
    batch = catalog.create_batch(1)["pk"]
    body = {"status": "commit", "content_type": "productstock", "objects": [{"pk": 1_000_001}]}
    with pytest.raises(InvalidError, match="version_date"):
        catalog.update_batch(1, batch, body)
    assert catalog.acknowledgements(1, STOCK) == {}


def test_done_keeps_remote_ids_and_the_committed_versions(catalog: Catalog) -> None:
    record = catalog.records(1, STOCK)[0]
    batch = _commit(catalog, 1, STOCK, [record])
    answer = catalog.update_batch(
        1, batch, {"status": "done", "objects": [{"pk": record["pk"], "remote_id": "R1"}]}
    )
    assert answer["status"] == "done"
    assert answer["objects"] == [
        {
            "pk": record["pk"],
            "version_date": record["modified_date"],
            "content_type": "productstock",
            "remote_id": "R1",
            "failed_reason_type": None,
        }
    ]


def test_batches_belong_to_their_channel(catalog: Catalog) -> None:
    batch = catalog.create_batch(1)
    assert batch["status"] == "initialized"
    assert re.match(r"^[0-9a-f-]{36}$", batch["local_batch_id"])
    with pytest.raises(NotFoundError):
        catalog.update_batch(2, batch["pk"], {"status": "fail"})
    with pytest.raises(NotFoundError):
        catalog.batch(1, 999)


def test_deleting_a_record_drops_it_from_the_queue_and_reseed_starts_over(
    catalog: Catalog,
) -> None:
    _commit(catalog, 1, STOCK, catalog.records(1, STOCK)[:2])
    catalog.delete(1, STOCK, 1_000_003)
    assert 1_000_003 not in catalog.pending(1, STOCK, Endpoint.INSERTS)
    catalog.reseed()
    assert len(catalog.pending(1, STOCK, Endpoint.INSERTS)) == 20
    assert catalog.batches() == []
    assert catalog.acknowledgements(1, STOCK) == {}


def test_state_counts_records_queue_and_open_batches(catalog: Catalog) -> None:
    _commit(catalog, 1, STOCK, catalog.records(1, STOCK)[:4])
    state = catalog.state()
    first = state["channels"][0]
    assert first["records"] == {"stock": 20, "price": 20}
    assert first["inserts"] == {"stock": 16, "price": 20}
    assert first["acknowledged"] == {"stock": 4, "price": 0}
    assert [b["status"] for b in state["batches"]["open"]] == ["commit"]


# -- faults and shapes --------------------------------------------------------------------


def test_fault_counters_are_consumed_one_request_at_a_time() -> None:
    faults = Faults(fail_next=2)
    assert [faults.take("fail_next") for _ in range(3)] == [True, True, False]
    assert faults.to_json()["fail_next"] == 0


def test_error_rate_is_reproducible_from_its_seed() -> None:
    def rolls() -> list[bool]:
        faults = Faults(error_rate=0.5, seed=9)
        return [faults.roll_error() for _ in range(40)]

    first = rolls()
    assert first == rolls()
    assert 5 < sum(first) < 35


@pytest.mark.parametrize(
    "body",
    [{"fail_nxt": 1}, {"fail_next": "1"}, {"error_rate": 2}, {"foreign_next": 1}, []],
)
def test_fault_settings_are_checked(body: Any) -> None:
    with pytest.raises(ValueError):
        Faults.from_json(body)


def test_faults_merge_keeps_other_settings() -> None:
    merged = Faults(latency_ms=5).merged({"rate_limit_next": 1})
    assert (merged.latency_ms, merged.rate_limit_next) == (5, 1)


def test_shapes_default_to_the_documentation_and_can_be_overridden() -> None:
    shapes = ShapeConfig()
    assert shapes.shape_for(STOCK, Endpoint.UPDATES) is Shape.ARRAY
    assert shapes.shape_for(STOCK, Endpoint.LIST) is Shape.PAGINATED
    assert shapes.shape_for(PRICE, Endpoint.UPDATES) is Shape.PAGINATED
    shapes.configure({"shape": "array", "overrides": {"price/list": "paginated"}})
    assert shapes.shape_for(PRICE, Endpoint.UPDATES) is Shape.ARRAY
    assert shapes.shape_for(PRICE, Endpoint.LIST) is Shape.PAGINATED
    with pytest.raises(ValueError):
        shapes.configure({"overrides": {"stock/everything": "array"}})
    assert shapes.shape_for(PRICE, Endpoint.LIST) is Shape.PAGINATED  # unchanged on error


# -- concurrency --------------------------------------------------------------------------


def test_pages_stay_whole_while_records_change() -> None:
    catalog = Catalog.seeded(channels=[1], size=300, seed=2)
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                page = catalog.page(1, STOCK, Endpoint.LIST, Filters(), Paging(limit=300))
                assert page.count == 300
                assert len([orjson.loads(item) for item in page.items]) == 300
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    changed = catalog.churn(3000, random.Random(1))
    stop.set()
    for reader in readers:
        reader.join()
    assert errors == []
    assert len(changed) == 3000
    dates = [r["modified_date"] for r in catalog.records(1, STOCK) + catalog.records(1, PRICE)]
    assert len(set(dates)) == len(dates)  # no two changes share a modified_date
