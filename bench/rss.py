"""Measure a worker's peak memory over one sync: `python -m bench.rss URL CHANNEL`.

Runs in a process of its own so the figure is the step's alone; prints the peak resident
set size in bytes (Linux reports ru_maxrss in KiB).
"""

from __future__ import annotations

import resource
import sys

from bench.env import Sandbox
from bench.workloads import edges_for
from publisher.pipeline import StepSpec
from publisher.records import Resource
from publisher.service import run_step


def main() -> None:
    """Run one full stock sync against the sandbox at argv[1]; print peak RSS bytes."""
    box = Sandbox(sys.argv[1], int(sys.argv[2]))
    edges = edges_for(box)
    summary = run_step(StepSpec(box.channel_id, Resource.STOCK, box.url), edges)
    edges.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{peak} {summary.seen}")


if __name__ == "__main__":
    main()
