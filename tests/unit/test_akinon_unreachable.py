"""An unreachable or misaddressed Akinon: one retry cycle per run, one line naming the host,
and a 404 that says what to fix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from publisher.akinon import AkinonClient, TokenCache
from publisher.errors import AkinonProtocolError, AkinonUnavailable
from publisher.records import Endpoint, Resource


class Down:
    """A transport whose host refuses connections until `up` is set."""

    def __init__(self) -> None:
        self.up = False
        self.attempts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if not self.up:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200, json=[])


@pytest.fixture
def down() -> Iterator[tuple[AkinonClient, Down, list[float]]]:
    host = Down()
    sleeps: list[float] = []
    client = AkinonClient(
        "https://omni.internal:8000",
        token="t",
        max_retries=5,
        sleep=sleeps.append,
        token_cache=TokenCache(),
        transport=httpx.MockTransport(host),
    )
    yield client, host, sleeps
    client.close()


def _scan(client: AkinonClient, channel_id: int = 1, **kwargs: Any) -> list[Any]:
    return list(client.iter_pages(channel_id, Resource.STOCK, Endpoint.LIST, prefetch=False))


def test_a_host_that_is_down_costs_one_retry_cycle_then_one_attempt_per_request(
    down: tuple[AkinonClient, Down, list[float]],
) -> None:
    client, host, sleeps = down
    with pytest.raises(AkinonUnavailable) as first:
        _scan(client)
    assert host.attempts == 6 and len(sleeps) == 5
    message = str(first.value)
    assert "\n" not in message
    assert "Akinon at https://omni.internal:8000 is unreachable" in message
    assert "Connection refused" in message
    for channel_id in (1, 2, 3):
        with pytest.raises(AkinonUnavailable, match="still unreachable") as later:
            _scan(client, channel_id)
        assert "https://omni.internal:8000" in str(later.value)
    assert host.attempts == 9 and len(sleeps) == 5  # one attempt each, no pause

    host.up = True
    _scan(client)  # the host is back: this succeeds and clears the outage
    host.up = False
    attempts = host.attempts
    with pytest.raises(AkinonUnavailable, match="is unreachable"):
        _scan(client)
    assert host.attempts - attempts == 6  # back up, so a new outage gets a whole cycle


def _answering_404(base_url: str) -> AkinonClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "Not found."})

    return AkinonClient(
        base_url, token="t", token_cache=TokenCache(), transport=httpx.MockTransport(answer)
    )


def test_a_404_under_a_base_url_ending_in_api_v1_says_to_drop_it() -> None:
    with (
        _answering_404("https://omni.example/api/v1") as client,
        pytest.raises(AkinonProtocolError) as refused,
    ):
        _scan(client, 5)
    message = str(refused.value)
    assert "HTTP 404" in message
    assert "AKINON_URL" in message and "without /api/v1" in message
    assert "https://omni.example" in message


def test_a_404_for_a_channel_says_to_check_the_channel_and_the_base_url() -> None:
    with (
        _answering_404("https://omni.example") as client,
        pytest.raises(AkinonProtocolError) as refused,
    ):
        _scan(client, 77)
    message = str(refused.value)
    assert "HTTP 404" in message
    assert "channel 77" in message and "AKINON_CHANNELS" in message
    assert "AKINON_URL" in message
