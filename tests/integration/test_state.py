"""One contract, every store: the in-memory twin, and Redis (one server, Cluster, Sentinel)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from publisher import topology
from publisher.deletes import Pending, journal_entries
from publisher.diff import Deletion, Rejection, Stored, diff_page
from publisher.ports import StateStore
from publisher.records import Resource
from publisher.state import MemoryStateStore, RedisStateStore
from tests.factories import as_page, stock
from tests.redis_servers import BACKENDS, backend_url

pytestmark = pytest.mark.integration

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", *BACKENDS])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    real = RedisStateStore.from_url(backend_url(request, request.param))
    yield real
    real.close()


def test_commit_then_load_round_trips_sequence_and_content(
    store: StateStore, channel_id: int
) -> None:
    page = [stock(k) for k in (1, 99, 100, 250)]
    diff = diff_page(as_page(Resource.STOCK, page), {})
    assert store.load(channel_id, Resource.STOCK, [1, 99, 100, 250]) == {}
    store.commit(channel_id, Resource.STOCK, diff.changes, [])
    loaded = store.load(channel_id, Resource.STOCK, [1, 100, 250, 7])
    assert loaded == {c.key: Stored(1, c.after) for c in diff.changes if c.key != 99}
    assert store.tracked(channel_id, Resource.STOCK) == 4
    assert store.load(channel_id, Resource.PRICE, [1]) == {}  # resources are separate


def test_a_loaded_page_diffs_against_versions_overlaid_on_it(
    store: StateStore, channel_id: int
) -> None:
    # What the pipeline does while a page's events await their confirm: the page it loads
    # next must see those versions, not the ones still in the store.
    first = diff_page(as_page(Resource.STOCK, [stock(1, stock=10), stock(2)]), {})
    store.commit(channel_id, Resource.STOCK, first.changes, [])
    pending = diff_page(
        as_page(Resource.STOCK, [stock(1, stock=4)]), store.load(channel_id, Resource.STOCK, [1])
    )
    loaded = store.load(channel_id, Resource.STOCK, [1, 2, 3])
    loaded.overlay({c.key: Stored(c.sequence, c.after) for c in pending.changes})
    assert loaded[1] == Stored(2, pending.changes[0].after)
    assert sorted(loaded) == [1, 2]
    again = diff_page(as_page(Resource.STOCK, [stock(1, stock=10), stock(2), stock(3)]), loaded)
    assert [(c.key, c.operation, c.sequence) for c in again.changes] == [
        (1, "updated", 3),
        (3, "created", 1),
    ]
    assert again.unchanged == 1


def test_rejections_are_remembered_until_the_record_is_valid_again(
    store: StateStore, channel_id: int
) -> None:
    store.commit(channel_id, Resource.STOCK, [], [Rejection(5, "bad", {}, "d5")])
    assert store.load_rejected(channel_id, Resource.STOCK, [5, 6]) == {5: "d5"}
    diff = diff_page(as_page(Resource.STOCK, [stock(5)]), {})
    store.commit(channel_id, Resource.STOCK, diff.changes, [])
    assert store.load_rejected(channel_id, Resource.STOCK, [5]) == {}


def test_the_journal_keeps_versions_sent_until_a_commit_or_forget_of_their_key(
    store: StateStore, channel_id: int
) -> None:
    sent = diff_page(as_page(Resource.STOCK, [stock(k) for k in (1, 2, 3)]), {})
    store.write_pending(channel_id, Resource.STOCK, journal_entries(sent.changes, NOW.isoformat()))
    pending = store.read_pending(channel_id, Resource.STOCK)
    assert pending == {c.key: Pending(1, c.after, NOW) for c in sent.changes}
    assert store.read_pending(channel_id, Resource.PRICE) == {}  # resources are separate
    store.commit(channel_id, Resource.STOCK, sent.changes[:1], [])  # key 1 is stored now
    store.forget(channel_id, Resource.STOCK, [Deletion(2, 2, sent.changes[1].after)])
    assert sorted(store.read_pending(channel_id, Resource.STOCK)) == [3]  # sent, never stored
    store.commit(channel_id, Resource.STOCK, sent.changes[2:], [])
    assert store.read_pending(channel_id, Resource.STOCK) == {}


def test_meta_merges_fields(store: StateStore, channel_id: int) -> None:
    store.write_meta(channel_id, Resource.PRICE, {"last_error": "x"})
    store.write_meta(channel_id, Resource.PRICE, {"last_success_at": "y"})
    assert store.read_meta(channel_id, Resource.PRICE) == {
        "last_error": "x",
        "last_success_at": "y",
    }


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends itself (others may share the server)."""

    sent: list[str]

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return super().execute_command(*args, **options)


def test_redis_reads_a_page_in_one_round_trip(redis_url: str, channel_id: int) -> None:
    client = CountingRedis.from_url(redis_url)
    client.sent = []
    store = RedisStateStore(client)
    diff = diff_page(as_page(Resource.STOCK, [stock(k) for k in range(1, 1001)]), {})
    store.commit(channel_id, Resource.STOCK, diff.changes, [])
    client.sent.clear()
    assert len(store.load(channel_id, Resource.STOCK, list(range(1, 1001)))) == 1000
    assert client.sent == ["MGET"]  # 1,000 records in 11 buckets: one command
    client.close()


def test_redis_keys_share_one_cluster_slot_per_channel_and_resource(channel_id: int) -> None:
    names = [
        topology.state_bucket(channel_id, Resource.STOCK, 0),
        topology.state_bucket(channel_id, Resource.STOCK, 12345),
        topology.rejected(channel_id, Resource.STOCK),
        topology.meta(channel_id, Resource.STOCK),
        topology.pending(channel_id, Resource.STOCK),
        topology.lock(channel_id, Resource.STOCK),
    ]
    tags = {name[name.index("{") + 1 : name.index("}")] for name in names}
    assert tags == {f"{channel_id}:stock"}


def test_redis_failure_is_a_state_store_error(channel_id: int) -> None:
    from publisher.errors import StateStoreError

    dead = RedisStateStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StateStoreError, match="redis read failed"):
        dead.load(channel_id, Resource.STOCK, [1])
    dead.close()


def test_commits_into_one_bucket_merge_and_never_lose_entries(
    store: StateStore, channel_id: int
) -> None:
    first = diff_page(as_page(Resource.STOCK, [stock(k) for k in range(1, 51)]), {})
    second = diff_page(as_page(Resource.STOCK, [stock(k) for k in range(51, 121)]), {})
    store.commit(channel_id, Resource.STOCK, first.changes, [])
    store.commit(channel_id, Resource.STOCK, second.changes, [])
    updated = diff_page(
        as_page(Resource.STOCK, [stock(7, stock=1)]), store.load(channel_id, Resource.STOCK, [7])
    )
    store.commit(channel_id, Resource.STOCK, updated.changes, [])
    loaded = store.load(channel_id, Resource.STOCK, list(range(1, 121)))
    assert sorted(loaded) == list(range(1, 121))
    assert loaded[7].sequence == 2
    assert loaded[8].sequence == 1
    assert store.tracked(channel_id, Resource.STOCK) == 120


def test_back_to_back_commits_into_one_bucket_keep_every_entry(
    store: StateStore, channel_id: int
) -> None:
    # As pages in flight are committed: the second merges into the bucket the first wrote,
    # with no read in between.
    for keys_ in (range(1, 51), range(51, 61), range(61, 71)):
        page = diff_page(as_page(Resource.STOCK, [stock(k) for k in keys_]), {})
        store.commit(channel_id, Resource.STOCK, page.changes, [])
    assert sorted(store.load(channel_id, Resource.STOCK, list(range(1, 100)))) == list(range(1, 71))


@pytest.mark.parametrize("redis_backend", BACKENDS, indirect=True)
def test_commits_interleaved_with_another_writer_keep_every_entry(
    redis_backend: str, channel_id: int
) -> None:
    ours, theirs = RedisStateStore.from_url(redis_backend), RedisStateStore.from_url(redis_backend)
    for number, store_ in enumerate([ours, theirs, ours, theirs, ours]):
        page = diff_page(as_page(Resource.STOCK, [stock(10 * number + k) for k in range(1, 6)]), {})
        store_.commit(channel_id, Resource.STOCK, page.changes, [])
    expected = sorted(10 * n + k for n in range(5) for k in range(1, 6))
    assert sorted(ours.load(channel_id, Resource.STOCK, expected)) == expected
    assert theirs.tracked(channel_id, Resource.STOCK) == len(expected)
    ours.close()
    theirs.close()


def test_redis_commits_a_loaded_page_in_one_round_trip(redis_url: str, channel_id: int) -> None:
    client = CountingRedis.from_url(redis_url)
    client.sent = []
    store = RedisStateStore(client)
    first = diff_page(as_page(Resource.STOCK, [stock(k) for k in range(1, 1001)]), {})
    store.commit(channel_id, Resource.STOCK, first.changes, [])
    page = [stock(k, stock=k % 7) for k in range(1, 1001)]
    loaded = store.load(channel_id, Resource.STOCK, list(range(1, 1001)))
    client.sent.clear()
    store.commit(
        channel_id, Resource.STOCK, diff_page(as_page(Resource.STOCK, page), loaded).changes, []
    )
    assert client.sent == ["EVALSHA"]
    reloaded = store.load(channel_id, Resource.STOCK, list(range(1, 1001)))
    assert diff_page(as_page(Resource.STOCK, page), reloaded).unchanged == 1000
    client.close()


@pytest.mark.parametrize("redis_backend", BACKENDS, indirect=True)
def test_a_commit_over_buckets_another_writer_changed_merges_instead_of_overwriting(
    redis_backend: str, channel_id: int
) -> None:
    ours, theirs = RedisStateStore.from_url(redis_backend), RedisStateStore.from_url(redis_backend)
    ours.commit(
        channel_id, Resource.STOCK, diff_page(as_page(Resource.STOCK, [stock(1)]), {}).changes, []
    )
    loaded = ours.load(channel_id, Resource.STOCK, [7])  # remembers bucket 0 as it is now
    their_change = diff_page(as_page(Resource.STOCK, [stock(5)]), {}).changes
    theirs.commit(channel_id, Resource.STOCK, their_change, [])  # bucket 0 changes under us
    our_change = diff_page(as_page(Resource.STOCK, [stock(7)]), loaded).changes
    ours.commit(channel_id, Resource.STOCK, our_change, [])
    assert sorted(ours.load(channel_id, Resource.STOCK, [1, 5, 7])) == [1, 5, 7]
    assert ours.tracked(channel_id, Resource.STOCK) == 3
    ours.close()
    theirs.close()


def test_a_load_sees_what_another_writer_committed_since_the_last_load(
    redis_url: str, channel_id: int
) -> None:
    # A store keeps the buckets it last read split into lines; another writer's commit must
    # still show on the next load.
    ours, theirs = RedisStateStore.from_url(redis_url), RedisStateStore.from_url(redis_url)
    ours.commit(
        channel_id, Resource.STOCK, diff_page(as_page(Resource.STOCK, [stock(1)]), {}).changes, []
    )
    assert list(ours.load(channel_id, Resource.STOCK, [1, 2])) == [1]
    changed = diff_page(as_page(Resource.STOCK, [stock(1, stock=3), stock(2)]), {1: Stored(1, b"")})
    theirs.commit(channel_id, Resource.STOCK, changed.changes, [])
    again = ours.load(channel_id, Resource.STOCK, [1, 2])
    assert {key: version.sequence for key, version in again.items()} == {1: 2, 2: 1}
    assert diff_page(as_page(Resource.STOCK, [stock(1, stock=3), stock(2)]), again).unchanged == 2
    ours.close()
    theirs.close()


def test_a_bucket_in_the_earlier_layout_reads_and_is_rewritten_on_commit(
    redis_url: str, channel_id: int
) -> None:
    import zlib

    client = redis.Redis.from_url(redis_url)
    form = diff_page(as_page(Resource.STOCK, [stock(305)]), {}).changes[0].after
    without_key = b"[" + form.split(b",", 1)[1]
    legacy = b"5 4 " + without_key  # key 305 = bucket 3, field 5, at sequence 4
    client.set(topology.state_bucket(channel_id, Resource.STOCK, 3), zlib.compress(legacy))
    store = RedisStateStore(client)
    loaded = store.load(channel_id, Resource.STOCK, [305, 306])
    assert dict(loaded) == {305: Stored(4, form)}
    changed = diff_page(as_page(Resource.STOCK, [stock(305, stock=0), stock(306)]), loaded)
    assert [(c.key, c.sequence) for c in changed.changes] == [(305, 5), (306, 1)]
    store.commit(channel_id, Resource.STOCK, changed.changes, [])
    again = store.load(channel_id, Resource.STOCK, [305, 306])
    assert {k: v.sequence for k, v in again.items()} == {305: 5, 306: 1}
    store.close()


def test_a_large_commit_keeps_its_bookkeeping(redis_url: str, channel_id: int) -> None:
    store = RedisStateStore.from_url(redis_url)
    rejected = [Rejection(k, "bad", {}, f"d{k}") for k in range(1, 2501)]
    store.commit(channel_id, Resource.STOCK, [], rejected)
    assert len(store.load_rejected(channel_id, Resource.STOCK, list(range(1, 2501)))) == 2500
    created = diff_page(as_page(Resource.STOCK, [stock(k) for k in range(1, 2401)]), {})
    store.commit(channel_id, Resource.STOCK, created.changes, [])
    still = store.load_rejected(channel_id, Resource.STOCK, list(range(1, 2501)))
    assert sorted(still) == list(range(2401, 2501))  # valid again: no longer rejected
    assert store.tracked(channel_id, Resource.STOCK) == 2400
    store.close()
