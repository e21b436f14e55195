"""The order of a sync step's work: a page is confirmed and committed before the next is sent.

That order keeps a consumer at most one uncommitted version of a record ahead of the state:
if a page fails, the next step sends it again from the last committed state, with the same
event ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from publisher.diff import Change
from publisher.errors import BrokerError
from publisher.outgoing import OutgoingEvent
from publisher.pipeline import StepSpec, sync_step
from publisher.records import Resource
from publisher.state import MemoryStateStore
from tests.factories import as_page, stock

PAGES = [
    as_page(Resource.STOCK, p) for p in [[stock(1), stock(2)], [stock(3)], [stock(4), stock(5)]]
]


class Source:
    """Serve fixed pages (a step that does not acknowledge needs nothing else)."""

    def iter_pages(self, *_: Any, **__: Any) -> Iterator[Sequence[Any]]:
        yield from PAGES


class Journal:
    """A publisher and a state store that write down what happens, in order."""

    def __init__(self, refuse_ticket: int | None = None) -> None:
        self.log: list[str] = []
        self.sent: list[OutgoingEvent] = []
        self.store = MemoryStateStore()
        self._refuse = refuse_ticket

    # EventPublisher
    def send(self, events: Sequence[OutgoingEvent]) -> int:
        self.sent += events
        self.log.append(f"send {','.join(e.subject for e in events)}")
        return len(self.sent)

    def confirm(self, ticket: int) -> None:
        self.log.append(f"confirm {ticket}")
        if ticket == self._refuse:
            raise BrokerError("broker refused 1 events")

    def publish(self, events: Sequence[OutgoingEvent]) -> None:
        self.confirm(self.send(events))

    def close(self) -> None:
        pass

    # StateStore: commits are written down, the rest is the in-memory store's
    def commit(
        self, channel_id: int, resource: Resource, changes: Sequence[Change], *rest: Any
    ) -> None:
        self.log.append(f"commit {','.join(str(c.key) for c in changes)}")
        self.store.commit(channel_id, resource, changes, *rest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _step(journal: Journal) -> None:
    spec = StepSpec(7, Resource.STOCK, "http://akinon.test")
    sync_step(spec, Source(), journal, journal)  # type: ignore[arg-type]


def test_each_page_is_confirmed_and_committed_before_the_next_is_sent() -> None:
    journal = Journal()
    _step(journal)
    assert journal.log == [
        "send 1,2",
        "confirm 2",
        "commit 1,2",
        "send 3",
        "confirm 3",
        "commit 3",
        "send 4,5",
        "confirm 5",
        "commit 4,5",
    ]


def test_a_refused_page_is_resent_by_the_next_step_with_the_same_ids() -> None:
    journal = Journal(refuse_ticket=3)  # the confirm of the second page fails
    with pytest.raises(BrokerError):
        _step(journal)
    # Only the first page is committed, and the third was never sent.
    assert journal.log == ["send 1,2", "confirm 2", "commit 1,2", "send 3", "confirm 3"]
    assert journal.store.tracked(7, Resource.STOCK) == 2
    first = {e.subject: e.id for e in journal.sent}

    again = Journal()
    again.store = journal.store
    _step(again)
    assert [e.subject for e in again.sent] == ["3", "4", "5"]
    assert again.sent[0].id == first["3"]
