"""Run the real pipeline over whole channels and measure what a full scan achieves.

A pass is one full-scan `sync_step` per kind (stock, then price) through the real edges:
AkinonClient over loopback HTTP, RedisStateStore, KombuPublisher with confirms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import redis

from bench.env import Sandbox, forget, state_pattern
from publisher.pipeline import StepSpec, sync_step
from publisher.records import Resource
from publisher.service import Edges


@dataclass(frozen=True, slots=True)
class Pass:
    """What one pass over both kinds did, and how long it took."""

    seen: int
    published: int
    seconds: float

    @property
    def records_per_second(self) -> float:
        """Return records scanned per second."""
        return self.seen / self.seconds

    @property
    def events_per_second(self) -> float:
        """Return events published (and confirmed) per second."""
        return self.published / self.seconds


def full_pass(edges: Edges, box: Sandbox) -> Pass:
    """Run one full-scan sync step per kind; return the counts and the time taken."""
    seen = published = 0
    started = time.perf_counter()
    for resource in Resource:
        spec = StepSpec(box.channel_id, resource, box.url)
        summary = sync_step(spec, edges.source, edges.state, edges.publisher)
        seen += summary.seen
        published += summary.published
    return Pass(seen, published, time.perf_counter() - started)


def initial_pass(edges: Edges, box: Sandbox, client: redis.Redis) -> Pass:
    """Forget the channel's state, then run a pass: every record is new."""
    forget(client, box.channel_id)
    return full_pass(edges, box)


def steady_pass(edges: Edges, box: Sandbox, share: float = 0.01) -> Pass:
    """Change `share` of the records through the control API, then run a pass."""
    changes = round(2 * box.size * share)
    response = httpx.post(f"{box.url}/_control/churn", json={"count": changes}, timeout=120)
    response.raise_for_status()
    return full_pass(edges, box)


def bytes_per_record(client: redis.Redis, channel_id: int) -> tuple[float, int]:
    """Sum MEMORY USAGE over the channel's keys; return (bytes per tracked record, tracked).

    Every key under the channel's prefix counts: state buckets, meta and rejections.
    """
    total = 0
    tracked = 0
    for name in client.scan_iter(state_pattern(channel_id), count=1000):
        total += int(client.memory_usage(name, samples=0) or 0)
        if name.endswith(b":meta"):
            tracked += int(client.hget(name, "tracked") or 0)
    return total / max(tracked, 1), tracked
