"""Shared fixtures: real Redis and RabbitMQ on loopback, fresh channel ids per test."""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

if TYPE_CHECKING:
    from publisher.sandbox import SandboxServer

# A Redis Cluster and a Sentinel setup, started on demand: see tests/redis_servers.py.
pytest_plugins = ["tests.redis_servers"]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")

# Distinct channel ids per test keep Redis keys and routing keys from colliding with older
# runs and with each other, without flushing a database someone may be using.
_channel_ids = itertools.count(int(time.time() * 1000) % 10_000_000 * 10)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _require(host: str, port: int, what: str) -> None:
    if _reachable(host, port):
        return
    message = f"{what} is not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)  # in CI a missing server is a failure, never a skip
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _no_settings_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a `.env` in the working directory (a developer's, in the checkout) out of tests."""
    monkeypatch.setattr("publisher.config.ENV_FILE", None)


@pytest.fixture
def redis_url() -> str:
    """Return the URL of the real test Redis (database 15)."""
    _require("127.0.0.1", 6379, "Redis")
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """Return a client of the real test Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def amqp_url() -> str:
    """Return the URL of the real RabbitMQ."""
    _require("127.0.0.1", 5672, "RabbitMQ")
    return AMQP_URL


@pytest.fixture
def channel_id() -> int:
    """Return a channel id no other test of this run uses."""
    return next(_channel_ids)


SANDBOX_TOKEN = "test-token"


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    """Start sandboxes on ephemeral ports; stop them all after the test."""
    from publisher.sandbox import Catalog, SandboxServer

    started: list[SandboxServer] = []

    def start(channels: list[int], size: int = 30, **options: Any) -> SandboxServer:
        catalog = Catalog.seeded(channels=channels, size=size, seed=1)
        server = SandboxServer(
            catalog,
            host="127.0.0.1",
            port=0,
            token=SANDBOX_TOKEN,
            username="sandbox",
            password="sandbox-password",
            **options,
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxServer], channel_id: int) -> SandboxServer:
    """A sandbox serving 30 stocks and 30 prices for this test's channel."""
    return sandbox_factory([channel_id])
