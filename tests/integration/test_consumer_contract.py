"""Real events through the real RabbitMQ validate against the committed schema files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from publisher.contract import ASYNCAPI_FILE, schema_path
from publisher.deletes import reload_parts
from publisher.diff import Deletion, Stored, diff_page
from publisher.events import MESSAGE_CONTENT_TYPE, EventType
from publisher.outgoing import (
    EventContext,
    OutgoingEvent,
    change_event,
    deletion_event,
    heartbeat_event,
    rejection_event,
    reload_events,
)
from publisher.publish import KombuPublisher
from publisher.records import Resource
from publisher.topology import ROUTES
from tests.factories import as_page, price, stock
from tests.integration.collect import Collector

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _events(channel_id: int) -> list[OutgoingEvent]:
    """Stock and price events of every shape: created, updated, null and decimal, rejected."""
    now = datetime.now(UTC)
    source = f"https://omni.example/api/v1/channel/{channel_id}"
    stock_ctx = EventContext(channel_id, Resource.STOCK, source, now)
    price_ctx = EventContext(channel_id, Resource.PRICE, source, now)
    stocks = diff_page(
        as_page(Resource.STOCK, [stock(1), stock(2, stock=0), stock(3, stock="x")]), {}
    )
    prices = diff_page(
        as_page(
            Resource.PRICE,
            [
                price(1, price="645670668.11"),
                price(2, retail_price=None, discount_percentage=None, tax_rate=None),
                price(3, price=12),  # a number on Akinon's side still becomes a decimal string
                price(4, price="free"),
            ],
        ),
        {},
    )
    first = stocks.changes[0]
    (update,) = diff_page(
        as_page(Resource.STOCK, [stock(1, stock=4, extra_field={"aisle": "B2"})]),
        {first.key: Stored(first.sequence, first.after)},
    ).changes
    reload_ctx = EventContext(channel_id, Resource.PRICE, source, now, reload=True)
    snapshot_ctx = EventContext(channel_id, Resource.STOCK, source, now, snapshot_id="s-1")
    gone = [Deletion(c.key, c.sequence + 1, c.after) for c in prices.changes[:2]]
    beat = {
        "interval_seconds": None,
        "complete_scan": True,
        "watermark": None,
        "last_complete_scan_at": now.isoformat(),
        "seen": 4,
        "published": 3,
        "deleted": 0,
        "rejected": 1,
    }
    return [
        *(change_event(stock_ctx, c) for c in [*stocks.changes, update]),
        *(change_event(price_ctx, c) for c in prices.changes),
        change_event(reload_ctx, prices.changes[0]),
        change_event(snapshot_ctx, update),
        deletion_event(stock_ctx, Deletion(update.key, update.sequence + 1, update.after), now),
        *(deletion_event(price_ctx, d, now) for d in gone),
        *(rejection_event(stock_ctx, r) for r in stocks.rejections),
        *(rejection_event(price_ctx, r) for r in prices.rejections),
        heartbeat_event(stock_ctx, now, beat),
        *reload_events(stock_ctx, now, reload_parts(iter([1, 2, 4]), size=2)),
        *reload_events(price_ctx, now, reload_parts(iter([]))),
    ]


def _validators() -> dict[str, Draft202012Validator]:
    return {
        kind.value: Draft202012Validator(
            orjson.loads((SCHEMAS / schema_path(kind)).read_bytes()),
            format_checker=FormatChecker(),
        )
        for kind in EventType
    }


def _header_validators() -> dict[str, Draft202012Validator]:
    messages = yaml.safe_load((SCHEMAS / ASYNCAPI_FILE).read_text())["components"]["messages"]
    return {
        route.kind.value: Draft202012Validator(messages[route.channel]["headers"])
        for route in ROUTES
    }


def test_every_published_event_validates_against_its_schema_file(
    amqp_url: str, channel_id: int
) -> None:
    events = _events(channel_id)
    with Collector(amqp_url, f"*.*.{channel_id}") as collector:
        publisher = KombuPublisher(amqp_url)
        publisher.publish(events)
        publisher.close()
        bodies = collector.collect(len(events))
        messages = list(collector.messages)
    assert len(bodies) == len(events)
    assert {b["type"] for b in bodies} == {kind.value for kind in EventType}
    validators, headers = _validators(), _header_validators()
    for body, message in zip(bodies, messages, strict=True):
        errors = [
            f"{list(e.path)}: {e.message}" for e in validators[body["type"]].iter_errors(body)
        ]
        assert errors == [], body
        assert list(headers[body["type"]].iter_errors(message.headers)) == []
        assert message.properties["message_id"] == body["id"]
        assert message.properties["content_type"] == MESSAGE_CONTENT_TYPE
    prices = {b["data"]["key"]: b["data"]["after"] for b in bodies if b["type"] == "price.changed"}
    assert prices[1]["price"] == "645670668.11"
    assert prices[2]["retail_price"] is None
    assert prices[3]["price"] == "12"


def test_a_body_that_breaks_the_contract_is_caught(amqp_url: str, channel_id: int) -> None:
    validators = _validators()
    body: dict[str, Any] = orjson.loads(_events(channel_id)[4].body)  # a price event
    assert body["type"] == "price.changed"
    assert validators["price.changed"].is_valid(body)
    body["data"]["after"]["price"] = 645670668.11
    assert not validators["price.changed"].is_valid(body)
