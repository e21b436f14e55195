"""End to end: the sandbox over real HTTP, real Redis, real RabbitMQ with confirms."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from publisher.errors import AkinonProtocolError, AuthError, BrokerError
from publisher.pages import RecordPage
from publisher.pipeline import StepSpec, StepSummary
from publisher.records import Endpoint, Resource
from publisher.sandbox import SandboxServer
from publisher.service import Edges, run_step
from publisher.state import RedisStateStore
from tests.integration.collect import Collector
from tests.integration.conftest import EdgesFactory
from tests.proxy import TcpProxy
from tests.redis_servers import BACKENDS

pytestmark = pytest.mark.integration


def step(
    edges: Edges, server: SandboxServer, channel_id: int, resource: Resource, **options: Any
) -> StepSummary:
    if options.get("acknowledge"):  # acknowledging drains a work queue, not a list
        options.setdefault("endpoint", Endpoint.INSERTS_OR_UPDATES)
    return run_step(StepSpec(channel_id, resource, server.url, **options), edges)


def sync_both(edges: Edges, server: SandboxServer, channel_id: int) -> int:
    return sum(step(edges, server, channel_id, r).published for r in Resource)


@pytest.mark.parametrize("redis_backend", BACKENDS, indirect=True)
def test_first_step_publishes_every_record_then_only_real_changes(
    sandbox: SandboxServer, make_edges: EdgesFactory, amqp_url: str, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    with Collector(amqp_url, f"*.changed.{channel_id}") as events:
        assert sync_both(edges, sandbox, channel_id) == 60
        first = events.collect(60)
        assert len(first) == 60
        assert {e["type"] for e in first} == {"stock.changed", "price.changed"}
        assert all(e["data"]["before"] is None for e in first)
        # The first load of a list: every record is the current content, a snapshot read.
        assert all(e["data"]["operation"] == "snapshot" for e in first)
        assert all(e["data"]["sequence"] == 1 for e in first)

        events.clear()
        assert sync_both(edges, sandbox, channel_id) == 0
        assert events.settle() == []

        stocks = sandbox.catalog.records(channel_id, Resource.STOCK)[:3]
        prices = sandbox.catalog.records(channel_id, Resource.PRICE)[:2]
        for record in stocks:
            sandbox.catalog.set_stock(channel_id, record["pk"], stock=record["stock"] + 5)
        for record in prices:
            sandbox.catalog.set_price(channel_id, record["id"], price="1.23")
        assert sync_both(edges, sandbox, channel_id) == 5
        changed = events.collect(5)
        assert len(events.settle()) == 5

    by_key = {(e["type"], e["data"]["key"]): e for e in changed}
    for record in stocks:
        data = by_key["stock.changed", record["pk"]]["data"]
        assert data["operation"] == "updated"
        assert data["sequence"] == 2
        assert data["before"]["stock"] == record["stock"]
        assert data["after"]["stock"] == record["stock"] + 5
        # the sandbox derives adjusted_stock from stock, as Omnitron does
        assert data["changed_fields"] == ["stock", "adjusted_stock"]
    for record in prices:
        data = by_key["price.changed", record["id"]]["data"]
        assert data["before"]["price"] == record["price"]
        assert data["after"]["price"] == "1.23"
        assert "price" in data["changed_fields"]
        assert data["sequence"] == 2


def test_a_touch_without_a_content_change_publishes_nothing(
    sandbox: SandboxServer, make_edges: EdgesFactory, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    step(edges, sandbox, channel_id, Resource.STOCK)
    record = sandbox.catalog.records(channel_id, Resource.STOCK)[0]
    sandbox.catalog.set_stock(channel_id, record["pk"], stock=record["stock"])  # new date only
    summary = step(edges, sandbox, channel_id, Resource.STOCK)
    assert summary.seen == 30
    assert summary.published == 0


def test_a_stock_pattern_queue_gets_stock_events_and_unbound_ones_are_kept(
    sandbox: SandboxServer, make_edges: EdgesFactory, amqp_url: str, channel_id: int
) -> None:
    import kombu

    from publisher.broker import UNROUTED_QUEUE

    edges = make_edges(sandbox)
    with Collector(amqp_url, "stock.changed.#") as stocks:
        step(edges, sandbox, channel_id, Resource.STOCK)
        step(edges, sandbox, channel_id, Resource.PRICE)  # nobody is bound for these
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while len(got) < 30 and time.monotonic() < deadline:  # other channels may publish too
            bodies = stocks.collect(len(stocks.messages) + 1, timeout=0.5)
            got = [e for e in bodies if e["data"]["channel_id"] == channel_id]
    assert len(got) == 30
    assert {e["type"] for e in got} == {"stock.changed"}

    with kombu.Connection(amqp_url) as conn:
        unrouted = conn.SimpleQueue(UNROUTED_QUEUE)
        kept = []
        while True:
            try:
                message = unrouted.get(timeout=1)
            except unrouted.Empty:
                break
            message.ack()
            kept.append(message.headers)
        unrouted.close()
    ours = [h for h in kept if h["ce-source"].endswith(f"/channel/{channel_id}")]
    changes = [h for h in ours if h["ce-type"] == "price.changed"]
    assert len(changes) == 30
    # Each first load ends with a reload event; the stock one matched no binding either.
    assert {h["ce-type"] for h in ours} == {"price.changed", "price.reloaded", "stock.reloaded"}


def test_lost_broker_fails_the_step_commits_nothing_and_the_next_step_delivers_all(
    sandbox: SandboxServer,
    make_edges: EdgesFactory,
    amqp_url: str,
    channel_id: int,
    redis_url: str,
) -> None:
    keys = [r["pk"] for r in sandbox.catalog.records(channel_id, Resource.STOCK)]
    proxy = TcpProxy(5672, cut_after_bytes=6000)  # dies part-way through the batch
    flaky = make_edges(sandbox, page_size=30, amqp=proxy.url_for(amqp_url))
    state = RedisStateStore.from_url(redis_url)
    with Collector(amqp_url, f"stock.changed.{channel_id}") as events:
        with pytest.raises(BrokerError):
            step(flaky, sandbox, channel_id, Resource.STOCK)
        assert state.load(channel_id, Resource.STOCK, keys) == {}
        partial_ids = {e["id"] for e in events.settle()}

        healthy = make_edges(sandbox, page_size=30)
        assert step(healthy, sandbox, channel_id, Resource.STOCK).published == 30
        delivered = events.collect(len(partial_ids) + 30)
    state.close()
    proxy.cut()
    final_ids = {e["id"] for e in delivered[len(partial_ids) :]}
    assert len(final_ids) == 30
    assert partial_ids <= final_ids  # a re-published event carries the same id
    assert {e["data"]["key"] for e in delivered} == set(keys)


def test_an_unreachable_broker_fails_the_step_with_state_unchanged(
    sandbox: SandboxServer, make_edges: EdgesFactory, channel_id: int, redis_url: str
) -> None:
    edges = make_edges(sandbox, amqp="amqp://guest:guest@127.0.0.1:1//")
    with pytest.raises(BrokerError):
        step(edges, sandbox, channel_id, Resource.PRICE)
    state = RedisStateStore.from_url(redis_url)
    assert state.tracked(channel_id, Resource.PRICE) == 0
    assert "BrokerError" in state.read_meta(channel_id, Resource.PRICE)["last_error"]
    state.close()


@pytest.mark.parametrize("shape", ["array", "paginated"])
def test_both_list_shapes_page_through_every_record(
    sandbox_factory: Callable[..., SandboxServer],
    make_edges: EdgesFactory,
    channel_id: int,
    shape: str,
) -> None:
    server = sandbox_factory([channel_id], size=95)
    httpx.put(f"{server.url}/_control/shape", json={"shape": shape}).raise_for_status()
    edges = make_edges(server, page_size=10)
    for resource in Resource:
        summary = step(edges, server, channel_id, resource)
        assert (summary.pages, summary.seen, summary.published) == (10, 95, 95)
        # The sandbox's records take the typed pass (the benchmarks measure that way).
        pages = edges.source.iter_pages(channel_id, resource, Endpoint.INSERTS_OR_UPDATES)
        assert all(isinstance(page, RecordPage) for page in pages)


def test_429_and_503_are_retried_and_the_step_completes(
    sandbox: SandboxServer, make_edges: EdgesFactory, channel_id: int
) -> None:
    httpx.put(
        f"{sandbox.url}/_control/faults", json={"rate_limit_next": 1, "retry_after": 1}
    ).raise_for_status()
    edges = make_edges(sandbox)
    assert step(edges, sandbox, channel_id, Resource.STOCK).published == 30
    httpx.put(f"{sandbox.url}/_control/faults", json={"fail_next": 2}).raise_for_status()
    assert step(edges, sandbox, channel_id, Resource.PRICE).published == 30


def test_a_wrong_token_is_reported_clearly_and_not_retried(
    sandbox: SandboxServer, make_edges: EdgesFactory, channel_id: int
) -> None:
    edges = make_edges(sandbox, token="wrong-token")
    before = httpx.get(f"{sandbox.url}/_control/state").json()["requests"]
    with pytest.raises(AuthError) as caught:
        step(edges, sandbox, channel_id, Resource.STOCK)
    after = httpx.get(f"{sandbox.url}/_control/state").json()["requests"]
    assert after - before == 1
    assert "wrong-token" not in str(caught.value)
    assert "401" in str(caught.value) or "token" in str(caught.value).lower()


def test_a_next_link_to_another_host_is_refused(
    sandbox: SandboxServer, make_edges: EdgesFactory, channel_id: int
) -> None:
    httpx.put(f"{sandbox.url}/_control/shape", json={"shape": "paginated"}).raise_for_status()
    httpx.put(f"{sandbox.url}/_control/faults", json={"foreign_next": True}).raise_for_status()
    edges = make_edges(sandbox, page_size=10)
    with pytest.raises(AkinonProtocolError, match=r"evil\.example\.invalid"):
        step(edges, sandbox, channel_id, Resource.PRICE)


def test_a_malformed_record_is_rejected_alone_and_reported_once(
    sandbox: SandboxServer,
    make_edges: EdgesFactory,
    amqp_url: str,
    channel_id: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = sandbox.catalog.records(channel_id, Resource.STOCK)[4]["pk"]
    sandbox.catalog.mark_malformed(channel_id, Resource.STOCK, bad, "stock", "lots")
    edges = make_edges(sandbox)
    with Collector(
        amqp_url, f"stock.changed.{channel_id}", f"stock.rejected.{channel_id}"
    ) as events:
        summary = step(edges, sandbox, channel_id, Resource.STOCK)
        assert (summary.changed, summary.rejected, summary.published) == (29, 1, 30)
        received = events.collect(30)
        (rejected,) = [e for e in received if e["type"] == "record.rejected"]
        assert rejected["subject"] == str(bad)
        assert "stock" in rejected["data"]["reason"]
        assert sum(e["type"] == "stock.changed" for e in received) == 29
        assert f"record rejected channel={channel_id} resource=stock key={bad}" in caplog.text

        events.clear()
        again = step(edges, sandbox, channel_id, Resource.STOCK)
        assert (again.rejected, again.published) == (1, 0)  # already reported
        assert events.settle() == []


def test_acknowledging_drains_the_work_queue(
    sandbox: SandboxServer, make_edges: EdgesFactory, channel_id: int
) -> None:
    edges = make_edges(sandbox, page_size=10)
    first = step(edges, sandbox, channel_id, Resource.STOCK, acknowledge=True)
    assert (first.seen, first.published, first.acknowledged) == (30, 30, 30)
    for record in sandbox.catalog.records(channel_id, Resource.STOCK)[:2]:
        sandbox.catalog.set_stock(channel_id, record["pk"], stock=record["stock"] + 1)
    second = step(edges, sandbox, channel_id, Resource.STOCK, acknowledge=True)
    assert (second.seen, second.published, second.acknowledged) == (2, 2, 2)
    third = step(edges, sandbox, channel_id, Resource.STOCK, acknowledge=True)
    assert third.seen == 0


def test_incremental_steps_fetch_only_recent_records_and_miss_no_change(
    sandbox: SandboxServer, make_edges: EdgesFactory, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    spec = StepSpec(channel_id, Resource.STOCK, sandbox.url, lookback_seconds=0.0)
    first = run_step(spec, edges)
    assert (first.incremental, first.seen, first.published) == (False, 30, 30)

    quiet = run_step(spec, edges)
    assert quiet.incremental
    assert quiet.seen < 5  # only what shares the newest modified_date
    assert quiet.published == 0

    for record in sandbox.catalog.records(channel_id, Resource.STOCK)[3:5]:
        sandbox.catalog.set_stock(channel_id, record["pk"], stock=record["stock"] + 2)
    changed = run_step(spec, edges)
    assert changed.incremental
    assert changed.published == 2
    assert changed.seen < 5

    due = run_step(replace(spec, full_scan_seconds=0.0), edges)
    assert (due.incremental, due.seen, due.published) == (False, 30, 0)
