"""The pipeline's own figures: sync throughput, latency, memory."""

from __future__ import annotations

import random
import statistics
import threading
import time
from dataclasses import dataclass

import httpx
import redis

from bench.env import AMQP_URL, REDIS_URL, TOKEN, Sandbox
from publisher.akinon import AkinonClient
from publisher.pipeline import StepSpec, StepSummary
from publisher.publish import KombuPublisher
from publisher.records import Resource
from publisher.service import Edges, run_step
from publisher.state import RedisStateStore
from tests.integration.collect import Collector


def edges_for(box: Sandbox) -> Edges:
    """Build the real edges a worker would use, against the sandbox."""
    state = RedisStateStore.from_url(REDIS_URL)
    client = AkinonClient(box.url, token=TOKEN, page_size=1000)
    return Edges(client, state, KombuPublisher(AMQP_URL), redis=state.client)


@dataclass(frozen=True)
class Rate:
    """How much a set of steps did per second."""

    records: float
    events: float


def full_sync(edges: Edges, box: Sandbox) -> Rate:
    """Run one full-scan step per resource; return records and events per second."""
    summaries: list[StepSummary] = []
    started = time.perf_counter()
    for resource in Resource:
        summaries.append(run_step(StepSpec(box.channel_id, resource, box.url), edges))
    elapsed = time.perf_counter() - started
    seen = sum(s.seen for s in summaries)
    published = sum(s.published for s in summaries)
    return Rate(seen / elapsed, published / elapsed)


def forget(client: redis.Redis, channel_id: int) -> None:
    """Delete a channel's stored state, so the next sync sees every record as new."""
    for name in client.scan_iter(f"akp:{{{channel_id}:*", count=1000):
        client.delete(name)


def churn(box: Sandbox, count: int) -> None:
    """Change `count` random records through the sandbox's control API."""
    response = httpx.post(f"{box.url}/_control/churn", json={"count": count}, timeout=120)
    response.raise_for_status()


def redis_bytes_per_record(client: redis.Redis, channel_id: int, tracked: int) -> float:
    """Sum MEMORY USAGE over the channel's state keys; divide by the records tracked."""
    total = 0
    for name in client.scan_iter(f"akp:{{{channel_id}:*", count=1000):
        total += int(client.memory_usage(name) or 0)
    return total / max(tracked, 1)


def latency(box: Sandbox, changes: int, interval: float = 1.0) -> tuple[float, float]:
    """Poll every `interval` s while making single changes; return p50 and p99 in seconds."""
    edges = edges_for(box)
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(edges, box, interval, stop), daemon=True)
    delays: list[float] = []
    with Collector(AMQP_URL, f"*.changed.{box.channel_id}") as events:
        poller.start()
        rng = random.Random(5)
        stocks = [r["pk"] for r in _sample(box, Resource.STOCK, rng)]
        for number in range(changes):
            pk = stocks[number % len(stocks)]
            changed_at = time.time()
            _change(box, pk, number)
            delays.append(_arrival(events, pk, number) - changed_at)
            time.sleep(rng.uniform(0.0, 0.2))
    stop.set()
    poller.join()
    edges.close()
    delays.sort()
    return statistics.median(delays), delays[min(len(delays) - 1, int(len(delays) * 0.99))]


def _poll(edges: Edges, box: Sandbox, interval: float, stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        for resource in Resource:
            spec = StepSpec(box.channel_id, resource, box.url, lookback_seconds=120.0)
            run_step(spec, edges)
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


def _sample(box: Sandbox, resource: Resource, rng: random.Random) -> list[dict[str, int]]:
    url = f"{box.url}/api/v1/channel/{box.channel_id}/{resource.path}/"
    response = httpx.get(url, params={"limit": 1000}, headers={"Authorization": f"Token {TOKEN}"})
    rows: list[dict[str, int]] = response.json()["results"]
    rng.shuffle(rows)
    return rows


def _change(box: Sandbox, pk: int, number: int) -> None:
    body = {"pk": pk, "stock": 100_000 + number}
    url = f"{box.url}/_control/records/{box.channel_id}/stock"
    httpx.post(url, json=body, timeout=10).raise_for_status()


def _arrival(events: Collector, pk: int, number: int, timeout: float = 10.0) -> float:
    """Wait for the event carrying change `number`; return when it arrived (epoch s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies = events.collect(len(events.messages) + 1, timeout=0.05)
        for body, arrived in zip(bodies, events.arrivals, strict=True):
            data = body["data"]
            if data["key"] == pk and data["after"].get("stock") == 100_000 + number:
                events.clear()
                return arrived
    raise TimeoutError(f"no event for change {number} of {pk} within {timeout}s")
