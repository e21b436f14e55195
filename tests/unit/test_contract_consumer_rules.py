"""The consumer side of the contract, without a broker: dedupe rules, parsing, routing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import orjson
import pytest

from publisher.consumer import (
    Applied,
    AttemptCounter,
    InvalidEvent,
    MemoryStore,
    Outcome,
    QueueSpec,
    RecordRef,
    Stats,
    Verdict,
    delivery_attempt,
    exchanges_for,
    follow,
    judge,
    position,
    read_event,
    topic_matches,
)
from publisher.contract import example_events
from publisher.diff import diff_page
from publisher.errors import BrokerError
from publisher.events import EventType, PriceChanged, RecordRejected, StockChanged
from publisher.outgoing import EventContext, change_event
from publisher.publish import KombuPublisher
from publisher.records import Resource
from tests.factories import as_page, stock


@pytest.mark.parametrize(
    ("last", "sequence", "event_id", "verdict"),
    [
        (None, 1, "a", Verdict.NEW),
        (None, 7, "a", Verdict.NEW),  # first sight of a record mid-stream
        (Applied(3, "c"), 4, "d", Verdict.NEW),
        (Applied(3, "c"), 9, "x", Verdict.NEW),  # a gap: intermediate versions were coalesced
        (Applied(3, "c"), 3, "c", Verdict.DUPLICATE),
        (Applied(3, "c"), 3, "c2", Verdict.NEW),  # supersedes a version never committed
        (Applied(3, "c"), 2, "b", Verdict.STALE),
        (Applied(3, "c"), 2, "c", Verdict.STALE),
    ],
)
def test_judge(last: Applied | None, sequence: int, event_id: str, verdict: Verdict) -> None:
    assert judge(last, sequence, event_id) is verdict


@pytest.mark.parametrize(
    ("last", "sequence", "modified", "verdict"),
    [
        # After the publisher lost its state, sequences start again at 1: a later
        # modified_date still wins, and the same content re-read is older, not new.
        (Applied(3, "c", 200), 1, 300, Verdict.NEW),
        (Applied(3, "c", 200), 1, 200, Verdict.STALE),
        (Applied(3, "c", 200), 9, 100, Verdict.STALE),  # an older date loses to any sequence
        (Applied(3, "c", 200), 4, 200, Verdict.NEW),  # same date: the sequence decides
        (Applied(3, "c", None), 4, 100, Verdict.NEW),  # remembered by 1.0: sequence alone
        (Applied(3, "c", 200), 2, None, Verdict.STALE),  # a 1.0 event: sequence alone
    ],
)
def test_judge_orders_by_modified_date_first(
    last: Applied, sequence: int, modified: int | None, verdict: Verdict
) -> None:
    assert judge(last, sequence, "e", modified) is verdict


def test_memory_store_never_moves_a_record_backwards() -> None:
    store = MemoryStore()
    ref = RecordRef(1, "stock.changed", 5)
    assert store.last(ref) is None
    store.remember(ref, Applied(3, "c"))
    store.remember(ref, Applied(2, "b"))
    assert store.last(ref) == Applied(3, "c")
    store.remember(ref, Applied(3, "c2"))
    assert store.last(ref) == Applied(3, "c2")
    assert store.last(RecordRef(2, "stock.changed", 5)) is None


# ------------------------------------------------------------------------------- parsing


def _body(kind: EventType) -> bytes:
    return example_events()[kind].body


def test_read_event_returns_the_typed_model_of_each_type() -> None:
    assert isinstance(read_event(_body(EventType.STOCK_CHANGED)), StockChanged)
    price = read_event(_body(EventType.PRICE_CHANGED))
    assert isinstance(price, PriceChanged)
    assert str(price.data.after.price) == "109.90"
    assert price.data.after.retail_price is None
    assert isinstance(read_event(_body(EventType.RECORD_REJECTED)), RecordRejected)


def test_read_event_ignores_fields_a_later_minor_version_adds() -> None:
    document = orjson.loads(_body(EventType.STOCK_CHANGED))
    document["traceparent"] = "00-abc-def-01"
    document["data"]["warehouse"] = "IST-1"
    document["data"]["after"]["reserved"] = 2
    event = read_event(orjson.dumps(document))
    assert isinstance(event, StockChanged)
    assert event.data.after.stock == 12


def test_read_event_skips_other_majors_and_unknown_types() -> None:
    document = orjson.loads(_body(EventType.STOCK_CHANGED))
    v2 = {**document, "dataschema": document["dataschema"].replace(":v1", ":v2")}
    assert read_event(orjson.dumps(v2)) is None
    assert read_event(orjson.dumps(v2), major=2) is not None
    assert read_event(orjson.dumps({**document, "type": "stock.reserved"})) is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"type": "stock.changed"}',
        orjson.dumps(
            {
                **orjson.loads(example_events()[EventType.PRICE_CHANGED].body),
                "subject": None,
            }
        ),
    ],
)
def test_read_event_refuses_unreadable_bodies(body: bytes) -> None:
    with pytest.raises(InvalidEvent):
        read_event(body)


def test_position_of_a_change_and_of_a_rejection() -> None:
    change = read_event(_body(EventType.PRICE_CHANGED))
    assert change is not None
    assert position(change) == (RecordRef(1, "price.changed", 90311), 2)
    rejection = read_event(_body(EventType.RECORD_REJECTED))
    assert rejection is not None
    assert position(rejection) == (RecordRef(1, "stock.rejected", 48214), 0)


# ------------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("pattern", "words", "matches"),
    [
        ("stock.changed.*", ("stock", "changed", "5"), True),
        ("stock.changed.*", ("stock", "changed", None), True),
        ("stock.changed.5", ("stock", "changed", None), True),
        ("stock.changed", ("stock", "changed", None), False),
        ("#", ("price", "rejected", None), True),
        ("stock.#", ("stock", "changed", None), True),
        ("#.5", ("price", "changed", None), True),
        ("*.*", ("price", "changed", None), False),
        ("price.#.changed.#", ("price", "changed", None), True),
    ],
)
def test_topic_matches(pattern: str, words: tuple[str | None, ...], matches: bool) -> None:
    assert topic_matches(pattern.split("."), words) is matches


@pytest.mark.parametrize(
    ("pattern", "exchanges"),
    [
        ("stock.changed.#", ["akinon.stock"]),
        ("price.changed.7", ["akinon.price"]),
        ("*.changed.7", ["akinon.price", "akinon.stock"]),
        ("*.rejected.*", ["akinon.rejected"]),
        ("stock.#", ["akinon.heartbeat", "akinon.rejected", "akinon.stock"]),
        ("#", ["akinon.heartbeat", "akinon.price", "akinon.rejected", "akinon.stock"]),
        ("*.deleted.*", ["akinon.price", "akinon.stock"]),
    ],
)
def test_a_pattern_is_bound_only_where_it_can_match(pattern: str, exchanges: list[str]) -> None:
    assert exchanges_for(pattern) == exchanges


def test_a_pattern_that_matches_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="matches no routing key"):
        exchanges_for("orders.placed.#")


def test_queue_spec_arguments_and_validation() -> None:
    spec = QueueSpec("erp.stock", ("stock.changed.#",), max_attempts=4, single_active=True)
    assert spec.dead_name == "erp.stock.dead"
    assert spec.arguments() == {
        "x-dead-letter-exchange": "akinon.dead",
        "x-dead-letter-routing-key": "erp.stock",
        "x-queue-type": "quorum",
        "x-delivery-limit": 4,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-single-active-consumer": True,
    }
    classic = QueueSpec("erp.stock", ("stock.changed.#",), quorum=False)
    assert "x-queue-type" not in classic.arguments()
    for bad in (
        lambda: QueueSpec("", ("#",)),
        lambda: QueueSpec("amq.x", ("#",)),
        lambda: QueueSpec("q", ()),
        lambda: QueueSpec("q", ("#",), max_attempts=0),
        lambda: QueueSpec("q", ("orders.#",)),
    ):
        with pytest.raises(ValueError):
            bad()


def test_attempts_come_from_the_broker_or_from_the_process() -> None:
    assert delivery_attempt(None) == 1
    assert delivery_attempt({"x-delivery-count": 2}) == 3
    counter = AttemptCounter(limit=2)
    assert [counter.failed("a"), counter.failed("a"), counter.failed("b")] == [1, 2, 1]
    counter.forget("a")
    assert counter.failed("a") == 1
    counter.failed("c")  # over the limit: the oldest count goes
    assert counter.failed("b") == 1


def test_stats_count_outcomes() -> None:
    stats = Stats()
    for outcome in (Outcome.APPLIED, Outcome.APPLIED, Outcome.DEAD):
        stats.count(outcome)
    assert stats.as_dict() == {
        "applied": 2,
        "duplicate": 0,
        "stale": 0,
        "ignored": 0,
        "retried": 0,
        "dead": 1,
    }


def test_follow_works_on_the_in_memory_transport_for_the_demo() -> None:
    received: list[bytes] = []
    stop, ready = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=follow,
        args=("memory://", "stock.changed.*", received.append),
        kwargs={"stop": stop, "ready": ready},
    )
    watcher.start()
    try:
        assert ready.wait(5)
        ctx = EventContext(5, Resource.STOCK, "http://a.example", datetime.now(UTC))
        events = [
            change_event(ctx, c)
            for c in diff_page(as_page(Resource.STOCK, [stock(1), stock(2)]), {}).changes
        ]
        publisher = KombuPublisher("memory://")
        publisher.publish(events)
        publisher.close()
        deadline = time.monotonic() + 5
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        watcher.join(5)
    assert received == [e.body for e in events]


def test_follow_refuses_a_pattern_that_matches_nothing_and_reports_an_absent_broker() -> None:
    with pytest.raises(ValueError, match="matches no routing key"):
        follow("memory://", "orders.#", print)
    with pytest.raises(BrokerError, match="consuming failed"):
        follow("amqp://guest:guest@127.0.0.1:1//", "#", print, connect_timeout=1)
