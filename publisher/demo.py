"""Run the whole product in one process with nothing installed but this package.

The sandbox serves a small live catalog over real HTTP, the same pipeline polls it on a
schedule, an in-memory state store stands in for Redis and kombu's `memory://` transport for
RabbitMQ, and a tail prints every event as it arrives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from publisher.akinon import AkinonClient
from publisher.errors import PublisherError
from publisher.pipeline import StepSpec
from publisher.publish import KombuPublisher
from publisher.records import Resource
from publisher.sandbox import Catalog, SandboxServer
from publisher.service import Edges, run_step
from publisher.state import MemoryStateStore
from publisher.tail import event_line, json_line, tail

TOKEN = "demo-token"
BROKER = "memory://"


def run_demo(
    channels: Sequence[int],
    *,
    size: int,
    interval: float,
    churn: float,
    duration: float,
    as_json: bool,
    out: Callable[[str], None],
    stop: threading.Event,
) -> None:
    """Serve, poll, publish and print until `stop` is set or `duration` runs out."""
    with SandboxServer(
        Catalog.seeded(channels=list(channels), size=size, seed=7),
        host="127.0.0.1",
        port=0,
        token=TOKEN,
    ) as server:
        ready = threading.Event()
        show: Callable[[bytes], None] = (
            (lambda body: out(json_line(body))) if as_json else (lambda body: out(event_line(body)))
        )
        printer = threading.Thread(
            target=tail,
            args=(BROKER, "#", show),
            kwargs={"stop": stop, "ready": ready},
            daemon=True,
            name="demo-tail",
        )
        printer.start()
        ready.wait(5)
        out(
            f"# demo: Akinon sandbox at {server.url}, channels {list(channels)}, "
            f"polling every {interval:g}s, {churn:g} changes/s; Ctrl-C to stop"
        )
        if churn > 0:
            server.run_churn(churn)
        edges = Edges(
            AkinonClient(server.url, token=TOKEN, page_size=100),
            MemoryStateStore(),
            KombuPublisher(BROKER),
        )
        try:
            _poll_until_stopped(server.url, channels, edges, interval, duration, out, stop)
        finally:
            stop.set()
            printer.join(timeout=5)
            edges.close()


def _poll_until_stopped(
    url: str,
    channels: Sequence[int],
    edges: Edges,
    interval: float,
    duration: float,
    out: Callable[[str], None],
    stop: threading.Event,
) -> None:
    deadline = time.monotonic() + duration if duration > 0 else None
    while not stop.is_set():
        for channel_id in channels:
            for resource in Resource:
                try:
                    summary = run_step(StepSpec(channel_id, resource, url), edges)
                except PublisherError as exc:
                    out(f"# step channel={channel_id} resource={resource.value} failed: {exc}")
                    continue
                if summary.published:
                    out(f"# step {summary.line()}")
        if deadline is not None and time.monotonic() >= deadline:
            return
        stop.wait(interval)
