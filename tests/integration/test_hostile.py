"""Hostile data and unlucky timing, end to end: the sandbox, real Redis, real RabbitMQ.

Each test reproduces one way a step used to crash, repeat itself or roll state back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import pytest

from publisher import topology
from publisher.akinon import AkinonClient
from publisher.diff import Change
from publisher.errors import AkinonUnavailable, PublisherError
from publisher.fingerprint import record_canonical
from publisher.pages import RecordPage
from publisher.pipeline import StepSpec, StepSummary
from publisher.publish import KombuPublisher
from publisher.records import Resource, StockRecord
from publisher.sandbox import SandboxServer
from publisher.service import Edges, run_step
from publisher.state import RedisStateStore
from tests.conftest import SANDBOX_TOKEN
from tests.integration.collect import Collector
from tests.integration.services import Processes, celery, service_env

pytestmark = pytest.mark.integration


@pytest.fixture
def make_edges(redis_url: str, amqp_url: str) -> Iterator[Callable[..., Edges]]:
    built: list[Edges] = []

    def make(server: SandboxServer, *, page_size: int = 10) -> Edges:
        client = AkinonClient(
            server.url, token=SANDBOX_TOKEN, page_size=page_size, backoff_cap=0.05, max_retries=1
        )
        state = RedisStateStore.from_url(redis_url)
        edges = Edges(client, state, KombuPublisher(amqp_url, confirm_timeout=5), state.client)
        built.append(edges)
        return edges

    yield make
    for edges in built:
        edges.close()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_an_extra_field_nested_too_deep_is_rejected_alone(
    sandbox: SandboxServer, make_edges: Callable[..., Edges], amqp_url: str, channel_id: int
) -> None:
    bad = sandbox.catalog.records(channel_id, Resource.STOCK)[7]["pk"]
    # About as deep as a server's JSON encoder still writes: the event's envelope around it
    # would take it past what orjson encodes.
    sandbox.catalog.mark_malformed(channel_id, Resource.STOCK, bad, "extra_field", nested(252))
    edges = make_edges(sandbox)
    with Collector(amqp_url, f"stock.*.{channel_id}") as events:
        summary = run_step(StepSpec(channel_id, Resource.STOCK, sandbox.url), edges)
        assert (summary.changed, summary.rejected, summary.published) == (29, 1, 30)
        (rejected,) = [e for e in events.collect(30) if e["type"] == "record.rejected"]
    assert rejected["subject"] == str(bad)
    assert "nested" in rejected["data"]["reason"]


class _BreaksOnPage2:
    """A source whose second page raises `error` instead of arriving."""

    def __init__(self, source: Any, error: Exception) -> None:
        self._source = source
        self._error = error

    def iter_pages(self, *args: Any, **options: Any) -> Iterator[RecordPage]:
        options["prefetch"] = False  # no helper thread left fetching the page after
        with closing(self._source.iter_pages(*args, **options)) as pages:
            for number, page in enumerate(pages):
                if number == 1:
                    raise self._error
                yield page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)  # batches, close: the real source's


def test_an_unforeseen_exception_is_the_services_own_error_and_is_recorded(
    sandbox: SandboxServer, make_edges: Callable[..., Edges], channel_id: int, redis_url: str
) -> None:
    edges = make_edges(sandbox)
    edges.source = _BreaksOnPage2(edges.source, ZeroDivisionError("a bug nobody foresaw"))
    with pytest.raises(PublisherError, match="ZeroDivisionError: a bug nobody foresaw"):
        run_step(StepSpec(channel_id, Resource.STOCK, sandbox.url), edges)
    state = RedisStateStore.from_url(redis_url)
    meta = state.read_meta(channel_id, Resource.STOCK)
    state.close()
    assert "ZeroDivisionError: a bug nobody foresaw" in meta["last_error"]


def test_a_page_before_a_failing_one_is_published_once(
    sandbox: SandboxServer, make_edges: Callable[..., Edges], amqp_url: str, channel_id: int
) -> None:
    edges = make_edges(sandbox)
    edges.source = _BreaksOnPage2(edges.source, AkinonUnavailable("page 2 keeps failing"))
    spec = StepSpec(channel_id, Resource.STOCK, sandbox.url)
    with Collector(amqp_url, f"stock.changed.{channel_id}") as events:
        for _ in range(3):
            with pytest.raises(PublisherError, match="page 2 keeps failing"):
                run_step(spec, edges)
        published = events.settle()
    assert len(published) == 10  # page 1, once: committed after its confirms
    assert len({e["id"] for e in published}) == 10


def test_a_record_without_an_integer_key_is_reported_once(
    sandbox: SandboxServer, make_edges: Callable[..., Edges], amqp_url: str, channel_id: int
) -> None:
    pk = sandbox.catalog.records(channel_id, Resource.STOCK)[3]["pk"]
    sandbox.catalog.mark_malformed(channel_id, Resource.STOCK, pk, "pk", f"{pk}-x")
    edges = make_edges(sandbox)
    spec = StepSpec(channel_id, Resource.STOCK, sandbox.url)
    with Collector(amqp_url, f"stock.rejected.{channel_id}") as events:
        rejected = [run_step(spec, edges).rejected for _ in range(3)]
        reported = events.settle()
    assert len(reported) == 1
    assert reported[0]["data"]["key"] is None
    assert rejected[0] == 1


@pytest.mark.parametrize("date", ["2099-01-01T00:00:00.000000Z", "zzz"])
def test_a_bad_modified_date_is_rejected_and_never_moves_the_watermark(
    sandbox: SandboxServer,
    make_edges: Callable[..., Edges],
    channel_id: int,
    redis_url: str,
    date: str,
) -> None:
    edges = make_edges(sandbox)
    spec = StepSpec(channel_id, Resource.STOCK, sandbox.url, lookback_seconds=0.0)
    run_step(spec, edges)
    first = sandbox.catalog.records(channel_id, Resource.STOCK)[0]
    sandbox.catalog.mark_malformed(channel_id, Resource.STOCK, first["pk"], "modified_date", date)
    poisoned = run_step(spec, edges)  # a complete scan: the first step's was not that long ago
    assert poisoned.rejected == 1
    state = RedisStateStore.from_url(redis_url)
    meta = state.read_meta(channel_id, Resource.STOCK)
    state.close()
    assert meta["watermark"] < "2090"

    # Later changes still come through incremental steps.
    second = sandbox.catalog.records(channel_id, Resource.STOCK)[1]
    sandbox.catalog.set_stock(channel_id, second["pk"], stock=second["stock"] + 3)
    after = run_step(spec, edges)
    assert after.incremental
    assert after.published == 1


def _take_lock_and_move_on(
    server: SandboxServer,
    edges: Edges,
    channel_id: int,
    keys: list[int],
    pause: Callable[[float], None],
) -> Callable[[StepSummary], None]:
    """Act as if the step paused past its TTL while another one took the lock and moved on."""
    done: list[bool] = []

    def on_page(_: StepSummary) -> None:
        if done:
            return
        done.append(True)
        pause(120.0)  # the step's clock moves on, its renewer with it, as in a SIGSTOP
        for key in keys:
            server.catalog.set_stock(channel_id, key, stock=777)
        assert edges.redis is not None
        edges.redis.delete(topology.lock(channel_id, Resource.STOCK))  # its TTL ran out
        run_step(StepSpec(channel_id, Resource.STOCK, server.url), edges)

    return on_page


def test_a_step_that_lost_its_lock_publishes_and_commits_nothing_more(
    sandbox: SandboxServer,
    make_edges: Callable[..., Edges],
    amqp_url: str,
    channel_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    from publisher import lock

    def pause(seconds: float) -> None:
        monkeypatch.setattr(lock, "_clock", lambda: time.monotonic() + seconds)

    paused, other = make_edges(sandbox), make_edges(sandbox)
    keys = [r["pk"] for r in sandbox.catalog.records(channel_id, Resource.STOCK)[10:20]]
    spec = StepSpec(channel_id, Resource.STOCK, sandbox.url)
    with Collector(amqp_url, f"stock.changed.{channel_id}") as events:
        on_page = _take_lock_and_move_on(sandbox, other, channel_id, keys, pause)
        with pytest.raises(PublisherError, match="lock"):
            run_step(spec, paused, on_page)
        published = events.settle()
    moved = [e["data"] for e in published if e["data"]["key"] in keys]
    assert [d for d in moved if d["after"]["stock"] != 777] == []  # nothing stale after it
    assert other.state.load(channel_id, Resource.STOCK, keys).keys() == set(keys)
    stored = other.state.load(channel_id, Resource.STOCK, keys)
    assert all(b"777" in stored[key].canonical for key in keys)
    again = run_step(spec, other)
    assert again.published == 0


def test_a_stale_commit_never_moves_a_stored_version_back(
    sandbox: SandboxServer, make_edges: Callable[..., Edges], channel_id: int
) -> None:
    first, second = make_edges(sandbox, page_size=30), make_edges(sandbox, page_size=30)
    spec = StepSpec(channel_id, Resource.STOCK, sandbox.url)
    run_step(spec, first)
    served = sandbox.catalog.records(channel_id, Resource.STOCK)[0]
    key = served["pk"]
    for stock in (1, 2, 3):
        sandbox.catalog.set_stock(channel_id, key, stock=stock)
        run_step(spec, second)
    # `first` remembers the bucket as it wrote it (sequence 1); a version it computed from
    # there (sequence 2) meets the newer bucket on commit, and must not win.
    record = StockRecord.model_validate({**served, "stock": 55})
    form, content = record_canonical(record)
    stale = Change(key, "updated", 2, None, form, record, content)
    first.state.commit(channel_id, Resource.STOCK, [stale], [])
    stored = second.state.load(channel_id, Resource.STOCK, [key])[key]
    assert stored.sequence == 4
    assert b"55" not in stored.canonical.split(b",")[3]


def test_a_step_past_its_time_limit_fails_recorded_and_releases_its_lock(
    sandbox: SandboxServer, make_edges: Callable[..., Edges], channel_id: int
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    from publisher.celery import celery_config
    from publisher.config import load_settings
    from publisher.lock import holder

    edges = make_edges(sandbox)
    strikes = SoftTimeLimitExceeded("SoftTimeLimitExceeded()")  # during the second page
    edges.source = _BreaksOnPage2(edges.source, strikes)
    with pytest.raises(PublisherError, match="SoftTimeLimitExceeded"):
        run_step(StepSpec(channel_id, Resource.STOCK, sandbox.url), edges)
    assert edges.redis is not None
    assert holder(edges.redis, channel_id, Resource.STOCK) is None
    meta = edges.state.read_meta(channel_id, Resource.STOCK)
    assert "SoftTimeLimitExceeded" in meta["last_error"]

    configured = load_settings(
        akinon_url=sandbox.url,
        akinon_token="t",
        akinon_channels=[1],
        step_time_limit_seconds=600,
    )
    limits = celery_config(configured)
    assert limits["task_annotations"]["akinon.sync"] == {
        "soft_time_limit": 600.0,
        "time_limit": 630.0,
    }


def test_the_unrouted_queue_is_bounded_and_what_waits_there_is_reported(
    amqp_url: str, channel_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    import amqp
    import kombu

    from tests.integration.test_publish import _events

    with kombu.Connection(amqp_url) as conn:
        conn.default_channel.queue_delete(topology.UNROUTED_QUEUE)
        first = KombuPublisher(amqp_url)
        first.publish(_events(channel_id, 3))  # no queue is bound for them
        first.close()
        with pytest.raises(amqp.exceptions.PreconditionFailed, match="x-max-length"):
            conn.channel().queue_declare(topology.UNROUTED_QUEUE, durable=True, auto_delete=False)
    assert "unrouted events=" not in caplog.text
    second = KombuPublisher(amqp_url)
    second.publish(_events(channel_id + 1, 1))
    second.close()
    assert "unrouted events=3 queue=akinon.unrouted" in caplog.text


def test_a_snapshot_never_raises_an_exception_that_is_not_ours(
    sandbox: SandboxServer, make_edges: Callable[..., Edges], channel_id: int
) -> None:
    from publisher.errors import StepCrashed
    from publisher.records import Endpoint
    from publisher.service import run_snapshot
    from publisher.snapshot import SnapshotSpec

    edges = make_edges(sandbox)
    edges.source = _BreaksOnPage2(edges.source, ZeroDivisionError("a bug nobody foresaw"))
    spec = SnapshotSpec(channel_id, Resource.STOCK, sandbox.url, "s1", None, Endpoint.LIST)
    with pytest.raises(StepCrashed, match="ZeroDivisionError"):
        run_snapshot(spec, edges)


def test_a_worker_stops_a_step_at_its_time_limit_and_frees_the_lock(
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    import time

    import httpx
    from celery import Celery

    from publisher.celery import SYNC_TASK
    from publisher.lock import holder
    from publisher.redis_client import connect

    # A server that answers, slowly: without a time limit the step would hold its lock as
    # long as the server keeps it talking.
    httpx.put(f"{sandbox.url}/_control/faults", json={"latency_ms": 800}).raise_for_status()
    env = service_env(sandbox, channel_id, redis_url, amqp_url, STEP_TIME_LIMIT_SECONDS="1.5")
    prefork = celery("worker", "--pool=prefork", "--concurrency=1", "--without-mingle")
    processes.start("worker", [*prefork, "--without-gossip", "--loglevel=INFO"], env)
    processes.wait_for(" ready.")
    client = Celery("test-client", broker=amqp_url)
    client.send_task(SYNC_TASK, args=(channel_id, "stock"), queue=env["CELERY_QUEUE"])
    client.close()
    state = RedisStateStore.from_url(redis_url)
    deadline = time.monotonic() + 20
    while "SoftTimeLimitExceeded" not in state.read_meta(channel_id, Resource.STOCK).get(
        "last_error", ""
    ):
        assert time.monotonic() < deadline, processes.logs()
        time.sleep(0.2)
    redis_client = connect(redis_url)
    assert holder(redis_client, channel_id, Resource.STOCK) is None  # released, not expired
    redis_client.close()
    state.close()


def test_a_lock_whose_renewals_fail_past_its_ttl_counts_as_lost(
    redis_url: str, channel_id: int
) -> None:
    import time

    from publisher.errors import LockLost
    from publisher.lock import StepLock
    from publisher.redis_client import connect
    from tests.proxy import TcpProxy

    proxy = TcpProxy(6379)
    client = connect(proxy.url_for(redis_url))
    lock = StepLock(client, channel_id, Resource.STOCK, ttl=0.6)
    assert lock.acquire()
    proxy.cut()  # Redis out of reach: the renewer cannot get through
    deadline = time.monotonic() + 5
    while not lock.lost:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(LockLost):
        lock.ensure()
    lock.release()
    client.close()
