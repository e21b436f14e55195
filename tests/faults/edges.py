"""The real edges of a step, with the deadlines the fault suite gives them."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from publisher import lock, service
from publisher.akinon import AkinonClient
from publisher.publish import KombuPublisher
from publisher.redis_client import connect
from publisher.service import Edges
from publisher.state import RedisStateStore

TOKEN = "test-token"  # the sandbox's (tests.conftest.SANDBOX_TOKEN)
PAGE_SIZE = 2  # small pages: a step of a few records still has several


def akinon(url: str, *, quick: bool) -> AkinonClient:
    """Return a client of the sandbox; a `quick` one gives up within about a second."""
    return AkinonClient(
        url,
        token=TOKEN,
        page_size=PAGE_SIZE,
        timeout=0.2 if quick else 5.0,
        max_retries=2 if quick else 5,
        backoff_cap=0.02,
    )


def build(client: AkinonClient, redis_url: str, amqp_url: str, *, quick: bool) -> Edges:
    """Return edges to these servers; `quick` ones give up on a silent server within ~0.25 s.

    Steps that meet faults are quick, so a stalled broker or Redis fails them fast; the
    steps that let the system recover wait as long as a deployment's would. (An Akinon
    client costs tens of milliseconds to build, so one is shared by many edges.)
    """
    wait = 0.25 if quick else 5.0
    state = RedisStateStore(connect(redis_url, socket_timeout=wait, socket_connect_timeout=wait))
    publisher = KombuPublisher(
        amqp_url, confirm_timeout=wait, connect_timeout=wait, close_timeout=min(wait, 1.0)
    )
    return Edges(client, state, publisher, redis=state.client)


def close(edges: Edges) -> None:
    """Close the connections of edges whose Akinon client is shared (so not that)."""
    edges.publisher.close()  # type: ignore[attr-defined]
    edges.state.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def short_locks(ttl: float) -> Iterator[None]:
    """Run this process's steps with step locks of `ttl` seconds (a deployment's: a minute),
    so that a frozen or killed step lets another take over within a sequence."""
    original = service.single_flight
    service.single_flight = functools.partial(lock.single_flight, ttl=ttl)
    try:
        yield
    finally:
        service.single_flight = original
