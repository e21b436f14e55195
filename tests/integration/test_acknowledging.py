"""Acknowledging mode never blocks a channel: real sandbox, real Redis, real RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from publisher.akinon import AkinonClient
from publisher.errors import AkinonUnavailable
from publisher.pipeline import StepSpec, StepSummary
from publisher.publish import KombuPublisher
from publisher.records import Endpoint, Resource
from publisher.sandbox import SandboxServer
from publisher.service import Edges, run_step
from publisher.state import RedisStateStore
from tests.conftest import SANDBOX_TOKEN
from tests.integration.collect import Collector

pytestmark = pytest.mark.integration


@pytest.fixture
def edges(sandbox: SandboxServer, redis_url: str, amqp_url: str) -> Iterator[Edges]:
    client = AkinonClient(
        sandbox.url, token=SANDBOX_TOKEN, page_size=10, backoff_cap=0.05, max_retries=2
    )
    state = RedisStateStore.from_url(redis_url)
    built = Edges(client, state, KombuPublisher(amqp_url, confirm_timeout=5), redis=state.client)
    yield built
    built.close()


Step = Callable[..., StepSummary]


@pytest.fixture
def drain(edges: Edges, sandbox: SandboxServer, channel_id: int) -> Step:
    def run(**options: Any) -> StepSummary:
        spec = StepSpec(
            channel_id,
            options.pop("resource", Resource.STOCK),
            sandbox.url,
            endpoint=Endpoint.INSERTS_OR_UPDATES,
            acknowledge=True,
            **options,
        )
        return run_step(spec, edges)

    return run


def control(sandbox: SandboxServer, method: str, path: str, **body: Any) -> Any:
    response = httpx.request(method, f"{sandbox.url}/_control/{path}", json=body or None)
    response.raise_for_status()
    return response.json()


def test_a_batch_left_in_commit_is_marked_done_by_the_next_step(
    sandbox: SandboxServer, drain: Step, channel_id: int
) -> None:
    control(sandbox, "PATCH", "faults", hold_in_commit=True)  # killed between commit and done
    with pytest.raises(AkinonUnavailable):
        drain()
    (held,) = control(sandbox, "GET", "state")["batches"]["open"]
    assert held["status"] == "commit"
    committed = sandbox.catalog.batch(channel_id, held["pk"])["objects"]
    assert len(committed) == 10

    control(sandbox, "PATCH", "faults", hold_in_commit=False)
    summary = drain()
    assert summary.batches_recovered == 1
    assert (summary.acknowledged, summary.drained_because) == (20, "empty")
    done = sandbox.catalog.batch(channel_id, held["pk"])
    assert done["status"] == "done"
    # marked done with the objects and versions it committed
    assert [(o["pk"], o["version_date"]) for o in done["objects"]] == [
        (o["pk"], o["version_date"]) for o in committed
    ]
    assert control(sandbox, "GET", "state")["batches"]["open"] == []
    again = drain()
    assert (again.seen, again.batches_recovered, again.drained_because) == (0, 0, "empty")


def test_other_integrations_batches_are_never_touched(
    sandbox: SandboxServer, drain: Step, channel_id: int
) -> None:
    catalog = sandbox.catalog
    theirs = catalog.create_batch(channel_id)["pk"]
    record = catalog.records(channel_id, Resource.PRICE)[0]
    item = {"pk": record["id"], "version_date": record["modified_date"]}
    catalog.update_batch(
        channel_id, theirs, {"status": "commit", "content_type": "productprice", "objects": [item]}
    )
    catalog.update_batch(channel_id, theirs, {"status": "sent_to_remote"})
    idle = catalog.create_batch(channel_id)["pk"]

    assert drain().acknowledged == 30
    assert catalog.batch(channel_id, theirs)["status"] == "sent_to_remote"
    assert catalog.batch(channel_id, idle)["status"] == "initialized"


def test_a_queue_headed_by_bad_records_drains(
    sandbox: SandboxServer, drain: Step, channel_id: int, amqp_url: str
) -> None:
    bad = [r["pk"] for r in sandbox.catalog.records(channel_id, Resource.STOCK)[:10]]
    for pk in bad:
        sandbox.catalog.mark_malformed(channel_id, Resource.STOCK, pk, "stock", "many")
    with Collector(amqp_url, f"stock.rejected.{channel_id}") as rejected:
        first = drain()
        assert (first.seen, first.rejected, first.acknowledged) == (30, 10, 30)
        assert first.drained_because == "empty"
        assert sorted(int(e["subject"]) for e in rejected.collect(10)) == bad
    errors = control(sandbox, "GET", f"errors/{channel_id}/stock")
    assert sorted(e["pk"] for e in errors) == bad
    assert {e["failed_reason_type"] for e in errors} == {"channel_app"}

    assert drain().seen == 0  # they come back only when they change
    sandbox.catalog.set_stock(channel_id, bad[0], stock=7)
    fixed = drain()
    assert (fixed.seen, fixed.published, fixed.rejected) == (1, 1, 0)


def test_a_drain_stops_at_its_cap_and_says_so(drain: Step) -> None:
    capped = drain(max_rounds=2)
    assert (capped.pages, capped.acknowledged, capped.drained_because) == (2, 20, "cap")
    rest = drain(max_rounds=2)
    assert (rest.acknowledged, rest.drained_because) == (10, "empty")


def test_a_drain_stops_on_a_page_that_acknowledges_nothing_new(
    sandbox: SandboxServer, drain: Step, channel_id: int
) -> None:
    head = sandbox.catalog.records(channel_id, Resource.STOCK)[0]["pk"]
    # no readable modified_date: it cannot be acknowledged, so it stays at the head
    sandbox.catalog.mark_malformed(channel_id, Resource.STOCK, head, "modified_date", "zzz")
    summary = drain()
    assert summary.acknowledged == 29
    # pages of 10: three full rounds, then the head and the last two, then the head alone
    assert (summary.pages, summary.drained_because) == (5, "nothing new")


def test_a_batch_patch_whose_answer_was_lost_is_not_sent_twice(
    sandbox: SandboxServer, drain: Step, channel_id: int
) -> None:
    # Akinon applies the commit and the done, and the gateway answers 504 to both.
    control(sandbox, "PATCH", "faults", lost_answer_next=2)
    summary = drain()
    assert (summary.acknowledged, summary.drained_because) == (30, "empty")
    batches = control(sandbox, "GET", "batches")
    assert {b["status"] for b in batches} == {"done"}
    assert control(sandbox, "GET", "faults")["lost_answer_next"] == 0
