"""The change feed in a real deployment: lists, deletes, state loss, snapshots, heartbeats.

Real sandbox over HTTP, real Redis, real RabbitMQ with confirms (and PostgreSQL for the ERP
example at the end).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import kombu
import pytest
import redis

from examples.erp_connector import ErpConnector
from publisher import topology
from publisher.akinon import AkinonClient
from publisher.cli.steps import _status_row, _status_text
from publisher.consumer import Subscription, change_patterns
from publisher.errors import AkinonProtocolError, StateStoreError
from publisher.pipeline import StepSpec, StepSummary
from publisher.publish import KombuPublisher
from publisher.records import Endpoint, Resource
from publisher.sandbox import SandboxServer
from publisher.service import Edges, run_snapshot, run_step
from publisher.snapshot import SnapshotSpec
from publisher.state import RedisStateStore
from tests.conftest import SANDBOX_TOKEN
from tests.integration.collect import Collector
from tests.integration.conftest import EdgesFactory, ErpFactory
from tests.proxy import TcpProxy

pytestmark = pytest.mark.integration


def step(edges: Edges, server: SandboxServer, channel_id: int, **options: Any) -> StepSummary:
    options.setdefault("resource", Resource.STOCK)
    return run_step(StepSpec(channel_id, base_url=server.url, **options), edges)


def acknowledge_everything(server: SandboxServer, channel_id: int, resource: Resource) -> int:
    """Play another integration: commit and finish a batch of every pending record."""
    headers = {"Authorization": f"Token {SANDBOX_TOKEN}"}
    base = f"{server.url}/api/v1/channel/{channel_id}/batch_requests/"
    pending = server.catalog.pending(channel_id, resource, _queue())
    records = {r[resource.key_field]: r for r in server.catalog.records(channel_id, resource)}
    objects = [
        {
            "pk": pk,
            "version_date": records[pk]["modified_date"],
            "content_type": resource.content_type,
        }
        for pk in pending
    ]
    with httpx.Client(headers=headers, timeout=10) as http:
        batch = http.post(base, json={"channel": channel_id}).json()
        commit = {"status": "commit", "content_type": resource.content_type, "objects": objects}
        http.patch(f"{base}{batch['pk']}/", json=commit).raise_for_status()
        http.patch(f"{base}{batch['pk']}/", json={"status": "done"}).raise_for_status()
    return len(objects)


def _queue() -> Endpoint:
    return Endpoint.INSERTS_OR_UPDATES


def forget_state(redis_url: str, channel_id: int) -> None:
    """Lose the publisher's state of a channel, as a Redis without persistence would."""
    client = redis.Redis.from_url(redis_url)
    for resource in Resource:
        names = list(client.scan_iter(match=topology.state_pattern(channel_id, resource)))
        if names:
            client.delete(*names)
    client.close()


# ------------------------------------------------------------------------ lists, not queues


def test_read_only_sees_a_change_another_integration_acknowledged(
    sandbox: SandboxServer, make_edges: EdgesFactory, amqp_url: str, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    assert step(edges, sandbox, channel_id).published == 30
    record = sandbox.catalog.records(channel_id, Resource.STOCK)[4]
    sandbox.catalog.set_stock(channel_id, record["pk"], stock=record["stock"] + 7)
    assert acknowledge_everything(sandbox, channel_id, Resource.STOCK) == 30
    # The other integration emptied the work queue: a reader of it would see nothing now.
    assert sandbox.catalog.pending(channel_id, Resource.STOCK, _queue()) == []
    with Collector(amqp_url, f"stock.changed.{channel_id}") as events:
        summary = step(edges, sandbox, channel_id)
        (event,) = events.collect(1)
    assert (summary.seen, summary.published) == (30, 1)
    assert event["data"]["key"] == record["pk"]
    assert event["data"]["after"]["stock"] == record["stock"] + 7


# ---------------------------------------------------------------------------------- deletes


def test_a_deleted_record_is_published_once_then_forgotten(
    sandbox: SandboxServer, make_edges: EdgesFactory, amqp_url: str, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    step(edges, sandbox, channel_id)
    record = sandbox.catalog.records(channel_id, Resource.STOCK)[7]
    sandbox.catalog.set_stock(channel_id, record["pk"], stock=1)  # sequence 2
    step(edges, sandbox, channel_id)
    changed = sandbox.catalog.get(channel_id, Resource.STOCK, record["pk"])
    assert changed is not None
    assert sandbox.catalog.delete(channel_id, Resource.STOCK, record["pk"])
    with Collector(amqp_url, f"stock.deleted.{channel_id}") as events:
        summary = step(edges, sandbox, channel_id)
        (event,) = events.collect(1)
        events.clear()
        assert (summary.deleted, summary.published, summary.seen) == (1, 1, 29)
        assert edges.state.tracked(channel_id, Resource.STOCK) == 29
        again = step(edges, sandbox, channel_id)
        assert (again.deleted, again.published) == (0, 0)
        assert events.settle() == []
    data = event["data"]
    assert event["type"] == "stock.deleted" and event["subject"] == str(record["pk"])
    assert (data["key"], data["operation"], data["sequence"]) == (record["pk"], "deleted", 3)
    assert data["before"]["stock"] == 1
    # Dated after every version published of it, so a consumer's order puts it last.
    assert datetime.fromisoformat(data["modified_date"]) > datetime.fromisoformat(
        changed["modified_date"]
    )


def test_a_list_read_empty_after_a_state_loss_holds_its_reload_until_released(
    sandbox: SandboxServer,
    make_edges: EdgesFactory,
    amqp_url: str,
    redis_url: str,
    channel_id: int,
) -> None:
    edges = make_edges(sandbox)
    step(edges, sandbox, channel_id)
    for record in sandbox.catalog.records(channel_id, Resource.STOCK):
        sandbox.catalog.delete(channel_id, Resource.STOCK, record["pk"])
    forget_state(redis_url, channel_id)
    with Collector(amqp_url, f"stock.reloaded.{channel_id}") as reloads:
        held = step(edges, sandbox, channel_id)
        assert held.reload_held and held.reload_events == 0
        meta = edges.state.read_meta(channel_id, Resource.STOCK)
        row = _status_row(channel_id, Resource.STOCK, meta, None)
        assert "RELOAD_HELD" in _status_text(row) and "deletes release" in _status_text(row)
        assert step(edges, sandbox, channel_id).reload_held  # still a reload, still held
        assert reloads.settle() == []
        edges.state.write_meta(channel_id, Resource.STOCK, {"release_deletes": "1"})
        released = step(edges, sandbox, channel_id)
        (event,) = reloads.collect(1)
    assert (released.reload_held, released.reload_events) == (False, 1)
    data = event["data"]
    assert (data["keys"], data["lowest_key"], data["highest_key"]) == ([], None, None)
    meta = edges.state.read_meta(channel_id, Resource.STOCK)
    assert (meta["reload_held"], meta["release_deletes"]) == ("0", "0") and meta["loaded_at"]
    assert step(edges, sandbox, channel_id).reload_events == 0  # loaded: no more reloads


def test_records_deleted_after_their_page_was_sent_but_never_committed_are_announced(
    sandbox: SandboxServer,
    make_edges: EdgesFactory,
    amqp_url: str,
    redis_url: str,
    channel_id: int,
) -> None:
    edges = make_edges(sandbox, page_size=40)
    step(edges, sandbox, channel_id)
    updated = sandbox.catalog.records(channel_id, Resource.STOCK)[3]
    changed = sandbox.catalog.set_stock(channel_id, updated["pk"], stock=updated["stock"] + 5)
    created = sandbox.catalog.set_stock(channel_id, updated["pk"] + 1000, stock=7)
    # Redis goes away exactly as the page commits: the broker has both versions, the state
    # neither (the update's stored version is the older one, the new record has none).
    proxy = TcpProxy(6379, cut_on=b"EVALSHA")
    state = RedisStateStore.from_url(proxy.url_for(redis_url))
    client = AkinonClient(sandbox.url, token=SANDBOX_TOKEN, page_size=40)
    publisher = KombuPublisher(amqp_url, confirm_timeout=5)
    failing = Edges(client, state, publisher, redis=state.client)
    patterns = (f"stock.changed.{channel_id}", f"stock.deleted.{channel_id}")
    with Collector(amqp_url, *patterns) as events:
        with pytest.raises(StateStoreError):
            step(failing, sandbox, channel_id)
        assert len(events.collect(2)) == 2  # the consumers hold both new versions
        for record in (changed, created):
            assert sandbox.catalog.delete(channel_id, Resource.STOCK, record["pk"])
        events.clear()
        # The failed step could not release its lock (Redis was gone): as its TTL would.
        assert edges.redis is not None
        edges.redis.delete(topology.lock(channel_id, Resource.STOCK))
        summary = step(edges, sandbox, channel_id)
        announced = {e["data"]["key"]: e for e in events.collect(2)}
        assert len(events.settle()) == 2  # the deletions, and nothing else
    failing.close()
    proxy.cut()
    assert (summary.deleted, summary.published) == (2, 2)
    assert {e["type"] for e in announced.values()} == {"stock.deleted"}
    # Each deletion follows the version published last, though it was never committed.
    after_update = announced[changed["pk"]]["data"]
    assert (after_update["sequence"], after_update["before"]["stock"]) == (3, changed["stock"])
    after_creation = announced[created["pk"]]["data"]
    assert (after_creation["sequence"], after_creation["before"]["stock"]) == (2, 7)
    for record in (changed, created):
        deleted = datetime.fromisoformat(announced[record["pk"]]["data"]["modified_date"])
        assert deleted > datetime.fromisoformat(record["modified_date"])
    assert edges.state.read_pending(channel_id, Resource.STOCK) == {}  # nothing left over
    assert step(edges, sandbox, channel_id).published == 0


def test_a_scan_that_fails_deletes_nothing(
    sandbox: SandboxServer, make_edges: EdgesFactory, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    step(edges, sandbox, channel_id)
    gone = sandbox.catalog.records(channel_id, Resource.STOCK)[0]["pk"]
    sandbox.catalog.delete(channel_id, Resource.STOCK, gone)
    sandbox.faults.fail_status = 400
    sandbox.faults.fail_next = 1  # the scan's first page: the step fails at once
    with pytest.raises(AkinonProtocolError):
        step(edges, sandbox, channel_id)
    assert edges.state.tracked(channel_id, Resource.STOCK) == 30
    assert edges.state.load(channel_id, Resource.STOCK, [gone]).current(gone) is not None
    assert step(edges, sandbox, channel_id).deleted == 1


def test_the_delete_guard_holds_a_mass_disappearance_until_released(
    sandbox: SandboxServer, make_edges: EdgesFactory, amqp_url: str, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    step(edges, sandbox, channel_id)
    keys = [r["pk"] for r in sandbox.catalog.records(channel_id, Resource.STOCK)[:12]]
    for key in keys:  # 12 of 30: more than the guard's 20%, and at least its 10
        sandbox.catalog.delete(channel_id, Resource.STOCK, key)
    with Collector(amqp_url, f"stock.deleted.{channel_id}") as events:
        held = step(edges, sandbox, channel_id)
        assert (held.deletes_held, held.deleted, held.published) == (12, 0, 0)
        assert events.settle() == []
        meta = edges.state.read_meta(channel_id, Resource.STOCK)
        assert meta["deletes_held"] == "12"
        assert edges.state.tracked(channel_id, Resource.STOCK) == 30
        edges.state.write_meta(channel_id, Resource.STOCK, {"release_deletes": "1"})
        released = step(edges, sandbox, channel_id)
        assert (released.deleted, released.deletes_held) == (12, 0)
        assert sorted(e["data"]["key"] for e in events.collect(12)) == sorted(keys)
    meta = edges.state.read_meta(channel_id, Resource.STOCK)
    assert (meta["deletes_held"], meta["release_deletes"]) == ("0", "0")


# ----------------------------------------------------------------------------- date filter


def test_a_server_that_ignores_the_date_filter_gets_complete_scans(
    sandbox: SandboxServer,
    make_edges: EdgesFactory,
    channel_id: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox.app.shapes.configure({"ignore_date_filters": ["stock/list"]})
    edges = make_edges(sandbox)
    first = step(edges, sandbox, channel_id, lookback_seconds=0.0)
    assert (first.incremental, first.complete_scan) == (False, True)
    second = step(edges, sandbox, channel_id, lookback_seconds=0.0)
    assert (second.incremental, second.date_filter_ignored, second.seen) == (True, True, 30)
    assert "date filter ignored" in caplog.text
    assert edges.state.read_meta(channel_id, Resource.STOCK)["date_filter_ignored_at"]
    third = step(edges, sandbox, channel_id, lookback_seconds=0.0)
    assert (third.incremental, third.complete_scan) == (False, True)
    # Prices honour the filter: their steps stay incremental.
    step(edges, sandbox, channel_id, resource=Resource.PRICE, lookback_seconds=0.0)
    dated = step(edges, sandbox, channel_id, resource=Resource.PRICE, lookback_seconds=0.0)
    assert (dated.incremental, dated.date_filter_ignored) == (True, False)


# ------------------------------------------------------------------------------ state loss


def test_after_the_state_is_lost_events_still_order_by_modified_date(
    sandbox: SandboxServer,
    make_edges: EdgesFactory,
    amqp_url: str,
    channel_id: int,
    redis_url: str,
) -> None:
    from publisher.consumer import Applied, MemoryStore, Verdict, judge, locate, read_event

    edges = make_edges(sandbox)
    pk = sandbox.catalog.records(channel_id, Resource.STOCK)[2]["pk"]
    store = MemoryStore()

    def apply(bodies: list[bytes]) -> list[Verdict]:
        verdicts = []
        for body in bodies:
            event = read_event(body)
            assert event is not None
            place = locate(event)
            assert place is not None
            if place.ref.key != pk:
                continue
            verdict = judge(store.last(place.ref), place.sequence, event.id, place.modified)
            if verdict is Verdict.NEW:
                store.remember(place.ref, Applied(place.sequence, event.id, place.modified))
            verdicts.append(verdict)
        return verdicts

    with Collector(amqp_url, f"stock.changed.{channel_id}") as events:
        step(edges, sandbox, channel_id)
        for level in (11, 12):
            sandbox.catalog.set_stock(channel_id, pk, stock=level)
            step(edges, sandbox, channel_id)
        assert apply([m.body for m in events.take(32)]) == [Verdict.NEW] * 3
        forget_state(redis_url, channel_id)
        # The same content read again after the loss: sequence 1, an older place.
        step(edges, sandbox, channel_id)
        reread = events.take(30)
        assert apply([m.body for m in reread]) == [Verdict.STALE]
        sandbox.catalog.set_stock(channel_id, pk, stock=13)
        step(edges, sandbox, channel_id)
        (after,) = events.take(1)
        assert apply([after.body]) == [Verdict.NEW]
    assert store.last(locate(read_event(after.body)).ref).sequence == 2  # type: ignore[arg-type,union-attr]


# ------------------------------------------------------------------------------- snapshots


def test_a_snapshot_to_one_queue_reaches_only_that_queue_and_moves_no_state(
    sandbox: SandboxServer, make_edges: EdgesFactory, amqp_url: str, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    step(edges, sandbox, channel_id)
    meta = edges.state.read_meta(channel_id, Resource.STOCK)
    name = f"test.snapshot.{channel_id}"
    with kombu.Connection(amqp_url) as connection:
        queue = kombu.Queue(name, durable=False, auto_delete=False)
        queue(connection.channel()).declare()
        try:
            with Collector(amqp_url, f"stock.changed.{channel_id}") as everyone:
                spec = SnapshotSpec(channel_id, Resource.STOCK, sandbox.url, "snap-1", name)
                summary = run_snapshot(spec, edges)
                assert everyone.settle() == []
            received = _drain(connection, name)
        finally:
            queue(connection.channel()).delete()
    assert (summary.seen, summary.published) == (30, 30)
    assert len(received) == 30
    assert {e["data"]["operation"] for e in received} == {"snapshot"}
    assert {e["data"]["snapshot_id"] for e in received} == {"snap-1"}
    assert {e["data"]["sequence"] for e in received} == {1}
    assert edges.state.read_meta(channel_id, Resource.STOCK) == meta


def _drain(connection: kombu.Connection, name: str) -> list[dict[str, Any]]:
    import orjson

    channel = connection.channel()
    found = []
    while (message := channel.basic_get(name, no_ack=True)) is not None:
        found.append(orjson.loads(message.body))
    return found


# ------------------------------------------------------------------------------ heartbeats


def test_each_successful_step_publishes_a_heartbeat(
    sandbox: SandboxServer, make_edges: EdgesFactory, amqp_url: str, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    with Collector(amqp_url, f"*.heartbeat.{channel_id}") as beats:
        step(edges, sandbox, channel_id)
        step(edges, sandbox, channel_id, resource=Resource.PRICE)
        first, second = beats.collect(2)
        beats.clear()
        sandbox.faults.fail_status = 400
        sandbox.faults.fail_next = 1
        with pytest.raises(AkinonProtocolError):
            step(edges, sandbox, channel_id)
        assert beats.settle() == []  # a failed step sends none: silence means trouble
    assert first["type"] == "publisher.heartbeat" and first["subject"] == "stock"
    assert first["data"]["seen"] == 30 and first["data"]["complete_scan"] is True
    assert first["data"]["watermark"] is not None
    assert second["data"]["resource"] == "price"


# ----------------------------------------------------------------- the ERP table, end to end


def sandbox_view(server: SandboxServer, channel_id: int) -> dict[int, tuple[Any, ...]]:
    """What the ERP table must hold per product: (stock, price, retail price, currency)."""
    stocks = {r["product"]: r for r in server.catalog.records(channel_id, Resource.STOCK)}
    prices = {r["product"]: r for r in server.catalog.records(channel_id, Resource.PRICE)}
    view = {}
    for product in stocks.keys() | prices.keys():
        stock, price = stocks.get(product, {}), prices.get(product, {})
        view[product] = (
            stock.get("stock"),
            _decimal(price.get("price")),
            _decimal(price.get("retail_price")),
            price.get("currency_type"),
        )
    return view


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def table_view(erp: ErpConnector) -> dict[int, tuple[Any, ...]]:
    """The ERP table's live values per product; a product with both resources deleted is gone."""
    view = {}
    for row in erp.rows():
        if row["stock_deleted"] and row["price_deleted"]:
            continue
        values = (row["stock"], row["price"], row["retail_price"], row["currency"])
        view[row["product"]] = tuple(_decimal(v) if isinstance(v, Decimal) else v for v in values)
    return view


def republish(amqp_url: str, messages: list[Any]) -> None:
    """Send raw messages again, exactly as received: what a redelivery or a replay looks like."""
    with kombu.Connection(amqp_url) as connection:
        producer = connection.Producer()
        for message in messages:
            producer.publish(
                message.body,
                exchange=message.delivery_info["exchange"],
                routing_key=message.delivery_info["routing_key"],
                headers=message.headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                serializer=None,
            )


def test_the_erp_table_equals_the_sandbox_through_everything_a_deployment_meets(
    sandbox: SandboxServer,
    make_edges: EdgesFactory,
    make_erp: ErpFactory,
    amqp_url: str,
    redis_url: str,
    channel_id: int,
) -> None:
    edges = make_edges(sandbox)
    erp = make_erp("feed")
    queue = f"test.feed.{channel_id}"
    consumer = Subscription(
        amqp_url,
        queue=queue,
        patterns=change_patterns([channel_id]),
        handler=erp.handle,
        retry_delay=0,
    )
    consumer.declare()

    def sync() -> None:
        for resource in Resource:
            step(edges, sandbox, channel_id, resource=resource)
        consumer.drain(0.3)
        assert table_view(erp) == sandbox_view(sandbox, channel_id)

    stocks = [r["pk"] for r in sandbox.catalog.records(channel_id, Resource.STOCK)]
    prices = [r["id"] for r in sandbox.catalog.records(channel_id, Resource.PRICE)]
    try:
        with Collector(amqp_url, *change_patterns([channel_id])) as record:
            sync()  # the first load
            # Changes, with another integration draining the work queue between polls.
            sandbox.catalog.set_stock(channel_id, stocks[0], stock=500)
            sandbox.catalog.set_price(channel_id, prices[1], price="12.34")
            for resource in Resource:
                acknowledge_everything(sandbox, channel_id, resource)
            sync()
            # Deletes of both resources.
            sandbox.catalog.delete(channel_id, Resource.STOCK, stocks[2])
            sandbox.catalog.delete(channel_id, Resource.PRICE, prices[3])
            sync()
            assert any(r["stock_deleted"] for r in erp.rows())
            # Redis loses our state; then more changes, and deletes no state can tell.
            forget_state(redis_url, channel_id)
            sandbox.catalog.set_stock(channel_id, stocks[0], stock=501)
            sandbox.catalog.set_price(channel_id, prices[4], price="99.99")
            sandbox.catalog.delete(channel_id, Resource.STOCK, stocks[-1])
            sandbox.catalog.delete(channel_id, Resource.PRICE, prices[-1])
            sync()  # the reload events end the load: the two rows are deleted
            gone = {row["stock_key"]: row for row in erp.rows()}[stocks[-1]]
            assert gone["stock_deleted"] and gone["stock"] is None
            # Duplicates and redeliveries: every event again, newest first.
            history = record.take(len(record.messages) or 1)
            republish(amqp_url, history[::-1])
            consumer.drain(0.3)
            assert table_view(erp) == sandbox_view(sandbox, channel_id)
        consumer.close()
        # A consumer that joins now binds its queue, then rebuilds from a snapshot sent to it
        # alone.
        fresh = make_erp("fresh")
        late = Subscription(
            amqp_url,
            queue=f"{queue}.late",
            patterns=change_patterns([channel_id]),
            handler=fresh.handle,
            retry_delay=0,
        )
        late.declare()
        for resource in Resource:
            spec = SnapshotSpec(channel_id, resource, sandbox.url, "late-1", f"{queue}.late")
            run_snapshot(spec, edges)
        late.drain(0.3)
        late.close()
        assert table_view(fresh) == sandbox_view(sandbox, channel_id)
    finally:
        with kombu.Connection(amqp_url) as connection:
            channel = connection.channel()
            for name in (queue, f"{queue}.dead", f"{queue}.late", f"{queue}.late.dead"):
                channel.queue_delete(name)
