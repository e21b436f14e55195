"""Benchmark the pipeline as ratios to the raw ceilings of its parts, measured in one run.

`python -m bench` (about 10 minutes) or `python -m bench --quick` (under a minute) prints one
table: figure, value, ceiling, ratio, target, PASS/FAIL. Absolute rates drift on shared
2-core machines, so each throughput figure is judged against a ceiling taken in the same
run on the same machine: (a) httpx page fetch + JSON decode, (b) py-amqp confirmed
publishing, (c) pipelined Redis HMGET.

The pipeline runs here, through the real edges; the sandbox runs in a process of its own.
Full runs keep the best of 3 for every throughput figure and ceiling; quick runs take each
once. Redis database 14 is flushed at the start and the end of a run (see `bench.env` for
everything a run touches).

Modules: `env` (processes, Redis, broker), `ceilings` (a, c), `publishing` (b, kombu),
`workloads` (full-scan passes, Redis memory), `latency`, `rss` (peak memory, in a child),
`suite` (the order of a run), `report` (the table).
"""
