"""Benchmark the pipeline as ratios to the raw ceilings of its parts, measured in one run.

`python -m bench` (about 10 minutes) or `python -m bench --quick` (under a minute) prints one
table: figure, value, ceiling, ratio, target, PASS/FAIL. Absolute rates drift on shared
2-core machines, so each throughput figure is judged against a ceiling taken in the same
run on the same machine: (a) httpx page fetch + JSON decode, (b) py-amqp confirmed
publishing, (c) pipelined Redis HMGET.

The pipeline runs here, through the real edges; the sandbox runs in a process of its own.
Full runs take each throughput figure 3 or 5 times, each time next to its ceiling, and keep
the best of each (see `bench.suite`); quick runs take each once. A run works on channel
ids of its own and cleans up after itself, so runs may overlap (see `bench.env` for
everything a run touches: keys in Redis database 14, broker queues, processes).

Modules: `env` (processes, Redis, broker), `ceilings` (a, c), `publishing` (b, kombu),
`workloads` (full-scan passes, Redis memory), `latency`, `rss` (peak memory, in a child),
`suite` (the order of a run), `report` (the table).
"""
