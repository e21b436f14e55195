"""Run every measurement of one benchmark run, in order, and return the table's rows.

    ceilings (a, b, c, kombu) -> initial sync -> 1% changed -> no change -> Redis memory
        -> latency                          (one sandbox of `records` per kind, channel 9001)
    -> worker peak RSS, small then large    (a sandbox of that size each, channel 9002)

Throughput figures and ceilings are the best of `repeats` runs (noise on a shared machine
only ever slows a run down); latency, memory and RSS are measured once.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from bench import ceilings, latency, publishing, workloads
from bench.env import Sandbox, bench_queue, bench_redis, edges_for, sandbox
from bench.report import Row, Target
from bench.rss import peak_rss

CHANNEL = 9001
RSS_CHANNEL = 9002
MIB = 2**20


@dataclass(frozen=True, slots=True)
class Plan:
    """How big one run is."""

    records: int  # per kind: stock and price each
    repeats: int
    latency_changes: int
    rss_sizes: tuple[int, int]
    publish_events: int  # per kind, for ceiling (b) and kombu batched
    one_by_one_events: int


FULL = Plan(100_000, 3, 200, (100_000, 1_000_000), 25_000, 5_000)
QUICK = Plan(10_000, 1, 20, (10_000, 100_000), 5_000, 1_000)


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The raw rates of the parts, measured in this run."""

    http: float  # records/s
    amqp: float  # events/s
    redis: float  # keys/s
    kombu_one_by_one: float
    kombu_batched: float


def say(message: str) -> None:
    """Report progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def best(repeats: int, measure: Callable[[], float]) -> float:
    """Return the highest of `repeats` measurements."""
    return max(measure() for _ in range(repeats))


def fastest(repeats: int, run_pass: Callable[[], workloads.Pass]) -> workloads.Pass:
    """Return the quickest of `repeats` passes (passes of one kind do the same work)."""
    return min((run_pass() for _ in range(repeats)), key=lambda done: done.seconds)


def run(plan: Plan) -> list[Row]:
    """Measure everything the plan asks for; return the rows in table order."""
    with bench_redis() as client:
        with sandbox(CHANNEL, plan.records) as box, bench_queue(CHANNEL):
            limits = measure_ceilings(box, client, plan)
            gc.collect()  # the ceilings' data must not slow the pipeline's collections
            rows = ceiling_rows(limits)
            rows += pipeline_rows(box, client, plan, limits)
            memory = memory_row(client, box)
            say(f"4 latency: {plan.latency_changes} changes, 1 s polls")
            found = latency.measure(box, plan.latency_changes)
        rows += [*latency_rows(found), memory]
        rows += rss_rows(client, plan)
    return rows


def measure_ceilings(box: Sandbox, client: redis.Redis, plan: Plan) -> Ceilings:
    """Measure (a), (c), (b) and kombu's two ways of publishing."""
    say("ceiling (c): Redis HMGET (its load also warms the sandbox's page cache)")
    pages = ceilings.store_hashes(client, box)
    redis_rate = best(plan.repeats, lambda: ceilings.redis_keys_per_second(client, box, pages))
    ceilings.drop_hashes(client)
    say("ceiling (a): HTTP fetch + decode")
    http_rate = best(plan.repeats, lambda: ceilings.http_records_per_second(box))
    say("ceiling (b) and kombu: confirmed publishing")
    events = publishing.build_events(box, plan.publish_events)
    amqp_rate = best(plan.repeats, lambda: publishing.amqp_events_per_second(events))
    batched = best(plan.repeats, lambda: publishing.kombu_batched_per_second(events))
    few = events[: plan.one_by_one_events]
    one_by_one = best(plan.repeats, lambda: publishing.kombu_one_by_one_per_second(few))
    return Ceilings(http_rate, amqp_rate, redis_rate, one_by_one, batched)


def ceiling_rows(limits: Ceilings) -> list[Row]:
    """Return the ceilings' rows and kombu's two publishing figures."""
    speedup = limits.kombu_batched / limits.kombu_one_by_one
    return [
        Row("ceiling (a) HTTP fetch + JSON decode", limits.http, "records/s"),
        Row("ceiling (b) py-amqp, confirms per 1,000", limits.amqp, "events/s"),
        Row("ceiling (c) Redis pipelined HMGET", limits.redis, "keys/s"),
        Row(
            "kombu, confirm awaited per message",
            limits.kombu_one_by_one,
            "events/s",
            ceiling=limits.amqp,
        ),
        Row(
            "kombu, confirms per 1,000",
            limits.kombu_batched,
            "events/s",
            ceiling=limits.amqp,
            note=f"{speedup:.1f}x one by one (the project claims ~8x)",
        ),
    ]


def pipeline_rows(box: Sandbox, client: redis.Redis, plan: Plan, limits: Ceilings) -> list[Row]:
    """Run the three full-scan workloads; return their rows."""
    edges = edges_for(box)
    try:
        say("1 initial sync")
        first = fastest(plan.repeats, lambda: workloads.initial_pass(edges, box, client))
        say("2 steady state, 1% changed")
        steady = fastest(plan.repeats, lambda: workloads.steady_pass(edges, box))
        say("3 no change")
        quiet = fastest(plan.repeats, lambda: workloads.full_pass(edges, box))
    finally:
        edges.close()
    return [
        Row(
            "1 initial sync",
            first.events_per_second,
            "events/s",
            ceiling=limits.amqp,
            target=Target(ratio_at_least=0.85),
            note=f"{first.published:,} events",
        ),
        Row(
            "2 steady state, 1% changed",
            steady.records_per_second,
            "records/s",
            ceiling=limits.http,
            target=Target(at_least=110_000, ratio_at_least=0.40),
            note=f"{steady.seen:,} records, {steady.published:,} events",
        ),
        Row(
            "3 no change",
            quiet.records_per_second,
            "records/s",
            ceiling=limits.http,
            target=Target(at_least=170_000, ratio_at_least=0.60),
            note=f"{quiet.seen:,} records, {quiet.published:,} events",
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


def rss_rows(client: redis.Redis, plan: Plan) -> list[Row]:
    """Measure a worker's peak RSS at both sizes, each against its own sandbox."""
    peaks = []
    for size in plan.rss_sizes:
        say(f"6 worker peak RSS, {size:,} records (seeding the sandbox first)")
        with sandbox(RSS_CHANNEL, size) as box, bench_queue(RSS_CHANNEL):
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
