"""The bucket strings the Redis state store keeps: pure encoding, no server."""

from __future__ import annotations

import zlib

import lz4.block

from publisher.buckets import Bucket, encode_bucket
from publisher.diff import Stored


def _form(key: int, stock: int) -> bytes:
    return b'[%d,1,"qty",%d,0,{},7,null,null]' % (key, stock)


def test_a_bucket_round_trips_its_versions() -> None:
    versions = {5: Stored(1, _form(5, 3)), 12: Stored(7, _form(12, 0)), 1: Stored(2, _form(1, 9))}
    bucket = Bucket.decode(encode_bucket(versions.values()), 0)
    assert bucket.versions() == versions
    assert set(bucket.forms) == {v.canonical for v in versions.values()}


def test_find_matches_the_whole_key_only() -> None:
    bucket = Bucket.decode(encode_bucket([Stored(4, _form(123, 1)), Stored(9, _form(12, 2))]), 1)
    assert bucket.find(12) == Stored(9, _form(12, 2))
    assert bucket.find(123) == Stored(4, _form(123, 1))
    assert bucket.find(1) is None
    assert bucket.find(23) is None


def test_a_missing_bucket_is_empty() -> None:
    empty = Bucket.decode(None, 3)
    assert (empty.forms, empty.versions(), empty.find(300)) == ([], {}, None)


def test_a_bucket_written_before_the_key_moved_into_the_form_still_reads() -> None:
    # The earlier layout: `<key % 100> <sequence> <form without the key>` per line.
    legacy = b'5 3 [1,"qty",3,0,{},7,null,null]\n12 1 [1,"qty",0,0,{},7,null,null]'
    bucket = Bucket.decode(zlib.compress(legacy), 42)
    assert bucket.versions() == {
        4205: Stored(3, _form(4205, 3)),
        4212: Stored(1, _form(4212, 0)),
    }
    assert bucket.find(4212) == Stored(1, _form(4212, 0))


def test_a_bucket_is_written_as_lz4_and_a_zlib_one_of_an_earlier_version_still_reads() -> None:
    versions = [Stored(1, _form(3, 1)), Stored(2, _form(30, 2))]
    written = encode_bucket(versions)
    assert written.startswith(b"L") and lz4.block.decompress(written[1:]).startswith(b"=1 2\n")
    earlier = zlib.compress(b"=1 2\n" + _form(3, 1) + b"\n" + _form(30, 2), 1)
    bucket = Bucket.decode(earlier, 0)
    assert bucket.versions() == {3: versions[0], 30: versions[1]}
    # Merging into it writes LZ4 again.
    assert bucket.merged({30: Stored(3, _form(30, 9))}).encoded().startswith(b"L")


def test_merging_replaces_known_keys_and_adds_new_ones() -> None:
    bucket = Bucket.decode(encode_bucket([Stored(1, _form(3, 1)), Stored(2, _form(30, 2))]), 0)
    merged = bucket.merged({30: Stored(3, _form(30, 9)), 31: Stored(1, _form(31, 5))})
    assert Bucket.decode(merged.encoded(), 0).versions() == {
        3: Stored(1, _form(3, 1)),
        30: Stored(3, _form(30, 9)),
        31: Stored(1, _form(31, 5)),
    }


def test_merging_never_moves_a_record_back_and_removes_deleted_keys() -> None:
    bucket = Bucket.decode(encode_bucket([Stored(4, _form(3, 4)), Stored(2, _form(30, 2))]), 0)
    # A writer that read sequence 2 of key 3 before another moved it to 4 merges late.
    merged = bucket.merged({3: Stored(2, _form(3, 2)), 30: None})
    assert Bucket.decode(merged.encoded(), 0).versions() == {3: Stored(4, _form(3, 4))}
