"""A hostile or broken event cannot poison the consumer kit (issue 17, item 5)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from publisher.consumer.rules import InvalidEvent, read_event
from publisher.consumer.subscription import delivery_attempt
from publisher.contract import example_events
from publisher.events import EventType


def _document(kind: EventType) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(example_events()[kind].body)
    return document


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        (EventType.STOCK_CHANGED, "sequence", -1),
        (EventType.STOCK_CHANGED, "sequence", 0),
        (EventType.STOCK_CHANGED, "sequence", 2**63),
        (EventType.STOCK_CHANGED, "key", 0),
        (EventType.PRICE_CHANGED, "channel_id", -3),
        (EventType.PRICE_CHANGED, "key", 2**63 + 5),
        (EventType.RECORD_REJECTED, "channel_id", 0),
    ],
)
def test_an_event_outside_the_contracts_bounds_is_invalid(
    kind: EventType, field: str, value: int
) -> None:
    document = _document(kind)
    document["data"][field] = value
    with pytest.raises(InvalidEvent, match=field):
        read_event(orjson.dumps(document))


def test_events_within_the_bounds_are_read() -> None:
    for kind in (EventType.STOCK_CHANGED, EventType.PRICE_CHANGED, EventType.RECORD_REJECTED):
        assert read_event(orjson.dumps(_document(kind))) is not None
    rejected = _document(EventType.RECORD_REJECTED)
    rejected["data"]["key"] = None  # a record without a key is still reported
    assert read_event(orjson.dumps(rejected)) is not None


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [
        ({"x-delivery-count": "abc"}, 1),
        ({"x-delivery-count": -4}, 1),
        ({"x-delivery-count": 2.0}, 3),
        ({"x-delivery-count": [1]}, 1),
        ({"x-delivery-count": True}, 1),
        ({"x-delivery-count": "3"}, 4),
        ({"x-delivery-count": 10**30}, 10**6 + 1),
        ("not a mapping", 1),
    ],
)
def test_a_delivery_count_is_read_defensively(headers: Any, attempt: int) -> None:
    assert delivery_attempt(headers) == attempt
