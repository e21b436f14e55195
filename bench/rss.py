"""Measure a worker's peak memory over one sync step, in a process of its own.

The parent forgets the channel's state and runs `python -m bench.rss URL CHANNEL SIZE`: the
child runs one initial full-scan stock step of SIZE records (every record new, so every
record is diffed, published, confirmed and committed) and prints its own peak resident set
size (`ru_maxrss`), which counts nothing of the parent's or the sandbox's.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from dataclasses import dataclass

import orjson
import redis

from bench.env import Sandbox, edges_for, forget, guarded
from publisher.pipeline import StepSpec, sync_step
from publisher.records import Resource
from publisher.service import tune_gc


@dataclass(frozen=True, slots=True)
class PeakRss:
    """One child's peak memory and what its step did."""

    bytes: int
    seen: int
    published: int


def peak_rss(box: Sandbox, client: redis.Redis, timeout: float = 1800) -> PeakRss:
    """Run one initial stock step of the sandbox's channel in a fresh process."""
    forget(client, box.channel_id)
    command = guarded("bench.rss", box.url, str(box.channel_id), str(box.size))
    done = subprocess.run(command, capture_output=True, check=False, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the RSS child failed:\n{done.stderr.decode()[-3000:]}")
    result = PeakRss(**orjson.loads(done.stdout.splitlines()[-1]))
    if result.seen != box.size:
        raise RuntimeError(f"the RSS child saw {result.seen:,} of {box.size:,} records")
    return result


def own_peak_rss() -> int:
    """Return this process's peak resident set size in bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    # Without /proc: ru_maxrss (KiB on Linux, bytes on macOS), see the caveat above.
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def main() -> None:
    """Run the step named by argv; print peak RSS and counts as one JSON line."""
    url, channel_id = sys.argv[1], int(sys.argv[2])
    box = Sandbox(url, channel_id, int(sys.argv[3]))
    tune_gc()  # as a worker process does
    edges = edges_for(box)
    try:
        spec = StepSpec(channel_id, Resource.STOCK, url)
        summary = sync_step(spec, edges.source, edges.state, edges.publisher)
    finally:
        edges.close()
    line = {"bytes": own_peak_rss(), "seen": summary.seen, "published": summary.published}
    sys.stdout.write(orjson.dumps(line).decode() + "\n")


if __name__ == "__main__":
    main()
