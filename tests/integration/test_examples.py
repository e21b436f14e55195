"""The example consumers against real RabbitMQ and PostgreSQL: idempotent, ordered, lossless."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import kombu
import psycopg
import pytest

from examples import erp_connector, search_indexer
from examples.erp_connector import ErpConnector
from examples.search_indexer import SearchIndexer
from publisher.consumer import Subscription, change_patterns, read_event, replay_dead_letters
from publisher.deletes import reload_parts
from publisher.diff import Stored, diff_page
from publisher.events import CloudEvent
from publisher.outgoing import EventContext, OutgoingEvent, change_event, reload_events
from publisher.publish import KombuPublisher
from publisher.records import Resource
from tests.factories import as_page, price, stock

pytestmark = pytest.mark.integration

QUIET = 0.3


class History:
    """Build successive change events of records the way the producer does."""

    def __init__(self, channel_id: int) -> None:
        self.channel_id = channel_id
        self._stored: dict[tuple[Resource, int], Stored] = {}

    def change(self, resource: Resource, raw: dict[str, Any]) -> OutgoingEvent:
        key = raw["pk"] if resource is Resource.STOCK else raw["id"]
        stored = self._stored.get((resource, key))
        (change,) = diff_page(as_page(resource, [raw]), {key: stored} if stored else {}).changes
        self._stored[(resource, key)] = Stored(change.sequence, change.after)
        source = f"https://omni.example/api/v1/channel/{self.channel_id}"
        ctx = EventContext(self.channel_id, resource, source, datetime.now(UTC))
        return change_event(ctx, change)

    def stock(self, key: int, level: int) -> OutgoingEvent:
        return self.change(Resource.STOCK, stock(key, stock=level))

    def price(self, key: int, amount: str, retail: str | None = "129.90") -> OutgoingEvent:
        return self.change(Resource.PRICE, price(key, price=amount, retail_price=retail))


def publish(amqp_url: str, events: Sequence[OutgoingEvent]) -> None:
    publisher = KombuPublisher(amqp_url)
    try:
        publisher.publish(events)
    finally:
        publisher.close()


def delete_queues(amqp_url: str, names: Sequence[str]) -> None:
    with kombu.Connection(amqp_url) as conn:
        channel = conn.channel()
        for name in names:
            channel.queue_delete(name)


@pytest.fixture
def queue(amqp_url: str, channel_id: int) -> Iterator[str]:
    """A queue name for this test; the queue and its dead-letter queue go afterwards."""
    name = f"test.examples.{channel_id}"
    yield name
    delete_queues(amqp_url, [name, f"{name}.dead"])


@pytest.fixture
def subscribe(amqp_url: str, channel_id: int, queue: str) -> Iterator[Callable[..., Subscription]]:
    made: list[Subscription] = []

    def make(handler: Callable[[CloudEvent[Any]], None], **options: Any) -> Subscription:
        options.setdefault("retry_delay", 0)
        subscription = Subscription(
            amqp_url,
            queue=queue,
            patterns=change_patterns([channel_id]),
            handler=handler,
            **options,
        )
        subscription.declare()
        made.append(subscription)
        return subscription

    yield make
    for subscription in made:
        subscription.close()


# ------------------------------------------------------------------------------------ ERP


def test_replaying_every_event_twice_leaves_the_same_table(
    amqp_url: str, channel_id: int, erp: ErpConnector, subscribe: Callable[..., Subscription]
) -> None:
    history = History(channel_id)
    events = [
        history.stock(1, 10),
        history.price(1, "119.90"),
        history.stock(2, 3),
        history.stock(1, 7),
        history.price(2, "645670668.11", retail=None),
        history.price(1, "99.90"),
    ]
    first = subscribe(erp.handle)
    publish(amqp_url, events)
    assert first.drain(QUIET).applied == 6
    table = erp.rows()
    assert [(r["product"], r["stock"], r["price"], r["retail_price"]) for r in table] == [
        (1001, 7, Decimal("99.90"), Decimal("129.90")),
        (1002, 3, Decimal("645670668.11"), None),
    ]
    assert [r["revision"] for r in table] == [4, 2]
    first.close()

    # A consumer that remembers nothing (its store is new) gets everything twice more: the
    # kit lets each event through once, and the table's guard refuses them all.
    forgetful = subscribe(erp.handle)
    publish(amqp_url, events + events)
    stats = forgetful.drain(QUIET)
    assert stats.applied == 6
    assert erp.rows() == table


def test_an_out_of_order_older_event_is_not_applied(
    amqp_url: str, channel_id: int, erp: ErpConnector, subscribe: Callable[..., Subscription]
) -> None:
    history = History(channel_id)
    one, two, three = history.stock(1, 10), history.stock(1, 5), history.stock(1, 2)
    subscription = subscribe(erp.handle)
    publish(amqp_url, [one, three, two])
    stats = subscription.drain(QUIET)
    assert (stats.applied, stats.stale) == (2, 1)
    (row,) = erp.rows()
    assert (row["stock"], row["stock_sequence"], row["revision"]) == (2, 3, 2)
    # Even straight to the handler, past the kit's store, the table refuses older versions.
    for older in (one, two):
        event = read_event(older.body)
        assert event is not None
        erp.handle(event)
    assert erp.rows() == [row]


def test_a_redelivery_after_the_write_does_not_write_twice(
    amqp_url: str, channel_id: int, erp: ErpConnector, subscribe: Callable[..., Subscription]
) -> None:
    crashes = [RuntimeError("connection reset after COMMIT, before the ack")]

    def writes_then_fails_once(event: CloudEvent[Any]) -> None:
        erp.handle(event)
        if crashes:
            raise crashes.pop()

    history = History(channel_id)
    subscription = subscribe(writes_then_fails_once, max_attempts=3)
    publish(amqp_url, [history.stock(1, 10), history.price(1, "119.90")])
    stats = subscription.drain(QUIET)
    assert (stats.applied, stats.retried) == (2, 1)
    (row,) = erp.rows()
    assert (row["stock"], row["price"], row["revision"]) == (10, Decimal("119.90"), 2)


def test_a_failing_database_dead_letters_and_a_replay_after_the_fix_loses_nothing(
    amqp_url: str,
    channel_id: int,
    pg_dsn: str,
    queue: str,
    subscribe: Callable[..., Subscription],
) -> None:
    table = f"erp_test_{channel_id}"
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        connector = ErpConnector(db, table)  # the table does not exist yet: every write fails
        history = History(channel_id)
        events = [history.stock(1, 10), history.stock(2, 4), history.price(1, "119.90")]
        subscription = subscribe(connector.handle, max_attempts=2)
        publish(amqp_url, events)
        stats = subscription.drain(QUIET)
        assert (stats.applied, stats.retried, stats.dead) == (0, 3, 3)

        connector.create_table()
        try:
            assert replay_dead_letters(amqp_url, queue) == 3
            assert replay_dead_letters(amqp_url, queue) == 0
            assert subscription.drain(QUIET).applied == 3
            assert [(r["product"], r["stock"], r["price"]) for r in connector.rows()] == [
                (1001, 10, Decimal("119.90")),
                (1002, 4, None),
            ]
        finally:
            db.execute(
                psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(table))
            )


def test_the_erp_connector_runs_as_a_program(
    amqp_url: str, channel_id: int, pg_dsn: str, queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    table = f"erp_test_{channel_id}"
    argv = ["--amqp-url", amqp_url, "--dsn", pg_dsn, "--table", table, "--queue", queue]
    argv += ["--channel", str(channel_id), "--once", "--idle", str(QUIET)]
    history = History(channel_id)
    try:
        assert erp_connector.main(argv) == 0  # declares the queue, finds nothing
        publish(amqp_url, [history.stock(1, 10), history.price(1, "119.90")])
        assert erp_connector.main(argv) == 0
        assert "'applied': 2" in capsys.readouterr().out
        with psycopg.connect(pg_dsn) as db:
            rows = db.execute(
                psycopg.sql.SQL("SELECT product, stock, price FROM {}").format(
                    psycopg.sql.Identifier(table)
                )
            ).fetchall()
        assert rows == [(1001, 10, Decimal("119.90"))]
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            db.execute(
                psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(table))
            )


# -------------------------------------------------------------------------- search indexer


def memory_indexer() -> tuple[SearchIndexer, list[dict[str, Any]]]:
    """An indexer on an in-memory database, and the list of what it pushes."""
    pushed: list[dict[str, Any]] = []
    return SearchIndexer(sqlite3.connect(":memory:", isolation_level=None), pushed.append), pushed


def test_the_indexer_pushes_each_real_change_once(
    amqp_url: str, channel_id: int, subscribe: Callable[..., Subscription]
) -> None:
    indexer, pushed = memory_indexer()
    history = History(channel_id)
    events = [
        history.stock(1, 10),
        history.price(1, "119.90", retail="129.90"),
        history.stock(1, 0),
        history.stock(2, 5),
    ]
    subscription = subscribe(indexer.handle)
    publish(amqp_url, events + events[:2])  # and a re-publish of the first two
    subscription.drain(QUIET)
    subscription.close()
    forgetful = subscribe(indexer.handle)  # the same events again, past the kit's store
    publish(amqp_url, events)
    forgetful.drain(QUIET)
    indexer.db.close()
    assert [p["id"] for p in pushed] == [f"{channel_id}-1001"] * 3 + [f"{channel_id}-1002"]
    assert pushed[2]["doc"] == {
        "channel_id": channel_id,
        "product": 1001,
        "available": False,
        "stock": 0,
        "price": "119.90",
        "currency": "try",
        "retail_price": "129.90",
        "on_sale": True,
    }
    assert pushed[3]["doc"]["available"] is True
    assert pushed[3]["doc"]["price"] is None


def test_the_search_indexer_runs_as_a_program(
    amqp_url: str, channel_id: int, queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    history = History(channel_id)
    argv = ["--amqp-url", amqp_url, "--queue", queue, "--channel", str(channel_id)]
    argv += ["--once", "--idle", str(QUIET)]
    assert search_indexer.main(argv) == 0  # declares the queue
    publish(amqp_url, [history.stock(1, 3), history.price(1, "9.99", retail=None)])
    assert search_indexer.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert '"available":true' in lines[1]
    assert '"price":"9.99"' in lines[1]


def test_the_indexer_drops_what_a_reload_no_longer_found_and_keeps_it_dropped(
    amqp_url: str, channel_id: int, subscribe: Callable[..., Subscription]
) -> None:
    indexer, pushed = memory_indexer()
    history = History(channel_id)
    kept, gone = history.stock(1, 10), history.stock(2, 5)
    keys = [read_key(kept), read_key(gone)]
    source = f"https://omni.example/api/v1/channel/{channel_id}"
    ctx = EventContext(channel_id, Resource.STOCK, source, datetime.now(UTC))
    # The publisher lost its state; its load found only the first record.
    reloaded = reload_events(ctx, datetime.now(UTC), reload_parts(iter(keys[:1])))
    subscription = subscribe(indexer.handle)
    publish(amqp_url, [kept, gone, *reloaded, gone, *reloaded])  # late copies change nothing
    subscription.drain(QUIET)
    subscription.close()
    indexer.db.close()
    # Each record indexed once, then the second dropped once: the late copies pushed nothing.
    assert [p["id"] for p in pushed] == [f"{channel_id}-1001"] + [f"{channel_id}-1002"] * 2
    assert pushed[-1]["doc"]["stock"] is None and pushed[-1]["doc"]["available"] is None
    assert pushed[0]["doc"]["stock"] == 10


def read_key(event: OutgoingEvent) -> int:
    parsed = read_event(event.body)
    assert parsed is not None
    return int(parsed.data.key)
