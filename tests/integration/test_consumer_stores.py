"""One contract, two sequence stores: the in-memory one must behave like the Redis one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from publisher.consumer import Applied, MemoryStore, RecordRef, RedisStore, SequenceStore
from publisher.redis_client import connect

pytestmark = pytest.mark.integration

REF = RecordRef(7, "stock.changed", 1234)


@pytest.fixture(params=["memory", "redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[SequenceStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    queue = f"test.store.{uuid.uuid4().hex[:8]}"
    if request.param == "cluster":  # every key of a queue hashes to one slot: {<queue>}
        made = RedisStore(connect(request.getfixturevalue("redis_cluster_url")), queue)
    else:
        made = RedisStore.from_url(request.getfixturevalue("redis_url"), queue)
    yield made
    made.forget_all()
    made.close()


def test_a_record_never_seen_has_no_last_event(store: SequenceStore) -> None:
    assert store.last(REF) is None


def test_remember_then_read_back(store: SequenceStore) -> None:
    store.remember(REF, Applied(1, "a"))
    assert store.last(REF) == Applied(1, "a")
    store.remember(REF, Applied(2, "b"))
    assert store.last(REF) == Applied(2, "b")


def test_a_record_never_moves_backwards(store: SequenceStore) -> None:
    store.remember(REF, Applied(5, "e"))
    store.remember(REF, Applied(4, "d"))
    assert store.last(REF) == Applied(5, "e")


def test_the_same_sequence_with_another_id_replaces_it(store: SequenceStore) -> None:
    store.remember(REF, Applied(5, "e"))
    store.remember(REF, Applied(5, "e2"))
    assert store.last(REF) == Applied(5, "e2")


def test_records_are_independent_by_channel_stream_and_key(store: SequenceStore) -> None:
    others = [
        RecordRef(8, "stock.changed", 1234),
        RecordRef(7, "price.changed", 1234),
        RecordRef(7, "stock.changed", 1235),
        RecordRef(7, "stock.changed", 1334),  # same slot, next bucket
        RecordRef(7, "stock.rejected", None),
    ]
    store.remember(REF, Applied(3, "c"))
    for number, ref in enumerate(others, start=1):
        assert store.last(ref) is None
        store.remember(ref, Applied(number, f"id-{number}"))
    assert store.last(REF) == Applied(3, "c")
    assert [store.last(ref) for ref in others] == [
        Applied(n, f"id-{n}") for n in range(1, len(others) + 1)
    ]


def test_redis_keys_share_one_cluster_slot_per_queue(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, "erp.stock")
    key, slot = store.where(RecordRef(7, "stock.changed", 1234))
    assert (key, slot) == ("akc:{erp.stock}:7:stock.changed:12", "34")
    other, _ = store.where(RecordRef(9, "price.changed", 5))
    assert other.startswith("akc:{erp.stock}:")
    assert store.where(RecordRef(7, "stock.rejected", None)) == (
        "akc:{erp.stock}:7:stock.rejected:none",
        "none",
    )


def test_forget_all_removes_only_this_queues_keys(redis_url: str) -> None:
    mine = RedisStore.from_url(redis_url, f"test.store.{uuid.uuid4().hex[:8]}")
    theirs = RedisStore.from_url(redis_url, f"test.store.{uuid.uuid4().hex[:8]}")
    try:
        for store in (mine, theirs):
            store.remember(REF, Applied(1, "a"))
            store.remember(RecordRef(7, "stock.changed", 99_999), Applied(1, "b"))
        assert mine.forget_all() == 2
        assert mine.last(REF) is None
        assert theirs.last(REF) == Applied(1, "a")
    finally:
        theirs.forget_all()
        mine.close()
        theirs.close()


@pytest.mark.parametrize(
    "stored",
    [b"-1 x", b"abc", b"", b"5", b"1e400 x 5", b"7 x notanumber", b"\xff\xfe", b"3 x -5"],
)
def test_an_odd_stored_value_is_replaced_by_the_next_event(redis_url: str, stored: bytes) -> None:
    store = RedisStore.from_url(redis_url, f"test.store.{uuid.uuid4().hex[:8]}")
    key, slot = store.where(REF)
    store.client.hset(key, slot, stored)
    store.last(REF)  # readable or not, never an error
    store.remember(REF, Applied(2, "b", 1_000))
    assert store.last(REF) == Applied(2, "b", 1_000)
    store.forget_all()
    store.close()
