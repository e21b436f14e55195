"""Measure how long a single change takes to arrive as an event while a worker polls.

A poller thread runs what a worker's beat runs, every `interval` seconds: one `run_step` per
kind with the service's default plan (incremental: records modified since the watermark
minus 120 s; a full scan only every 900 s, so once, before the first change). Meanwhile
single changes, stock and price in turn and each on a different record, are made through
the sandbox's control API at random moments (0.1 to 0.5 s apart, so they fall anywhere in
the poll cycle), and a consumer on a queue bound to the channel's routing keys notes when
each record's event arrives. Latency is arrival minus the moment just before the change
request was sent; p50 and p99 are nearest-rank percentiles.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson
from kombu.connection import Connection
from kombu.entity import Exchange, Queue, binding
from kombu.messaging import Consumer

from bench.env import AMQP_URL, Sandbox, edges_for
from publisher import topology
from publisher.pipeline import StepSpec
from publisher.records import Resource
from publisher.sandbox.channels import first_key
from publisher.service import Edges, run_step

LOOKBACK_SECONDS: Final = 120.0  # the service's default incremental lookback
_ARRIVAL_SECONDS: Final = 20.0  # give up on events this long after the last change


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of change-to-event delays, in seconds."""

    p50: float
    p99: float
    samples: int


@dataclass
class _Log:
    """When each (kind, key) was changed and when its event arrived (monotonic seconds)."""

    changed: dict[tuple[str, int], float] = field(default_factory=dict)
    arrived: dict[tuple[str, int], float] = field(default_factory=dict)
    # What each change wrote: only the event carrying it counts as its arrival (an earlier
    # event for the same record, say from the first round, must not).
    expected: dict[tuple[str, int], Any] = field(default_factory=dict)

    def delays(self) -> list[float]:
        return sorted(self.arrived[k] - t for k, t in self.changed.items() if k in self.arrived)


def percentile(ordered: list[float], share: float) -> float:
    """Return the nearest-rank percentile of sorted values (`share` in 0..1)."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def measure(box: Sandbox, changes: int, interval: float = 1.0) -> Latency:
    """Poll every `interval` s, make `changes` single changes; return the delay percentiles."""
    log = _Log()
    poller = _Poller(edges_for(box), box, interval)
    with _Arrivals(box.channel_id, log) as drain:
        poller.start()
        try:
            poller.first_round.wait()
            changer = threading.Thread(target=_make_changes, args=(box, changes, log))
            changer.start()
            _collect(drain, log, changer, changes)
            changer.join()
        finally:
            poller.stop()
    delays = log.delays()
    if len(delays) < changes:
        raise RuntimeError(f"only {len(delays)} of {changes} changes arrived as events")
    return Latency(percentile(delays, 0.50), percentile(delays, 0.99), len(delays))


class _Poller(threading.Thread):
    """Run one step per kind every `interval` seconds until stopped."""

    def __init__(self, edges: Edges, box: Sandbox, interval: float) -> None:
        super().__init__(name="bench-poller", daemon=True)
        self.edges, self.box, self.interval = edges, box, interval
        self.first_round = threading.Event()
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                for resource in Resource:
                    spec = StepSpec(
                        self.box.channel_id,
                        resource,
                        self.box.url,
                        lookback_seconds=LOOKBACK_SECONDS,
                    )
                    run_step(spec, self.edges)
                self.first_round.set()
                self._stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))
        except BaseException as exc:  # handed to the main thread, which re-raises it
            self.error = exc
            self.first_round.set()

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        self.edges.close()
        if self.error is not None:
            raise RuntimeError("the poller failed") from self.error


def _make_changes(box: Sandbox, changes: int, log: _Log) -> None:
    rng = random.Random(7)
    indexes = rng.sample(range(box.size), changes)
    with httpx.Client(base_url=box.url, timeout=10) as client:
        for number, index in enumerate(indexes):
            resource = Resource.STOCK if number % 2 == 0 else Resource.PRICE
            key = first_key(box.channel_id) + index
            time.sleep(rng.uniform(0.1, 0.5))
            body = _change(resource, key, number)
            log.expected[(resource.value, key)] = _marker(resource, body)
            log.changed[(resource.value, key)] = time.monotonic()
            url = f"/_control/records/{box.channel_id}/{resource.value}"
            client.post(url, json=body).raise_for_status()


def _marker(resource: Resource, content: dict[str, Any]) -> Any:
    return content["stock"] if resource is Resource.STOCK else content["price"]


def _change(resource: Resource, key: int, number: int) -> dict[str, Any]:
    if resource is Resource.STOCK:
        return {"pk": key, "stock": 500_000 + number}
    return {"id": key, "retail_price": "5000.00", "price": f"{1000 + number}.00"}


class _Arrivals:
    """Bind an exclusive queue to the channel's change events; note each arrival."""

    def __init__(self, channel_id: int, log: _Log) -> None:
        self._connection = Connection(AMQP_URL)
        self._log = log
        bindings = [
            binding(
                Exchange(topology.exchange_for(resource), "topic", passive=True),
                routing_key=topology.changed_routing_key(resource, channel_id),
            )
            for resource in Resource
        ]
        queue = Queue(
            f"akinon.bench.latency.{channel_id}",
            bindings=bindings,
            exclusive=True,
            auto_delete=True,
        )
        self._consumer = Consumer(
            self._connection.channel(), [queue], on_message=self._arrived, no_ack=True
        )

    def _arrived(self, message: Any) -> None:
        now = time.monotonic()
        document = orjson.loads(message.body)
        kind = document["type"].partition(".")[0]
        where = (kind, document["data"]["key"])
        expected = self._log.expected.get(where)
        if expected is not None and _marker(Resource(kind), document["data"]["after"]) == expected:
            self._log.arrived.setdefault(where, now)

    def __enter__(self) -> Connection:
        self._consumer.consume()
        return self._connection

    def __exit__(self, *_: object) -> None:
        self._consumer.cancel()
        self._connection.release()


def _collect(drain: Connection, log: _Log, changer: threading.Thread, changes: int) -> None:
    """Drain arrivals until every change has its event, or until the deadline."""
    deadline = math.inf
    while len(log.arrived) < changes and time.monotonic() < deadline:
        if not changer.is_alive() and deadline == math.inf:
            deadline = time.monotonic() + _ARRIVAL_SECONDS
        try:
            drain.drain_events(timeout=0.2)
        except TimeoutError:
            continue
