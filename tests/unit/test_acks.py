"""Batch requests of ours always end: what `recover` does with each status it finds."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from publisher.acks import decode_journal, encode_journal, recover
from publisher.ports import Ack
from publisher.records import Resource
from publisher.state import MemoryStateStore


class Batches:
    """Answer batch reads from a dict and record every move."""

    def __init__(self, statuses: dict[str, str | None]) -> None:
        self.statuses = statuses
        self.moves: list[tuple[str, str, list[Ack]]] = []

    def batch_status(self, channel_id: int, pk: str) -> str | None:
        return self.statuses[pk]

    def move_batch(
        self, channel_id: int, resource: Resource, pk: str, status: str, acks: Sequence[Ack]
    ) -> None:
        self.moves.append((pk, status, list(acks)))


ACKS = [Ack(1, "2026-01-01T00:00:00Z"), Ack(2, "2026-01-02T00:00:00Z", "channel_app")]


def test_the_journal_round_trips_and_an_unreadable_one_is_none() -> None:
    assert decode_journal(encode_journal(ACKS)) == ACKS
    assert decode_journal(b"{oops") is None
    assert decode_journal(b'[["x"]]') is None


@pytest.mark.parametrize(
    ("status", "journal", "move"),
    [
        ("commit", encode_journal(ACKS), ("done", ACKS)),
        ("sent_to_remote", encode_journal(ACKS), ("done", ACKS)),
        ("ongoing", encode_journal(ACKS), ("done", ACKS)),
        ("commit", b"not json", ("fail", [])),
        ("initialized", encode_journal(ACKS), ("fail", [])),
        ("done", encode_journal(ACKS), None),
        ("fail", encode_journal(ACKS), None),
        (None, encode_journal(ACKS), None),
    ],
)
def test_each_batch_of_ours_is_ended_and_forgotten(
    status: str | None, journal: bytes, move: tuple[str, list[Ack]] | None
) -> None:
    state = MemoryStateStore()
    state.save_batch(5, Resource.STOCK, "9", journal)
    source = Batches({"9": status})
    recovery = recover(source, state, 5, Resource.STOCK)  # type: ignore[arg-type]
    assert source.moves == ([] if move is None else [("9", *move)])
    assert recovery.touched == (0 if move is None else 1)
    assert state.open_batches(5, Resource.STOCK) == {}


def test_only_batches_written_down_are_read() -> None:
    source = Batches({})  # any read would raise KeyError
    assert recover(source, MemoryStateStore(), 5, Resource.PRICE).touched == 0  # type: ignore[arg-type]
