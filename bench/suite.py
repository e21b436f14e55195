"""Run every measurement of one benchmark run, in order, and return the table's rows.

On one sandbox of `records` stocks and `records` prices:
    ceiling (c)                          (its loading also warms the sandbox's page cache)
    [ceiling (b), kombu batched, initial sync] x publish_repeats
    kombu one by one
    [ceiling (a), 1% changed, ceiling (a), no change] x repeats
    Redis memory, then latency
    no change through a delay proxy at 0, 50, 100 ms (x network_rounds), then under a
    requests/s limit answered with 429 (`bench.network`)
Then, on a sandbox of each size: worker peak RSS, small then large.

Each figure is taken right next to its ceiling, over and over, so that the load of a shared
machine, which drifts over minutes, weighs on both alike. The table shows the median of each
figure's runs and of each ceiling's runs (the best run would favour the shorter
measurement, which is likelier to fall in a quiet moment); the JSON keeps every run. Quick
runs take each once. Latency, memory and RSS are measured once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import redis

from bench import ceilings, latency, network, publishing, workloads
from bench.env import (
    PAGE_SIZE,
    Sandbox,
    bench_queue,
    bench_redis,
    edges_for,
    run_channels,
    sandbox,
    scrub,
)
from bench.report import Row, Target
from bench.rss import peak_rss
from bench.workloads import Pass

MIB = 2**20


@dataclass(frozen=True, slots=True)
class Plan:
    """How big one run is."""

    records: int  # per kind: stock and price each
    repeats: int  # of the reading figures and ceilings (a), (c): a few seconds each
    publish_repeats: int  # of the publishing figures: tens of seconds each
    latency_changes: int
    rss_sizes: tuple[int, int]
    publish_events: int  # per kind, for ceiling (b) and kombu batched
    one_by_one_events: int
    network_rounds: int  # of the latency section, each round at every round trip
    rate_limit: float  # requests/s the sandbox allows in the 429 section


FULL = Plan(100_000, 5, 3, 200, (100_000, 1_000_000), 25_000, 5_000, 3, 100.0)
QUICK = Plan(10_000, 1, 1, 20, (10_000, 100_000), 5_000, 1_000, 1, 50.0)


@dataclass
class Results:
    """Every run of every figure of the main sandbox; the table keeps the best of each."""

    http: list[float] = field(default_factory=list)
    amqp: list[float] = field(default_factory=list)
    redis: list[float] = field(default_factory=list)
    kombu_batched: list[float] = field(default_factory=list)
    kombu_one_by_one: list[float] = field(default_factory=list)
    initial: list[Pass] = field(default_factory=list)
    steady: list[Pass] = field(default_factory=list)
    quiet: list[Pass] = field(default_factory=list)


def say(message: str) -> None:
    """Report progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def throughput(figure: str, passes: list[Pass], unit: str, ceiling: float, target: Target) -> Row:
    """Return the row of a pipeline figure: the median of its passes, each one a sample."""
    events = unit == "events/s"
    rates = tuple(p.events_per_second if events else p.records_per_second for p in passes)
    return Row(figure, median(rates), unit, ceiling, target, counts(passes), rates)


def counts(passes: list[Pass]) -> str:
    """Say what the passes did; a spread of event counts shows a pass that misbehaved."""
    low, high = min(p.published for p in passes), max(p.published for p in passes)
    published = f"{low:,}" if low == high else f"{low:,} to {high:,}"
    return f"{passes[0].seen:,} records, {published} events per pass"


def ceiling_row(figure: str, runs: list[float], unit: str, **extra: Any) -> Row:
    """Return the row of a ceiling (or of kombu's figures): the median of its runs."""
    return Row(figure, median(runs), unit, samples=tuple(runs), **extra)


def run(plan: Plan) -> list[Row]:
    """Measure everything the plan asks for; return the rows in table order."""
    channel, rss_channel = run_channels()
    with bench_redis((channel, rss_channel)) as client:
        with sandbox(channel, plan.records) as box, bench_queue(channel):
            results = Results()
            measure_redis(box, client, plan, results)
            measure_publishing(box, client, plan, results)
            measure_reading(box, plan, results)
            memory = memory_row(client, box)
            say(f"4 latency: {plan.latency_changes} changes, 1 s polls")
            found = latency.measure(box, plan.latency_changes)
            say(f"7 no change through a delay proxy at 0/50/100 ms ({plan.network_rounds} rounds)")
            distant = network.latency_rows(box, plan.network_rounds, PAGE_SIZE)
            say(f"8 no change under a {plan.rate_limit:g} requests/s limit (429)")
            limited = network.rate_limited_row(box, plan.rate_limit)
        rows = [*table_rows(results), *latency_rows(found), memory]
        rows += rss_rows(client, plan, rss_channel)
    return [*rows, *distant, limited]


def measure_redis(box: Sandbox, client: redis.Redis, plan: Plan, results: Results) -> None:
    """Measure ceiling (c)."""
    say("ceiling (c): Redis HMGET (loading it also warms the sandbox's page cache)")
    pages = ceilings.store_hashes(client, box)
    for _ in range(plan.repeats):
        results.redis.append(ceilings.redis_keys_per_second(client, box, pages))
    scrub(client, box.channel_id)  # drops the hashes (the channel has no state yet)


def measure_publishing(box: Sandbox, client: redis.Redis, plan: Plan, results: Results) -> None:
    """Take ceiling (b), kombu batched and an initial sync in turn; then kombu one by one."""
    events = publishing.build_events(box, plan.publish_events)
    edges = edges_for(box)
    try:
        for number in range(1, plan.publish_repeats + 1):
            say(f"ceiling (b), kombu batched, 1 initial sync ({number}/{plan.publish_repeats})")
            results.amqp.append(publishing.amqp_events_per_second(events))
            results.kombu_batched.append(publishing.kombu_batched_per_second(events))
            results.initial.append(workloads.initial_pass(edges, box, client))
    finally:
        edges.close()
    say("kombu, confirm awaited per message")
    few = events[: plan.one_by_one_events]
    for _ in range(plan.publish_repeats):
        results.kombu_one_by_one.append(publishing.kombu_one_by_one_per_second(few))


def measure_reading(box: Sandbox, plan: Plan, results: Results) -> None:
    """Take ceiling (a) before each steady-state pass and before each no-change pass."""
    edges = edges_for(box)
    steps: list[tuple[list[Pass], Callable[[], Pass]]] = [
        (results.steady, lambda: workloads.steady_pass(edges, box)),
        (results.quiet, lambda: workloads.full_pass(edges, box)),
    ]
    try:
        for number in range(1, plan.repeats + 1):
            say(f"ceiling (a), 2 steady state, 3 no change ({number}/{plan.repeats})")
            for passes, run_pass in steps:
                results.http.append(ceilings.http_records_per_second(box))
                passes.append(run_pass())
    finally:
        edges.close()


def table_rows(results: Results) -> list[Row]:
    """Return the rows of the ceilings, kombu and the three throughput figures."""
    http, amqp = median(results.http), median(results.amqp)
    speedup = median(results.kombu_batched) / median(results.kombu_one_by_one)
    return [
        ceiling_row("ceiling (a) HTTP fetch + JSON decode", results.http, "records/s"),
        ceiling_row("ceiling (b) py-amqp, confirms per 1,000", results.amqp, "events/s"),
        ceiling_row("ceiling (c) Redis pipelined HMGET", results.redis, "keys/s"),
        ceiling_row(
            "kombu, confirm awaited per message",
            results.kombu_one_by_one,
            "events/s",
            ceiling=amqp,
        ),
        ceiling_row(
            "kombu, confirms per 1,000",
            results.kombu_batched,
            "events/s",
            ceiling=amqp,
            note=f"{speedup:.1f}x the rate with a confirm awaited per message",
        ),
        throughput(
            "1 initial sync",
            results.initial,
            "events/s",
            amqp,
            Target(ratio_at_least=0.85),
        ),
        throughput(
            "2 steady state, 1% changed",
            results.steady,
            "records/s",
            http,
            Target(at_least=110_000, ratio_at_least=0.40),
        ),
        throughput(
            "3 no change",
            results.quiet,
            "records/s",
            http,
            Target(at_least=170_000, ratio_at_least=0.60),
        ),
    ]


def memory_row(client: redis.Redis, box: Sandbox) -> Row:
    """Return the row of Redis memory per tracked record of the channel."""
    memory, tracked = workloads.bytes_per_record(client, box.channel_id)
    return Row(
        "5 Redis memory per tracked record",
        memory,
        "bytes",
        target=Target(at_most=100),
        note=f"MEMORY USAGE over {tracked:,} records",
    )


def latency_rows(found: latency.Latency) -> list[Row]:
    """Return the latency percentiles' rows."""
    note = f"{found.samples} changes, 1 s polls"
    return [
        Row("4 latency p50", found.p50, "s", note=note),
        Row("4 latency p99", found.p99, "s", target=Target(at_most=1.5), note=note),
    ]


def rss_rows(client: redis.Redis, plan: Plan, channel: int) -> list[Row]:
    """Measure a worker's peak RSS at both sizes, each against its own sandbox."""
    peaks = []
    for size in plan.rss_sizes:
        say(f"6 worker peak RSS, {size:,} records (seeding the sandbox first)")
        with sandbox(channel, size) as box, bench_queue(channel):
            peaks.append(peak_rss(box, client).bytes / MIB)
    small, large = plan.rss_sizes
    return [
        Row(f"6 worker peak RSS, {small:,} records", peaks[0], "MiB"),
        Row(
            f"6 worker peak RSS, {large:,} records",
            peaks[1],
            "MiB",
            ceiling=peaks[0],
            target=Target(ratio_at_most=1.5),
            note=f"ceiling: the {small:,}-record run",
        ),
    ]
