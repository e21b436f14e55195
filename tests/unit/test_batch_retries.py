"""A batch-request PATCH is retried only after reading the batch (issue 17, item 12)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from publisher.akinon import AkinonClient
from publisher.akinon.auth import TokenCache
from publisher.errors import AkinonProtocolError
from publisher.ports import Ack
from publisher.records import Resource

URL = "/api/v1/channel/5/batch_requests/9/"


class Batch:
    """One batch request behind a gateway that may lose the answer to an applied PATCH."""

    def __init__(self, status: str, answers: list[int]) -> None:
        self.status = status
        self.answers = answers  # statuses for the next PATCHes (applied first if 504)
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.seen.append("GET")
            return httpx.Response(200, json={"pk": 9, "status": self.status})
        wanted = orjson.loads(request.content)["status"]
        self.seen.append(f"PATCH {wanted}")
        answer = self.answers.pop(0) if self.answers else 200
        if answer == 503:  # refused before it was applied
            return httpx.Response(503, json={"detail": "unavailable"})
        if wanted == self.status:
            return httpx.Response(
                400, json={"status": [f"Cannot move a batch from {wanted} to {wanted}."]}
            )
        self.status = wanted
        return httpx.Response(answer, json={"pk": 9, "status": wanted})


Build = Callable[[Batch], AkinonClient]


@pytest.fixture
def client() -> Iterator[Build]:
    made: list[AkinonClient] = []

    def build(batch: Batch) -> AkinonClient:
        made.append(
            AkinonClient(
                "https://omnitron.example.com",
                token="t",
                token_cache=TokenCache(),
                transport=httpx.MockTransport(batch),
                sleep=lambda _: None,
                max_retries=3,
            )
        )
        return made[-1]

    yield build
    for each in made:
        each.close()


ACKS = [Ack(1, "2026-01-01T00:00:00Z")]


def test_an_applied_patch_whose_answer_was_lost_is_not_sent_again(client: Build) -> None:
    batch = Batch("initialized", [504])
    client(batch).move_batch(5, Resource.STOCK, "9", "commit", ACKS)
    assert batch.seen == ["PATCH commit", "GET"]
    assert batch.status == "commit"


def test_a_patch_that_was_not_applied_is_sent_again_after_reading_the_batch(client: Build) -> None:
    batch = Batch("commit", [503, 503])
    client(batch).move_batch(5, Resource.STOCK, "9", "done", ACKS)
    assert batch.seen == ["PATCH done", "GET", "PATCH done", "GET", "PATCH done"]
    assert batch.status == "done"


def test_a_first_patch_that_is_refused_is_not_retried(client: Build) -> None:
    batch = Batch("commit", [])
    with pytest.raises(AkinonProtocolError, match="from commit to commit"):
        client(batch).move_batch(5, Resource.STOCK, "9", "commit", ACKS)
    assert batch.seen == ["PATCH commit"]
