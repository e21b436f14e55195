"""The watermark never passes a change the scan could have missed (issue 16, item 2).

A scan that outlasts the lookback: a record on a page the scan has already passed changes,
then a record on a later page changes after it. The scan sees only the later change; the
next incremental step must still find the earlier one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from publisher.akinon import AkinonClient
from publisher.pages import RecordPage
from publisher.pipeline import StepSpec
from publisher.publish import KombuPublisher
from publisher.records import Endpoint, Resource
from publisher.sandbox import SandboxServer
from publisher.service import Edges, run_step
from publisher.state import RedisStateStore
from tests.conftest import SANDBOX_TOKEN

pytestmark = pytest.mark.integration

LOOKBACK = 0.5


class ChangesMidScan:
    """Yield the client's pages; after page 1, change a record of page 1, wait past the
    lookback, then change a record of the last page (not read yet)."""

    def __init__(self, client: AkinonClient, sandbox: SandboxServer, channel_id: int) -> None:
        self.client, self.sandbox, self.channel_id = client, sandbox, channel_id
        self.armed = False
        self.passed_key: int | None = None

    def iter_pages(
        self,
        channel_id: int,
        resource: Resource,
        endpoint: Endpoint,
        params: Mapping[str, str] | None = None,
        *,
        prefetch: bool = True,
    ) -> Iterator[RecordPage]:
        for number, page in enumerate(
            self.client.iter_pages(channel_id, resource, endpoint, params)
        ):
            if self.armed and number == 0:
                self.armed = False
                catalog = self.sandbox.catalog
                records = catalog.records(channel_id, Resource.STOCK)
                self.passed_key = records[0]["pk"]  # on page 1, which was just read
                catalog.set_stock(channel_id, records[0]["pk"], stock=records[0]["stock"] + 1)
                time.sleep(LOOKBACK * 2)
                catalog.set_stock(channel_id, records[-1]["pk"], stock=records[-1]["stock"] + 1)
            yield page

    def acknowledge(self, *_: Any) -> None:
        raise AssertionError("read-only")

    def close(self) -> None:
        self.client.close()


def test_a_change_on_an_already_passed_page_is_found_by_the_next_incremental_step(
    sandbox_factory: Any, channel_id: int, redis_url: str, amqp_url: str
) -> None:
    sandbox = sandbox_factory([channel_id], size=30)
    # One page in flight, so that page 3 is asked for only after the changes.
    client = AkinonClient(sandbox.url, token=SANDBOX_TOKEN, page_size=10, max_in_flight=1)
    source = ChangesMidScan(client, sandbox, channel_id)
    state = RedisStateStore.from_url(redis_url)
    edges = Edges(source, state, KombuPublisher(amqp_url, confirm_timeout=5), redis=state.client)  # type: ignore[arg-type]
    every_time = StepSpec(
        channel_id, Resource.STOCK, sandbox.url, lookback_seconds=LOOKBACK, full_scan_seconds=1e-9
    )
    incremental = StepSpec(
        channel_id, Resource.STOCK, sandbox.url, lookback_seconds=LOOKBACK, full_scan_seconds=3600
    )
    try:
        assert run_step(every_time, edges).published == 30  # the first load
        source.armed = True
        # A full scan of three pages: page 1 read, its first record changed, past the lookback
        # the last page's record changed too; the scan sees only the later change.
        scan = run_step(every_time, edges)
        assert not scan.incremental and scan.published == 1
        assert scan.duration_seconds > LOOKBACK
        found = run_step(incremental, edges)
        assert found.incremental
        assert source.passed_key is not None
        changed = state.load(channel_id, Resource.STOCK, [source.passed_key])
        assert changed.current(source.passed_key).sequence == 2  # type: ignore[union-attr]
    finally:
        edges.close()
