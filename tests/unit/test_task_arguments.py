"""Celery task arguments come from whoever can publish to the broker: they are validated.

A channel id is an `int` that the settings configure, a resource one of the known ones;
anything else is refused as a fatal error (never retried), logged, and reaches no edge.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

import publisher.celery as tasks
from publisher.akinon import AkinonClient
from publisher.config import Settings
from publisher.errors import FatalError, UnsafeArgument
from publisher.records import Endpoint, Resource

HOSTILE: list[tuple[Any, Any]] = [
    ("../users/#", "stock"),
    ("1", "stock"),
    (1.0, "stock"),
    (True, "stock"),
    (None, "stock"),
    (99, "stock"),  # an integer, but not a configured channel
    (-1, "stock"),
    (1, "../users"),
    (1, "STOCK"),
    (1, ["stock"]),
    ([1], "stock"),
]


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        _env_file=None, akinon_url="https://omni.example", akinon_channels="1,2", akinon_token="t"
    )
    monkeypatch.setattr(tasks, "_settings", settings)

    def no_edges() -> None:
        raise AssertionError("a refused task must not reach Akinon, Redis or the broker")

    monkeypatch.setattr(tasks, "edges", no_edges)


@pytest.mark.parametrize(("channel_id", "resource"), HOSTILE)
@pytest.mark.usefixtures("configured")
def test_sync_refuses_arguments_that_are_not_a_configured_step(
    channel_id: Any, resource: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    with pytest.raises(UnsafeArgument) as refused:
        tasks.sync(channel_id, resource)
    assert isinstance(refused.value, FatalError)  # autoretry_for names RetryableError only
    assert "refused" in caplog.text
    assert "\n" not in caplog.records[-1].getMessage()


@pytest.mark.parametrize(("channel_id", "resource"), HOSTILE)
@pytest.mark.usefixtures("configured")
def test_snapshot_refuses_the_same_arguments(channel_id: Any, resource: Any) -> None:
    with pytest.raises(UnsafeArgument):
        tasks.snapshot(channel_id, resource)


@pytest.mark.usefixtures("configured")
def test_snapshot_refuses_a_queue_that_is_not_a_name() -> None:
    with pytest.raises(UnsafeArgument):
        tasks.snapshot(1, "stock", {"name": "x"})


@pytest.mark.usefixtures("configured")
def test_a_configured_step_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, Resource]] = []

    def run_step(spec: Any, *_: Any) -> Any:
        seen.append((spec.channel_id, spec.resource))
        raise FatalError("stop here")

    monkeypatch.setattr(tasks, "edges", lambda: None)
    monkeypatch.setattr(tasks, "run_step", run_step)
    with pytest.raises(FatalError, match="stop here"):
        tasks.sync(2, "price")
    assert seen == [(2, Resource.PRICE)]


@pytest.mark.parametrize("channel_id", ["../users/#", "1", True, 0, -3, 1.5])
def test_the_client_builds_request_paths_from_positive_integers_only(channel_id: Any) -> None:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=[])

    with AkinonClient(
        "https://omni.example", token="t", transport=httpx.MockTransport(answer)
    ) as client:
        with pytest.raises(UnsafeArgument):
            list(client.iter_pages(channel_id, Resource.STOCK, Endpoint.LIST))
        with pytest.raises(UnsafeArgument):
            client.get_price(channel_id, 5)
        with pytest.raises(UnsafeArgument):
            client.get_price(5, channel_id)
        with pytest.raises(UnsafeArgument):
            client.acknowledge(channel_id, Resource.STOCK, [(1, "2026-01-01T00:00:00Z")])
    assert requests == []


@pytest.mark.usefixtures("configured")
def test_a_huge_refused_argument_is_logged_short(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with pytest.raises(UnsafeArgument):
        tasks.sync("x" * 100_000, "stock")
    assert len(caplog.records[-1].getMessage()) < 400
