"""Fixtures of the integration tests: the real edges, built against the sandbox."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from examples.erp_connector import ErpConnector
from publisher.akinon import AkinonClient
from publisher.publish import KombuPublisher
from publisher.sandbox import SandboxServer
from publisher.service import Edges
from publisher.state import RedisStateStore
from tests.conftest import SANDBOX_TOKEN
from tests.integration.services import Processes

EdgesFactory = Callable[..., Edges]


@pytest.fixture
def make_edges(redis_backend: str, amqp_url: str) -> Iterator[EdgesFactory]:
    built: list[Edges] = []

    def make(
        server: SandboxServer,
        *,
        page_size: int = 10,
        token: str = SANDBOX_TOKEN,
        amqp: str | None = None,
    ) -> Edges:
        client = AkinonClient(
            server.url, token=token, page_size=page_size, backoff_cap=0.2, max_retries=3
        )
        state = RedisStateStore.from_url(redis_backend)
        edges = Edges(
            client, state, KombuPublisher(amqp or amqp_url, confirm_timeout=5), redis=state.client
        )
        built.append(edges)
        return edges

    yield make
    for edges in built:
        edges.close()


PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_dsn() -> str:
    """Return the DSN of the real PostgreSQL (database `test`)."""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        message = "PostgreSQL is not reachable on 127.0.0.1:5432"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # in CI a missing server is a failure, never a skip
        pytest.skip(message)
    return os.environ.get("TEST_PG_DSN", PG_DSN)


ErpFactory = Callable[[str], ErpConnector]


@pytest.fixture
def make_erp(pg_dsn: str, channel_id: int) -> Iterator[ErpFactory]:
    """ERP connectors on tables of their own (named after the test's channel), dropped after."""
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        tables: list[str] = []

        def make(name: str) -> ErpConnector:
            tables.append(f"erp_{name}_{channel_id}")
            connector = ErpConnector(db, tables[-1])
            connector.create_table()
            return connector

        yield make
        for table in tables:
            db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


@pytest.fixture
def erp(make_erp: ErpFactory) -> ErpConnector:
    """An ERP connector on a table of its own, dropped afterwards."""
    return make_erp("test")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start the product's processes for a test (`services`); stop them all after it."""
    started = Processes(tmp_path)
    yield started
    started.stop()
