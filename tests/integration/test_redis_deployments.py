"""Redis beyond one server: step locks on every backend, a Sentinel failover, wrong URLs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.sentinel import Sentinel

from publisher.akinon import AkinonClient
from publisher.errors import ConfigError, StateStoreError
from publisher.lock import StepLock, holder, single_flight
from publisher.pipeline import StepSpec, StepSummary
from publisher.publish import KombuPublisher
from publisher.records import Resource
from publisher.redis_client import connect
from publisher.sandbox import SandboxServer
from publisher.service import Edges, run_step
from publisher.state import RedisStateStore
from tests.conftest import SANDBOX_TOKEN
from tests.redis_servers import BACKENDS, SERVICE, SentinelSetup, Server

pytestmark = pytest.mark.integration

FAILOVER_SECONDS = 20.0


@pytest.fixture
def edges_for(amqp_url: str) -> Iterator[Callable[[str, SandboxServer], Edges]]:
    built: list[Edges] = []

    def make(url: str, server: SandboxServer) -> Edges:
        state = RedisStateStore.from_url(url)
        source = AkinonClient(server.url, token=SANDBOX_TOKEN, page_size=10, max_retries=0)
        edges = Edges(source, state, KombuPublisher(amqp_url, confirm_timeout=5), state.client)
        built.append(edges)
        return edges

    yield make
    for edges in built:
        edges.close()


def stock_step(edges: Edges, server: SandboxServer, channel_id: int) -> StepSummary:
    return run_step(StepSpec(channel_id, Resource.STOCK, server.url), edges)


@pytest.mark.parametrize("redis_backend", BACKENDS, indirect=True)
def test_one_step_per_channel_and_resource_holds_the_lock(
    redis_backend: str, channel_id: int
) -> None:
    client = connect(redis_backend)
    with single_flight(client, channel_id, Resource.STOCK) as taken:
        assert taken
        with single_flight(client, channel_id, Resource.STOCK) as again:
            assert not again
        with single_flight(client, channel_id, Resource.PRICE) as other:
            assert other
        assert holder(client, channel_id, Resource.STOCK) is not None
    assert holder(client, channel_id, Resource.STOCK) is None
    renewed = StepLock(client, channel_id, Resource.STOCK, ttl=0.3)
    assert renewed.acquire()
    time.sleep(0.5)  # past the TTL: only the renewal keeps it
    assert holder(client, channel_id, Resource.STOCK) == renewed.token
    assert not renewed.lost
    renewed.release()
    assert holder(client, channel_id, Resource.STOCK) is None
    client.close()


def _wait_for_master(setup: SentinelSetup, port: int) -> None:
    sentinels = Sentinel([("127.0.0.1", setup.sentinel.port)], socket_timeout=1)
    deadline = time.monotonic() + FAILOVER_SECONDS
    try:
        while time.monotonic() < deadline:
            try:
                if sentinels.discover_master(SERVICE)[1] == port:
                    return
            except redis.RedisError:
                pass  # no master while the sentinel fails over
            time.sleep(0.1)
    finally:
        sentinels.close()
    pytest.fail(f"the sentinel did not promote the replica within {FAILOVER_SECONDS:.0f} s")


def test_after_a_sentinel_failover_the_next_step_succeeds_with_state_intact(
    fresh_sentinel: SentinelSetup,
    sandbox: SandboxServer,
    edges_for: Callable[[str, SandboxServer], Edges],
    channel_id: int,
) -> None:
    edges = edges_for(fresh_sentinel.url, sandbox)
    assert stock_step(edges, sandbox, channel_id).published == 30
    master = fresh_sentinel.master.client()
    assert master.execute_command("WAIT", 1, 5000) == 1  # the replica has every commit
    master.close()

    fresh_sentinel.master.kill()
    # A step now may run before or after the promotion; if it fails, the error is retryable.
    with contextlib.suppress(StateStoreError):
        stock_step(edges, sandbox, channel_id)
    _wait_for_master(fresh_sentinel, fresh_sentinel.replica.port)

    summary = stock_step(edges, sandbox, channel_id)
    assert summary.skipped_because is None
    assert summary.seen == 30
    assert summary.published == 0  # the promoted replica had every record's state


def _redirecting_node(nodes: list[Server], key: str) -> Server:
    """Return a cluster node that does not serve `key` (it answers MOVED)."""
    for node in nodes:
        client = node.client()
        try:
            client.get(key)
        except redis.ResponseError:
            return node
        finally:
            client.close()
    raise AssertionError(f"every node serves {key}")


def test_a_plain_url_at_one_cluster_node_fails_the_step_with_a_config_error_at_once(
    redis_cluster: list[Server],
    sandbox: SandboxServer,
    edges_for: Callable[[str, SandboxServer], Edges],
    channel_id: int,
) -> None:
    from publisher import topology

    node = _redirecting_node(redis_cluster, topology.lock(channel_id, Resource.STOCK))
    edges = edges_for(f"redis://127.0.0.1:{node.port}/0", sandbox)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"REDIS_URL .*redis\+cluster://") as failed:
        stock_step(edges, sandbox, channel_id)
    assert time.monotonic() - started < 2  # no retry loop
    assert "\n" not in str(failed.value)


def test_a_database_other_than_0_on_a_cluster_node_is_a_config_error(
    redis_cluster: list[Server], channel_id: int
) -> None:
    store = RedisStateStore.from_url(f"redis://127.0.0.1:{redis_cluster[0].port}/3")
    with pytest.raises(ConfigError, match="REDIS_URL names a database"):
        store.load(channel_id, Resource.STOCK, [1])
    store.close()


def test_urls_naming_the_wrong_kind_of_deployment_are_config_errors(
    redis_url: str, redis_sentinel: SentinelSetup, channel_id: int
) -> None:
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    with pytest.raises(ConfigError, match="REDIS_URL names a Redis Cluster, but the server"):
        connect(f"redis+cluster://127.0.0.1:{port}")
    not_sentinels = RedisStateStore.from_url(f"redis+sentinel://127.0.0.1:{port}/{SERVICE}")
    with pytest.raises(ConfigError, match="REDIS_URL names sentinels"):
        not_sentinels.load(channel_id, Resource.STOCK, [1])
    not_sentinels.close()
    a_sentinel = RedisStateStore.from_url(f"redis://127.0.0.1:{redis_sentinel.sentinel.port}/0")
    with pytest.raises(ConfigError, match="redis\\+sentinel://"):
        a_sentinel.load(channel_id, Resource.STOCK, [1])
    a_sentinel.close()


def test_an_unreachable_cluster_is_a_retryable_error() -> None:
    with pytest.raises(StateStoreError, match="redis cluster discovery failed"):
        connect("redis+cluster://127.0.0.1:1")
