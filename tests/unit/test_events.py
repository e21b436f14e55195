from __future__ import annotations

from datetime import UTC, datetime

import orjson

from publisher.diff import Stored, diff_page
from publisher.events import PriceChanged, RecordRejected, StockChanged, parse_event
from publisher.outgoing import EventContext, change_event, rejection_event, source_uri
from publisher.records import Resource
from tests.factories import as_page, price, stock

CTX = EventContext(5, Resource.STOCK, "https://omni.example/api/v1/channel/5", datetime.now(UTC))


def test_first_change_event_is_a_cloudevent_with_null_before() -> None:
    (change,) = diff_page(as_page(Resource.STOCK, [stock(1, stock=4)]), {}).changes
    event = change_event(CTX, change)
    parsed = parse_event(event.body)
    assert isinstance(parsed, StockChanged)
    assert parsed.specversion == "1.0"
    assert parsed.type == "stock.changed"
    assert parsed.subject == "1"
    assert parsed.time == datetime(2025, 12, 1, 14, 18, 51, 343000, tzinfo=UTC)
    assert parsed.data.before is None
    assert parsed.data.after.stock == 4
    assert parsed.data.operation == "created"
    assert parsed.data.sequence == 1
    assert event.exchange == "akinon.stock"
    assert event.routing_key == "stock.changed.5"


def test_update_event_lists_exactly_the_changed_fields() -> None:
    (first,) = diff_page(as_page(Resource.STOCK, [stock(1)]), {}).changes
    stored = {1: Stored(first.sequence, first.after)}
    (change,) = diff_page(
        as_page(Resource.STOCK, [stock(1, stock=2, adjusted_stock=2)]), stored
    ).changes
    data = orjson.loads(change_event(CTX, change).body)["data"]
    assert data["changed_fields"] == ["stock", "adjusted_stock"]
    assert data["before"]["stock"] == 10
    assert data["after"]["stock"] == 2
    assert data["sequence"] == 2


def test_event_id_is_the_same_on_republish_and_new_for_a_return_to_old_content() -> None:
    (a1,) = diff_page(as_page(Resource.STOCK, [stock(1, stock=1)]), {}).changes
    (again,) = diff_page(as_page(Resource.STOCK, [stock(1, stock=1)]), {}).changes
    assert change_event(CTX, a1).id == change_event(CTX, again).id
    (b,) = diff_page(as_page(Resource.STOCK, [stock(1, stock=2)]), {1: Stored(1, a1.after)}).changes
    (a2,) = diff_page(as_page(Resource.STOCK, [stock(1, stock=1)]), {1: Stored(2, b.after)}).changes
    ids = {change_event(CTX, c).id for c in (a1, b, a2)}
    assert len(ids) == 3


def test_event_id_is_new_for_the_same_sequence_and_content_at_another_date() -> None:
    # After the state is lost sequences start again at 1: a record that returns to content
    # it had at sequence 1 must not get that old event's id (consumers deduplicate by id).
    (first,) = diff_page(as_page(Resource.STOCK, [stock(1, stock=1)]), {}).changes
    later = stock(1, stock=1, modified_date="2025-12-02T09:00:00.000001Z")
    (again,) = diff_page(as_page(Resource.STOCK, [later]), {}).changes
    assert (first.sequence, first.after) == (again.sequence, again.after)
    assert change_event(CTX, first).id != change_event(CTX, again).id


def test_price_event_carries_decimal_strings() -> None:
    ctx = EventContext(5, Resource.PRICE, CTX.source, CTX.observed_at)
    (change,) = diff_page(as_page(Resource.PRICE, [price(1, price="645670668.11")]), {}).changes
    body = change_event(ctx, change).body
    assert b'"price":"645670668.11"' in body
    parsed = parse_event(body)
    assert isinstance(parsed, PriceChanged)
    assert str(parsed.data.after.price) == "645670668.11"


def test_rejection_event_names_the_record_and_the_reason() -> None:
    (rejection,) = diff_page(as_page(Resource.STOCK, [stock(9, stock="x")]), {}).rejections
    event = rejection_event(CTX, rejection)
    parsed = parse_event(event.body)
    assert isinstance(parsed, RecordRejected)
    assert parsed.subject == "9"
    assert "stock" in parsed.data.reason
    assert parsed.data.raw["stock"] == "x"
    assert event.exchange == "akinon.rejected"
    assert event.routing_key == "stock.rejected.5"
    assert rejection_event(CTX, rejection).id == event.id


def test_source_never_carries_credentials() -> None:
    assert source_uri("https://user:secret@omni.example:8443/", 3) == (
        "https://omni.example:8443/api/v1/channel/3"
    )
