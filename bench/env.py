"""Start, reach and clean up what a run touches outside its own process.

Runs may overlap (the test suite runs `--quick` while someone runs the full suite), so a
run shares nothing with another: it works on two channel ids of its own (`run_channels`,
from the process id), and everything below is named after them.

- Redis database 14 (`REDIS_URL`): the channels' state keys (`akp:{<channel>:...`) and the
  ceiling's hashes (`bench:<channel>:...`), deleted when a run starts and when it ends.
  There is no FLUSHDB: other keys in the database are left alone.
- RabbitMQ: the project's exchanges (declared if missing) and one non-durable queue per
  channel, `akinon.bench.<channel>`, bound to that channel's change routing keys so events
  are routed like in production. It holds at most 20,000 messages (the broker drops the
  oldest), so a million-event run piles nothing up; it is deleted, with whatever it holds,
  when the run ends (or by the broker an hour after a killed run).
- Sandboxes: `python -m publisher.sandbox` in a process of its own (its CPU must not share
  our GIL) on a free loopback port; stopped on the way out, and stopped by the kernel if
  this process dies first (see `bench.guard`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Final

import httpx
import redis
from kombu.connection import Connection
from kombu.entity import Exchange, Queue, binding

from publisher import topology
from publisher.akinon import AkinonClient
from publisher.broker import declare_topology
from publisher.publish import KombuPublisher
from publisher.records import Resource
from publisher.service import Edges
from publisher.state import RedisStateStore

# BENCH_REDIS_URL and BENCH_AMQP_URL point a run elsewhere (another database or vhost).
REDIS_URL: Final = os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/14"
AMQP_URL: Final = os.environ.get("BENCH_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672//"
TOKEN: Final = "bench-token"
PAGE_SIZE: Final = 1000
QUEUE_CAP: Final = 20_000
SCRATCH_PREFIX: Final = "bench"
_STARTUP_SECONDS: Final = 600.0  # seeding a million records per kind takes about a minute


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A running sandbox: where it answers and which channel it serves."""

    url: str
    channel_id: int
    size: int  # records per kind


def guarded(module: str, *args: str) -> list[str]:
    """Return the command that runs a module in a child that dies with this process."""
    return [sys.executable, "-m", "bench.guard", str(os.getpid()), module, *args]


def free_port() -> int:
    """Return a loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    """Wait until a child listens on a loopback port; raise if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the child exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {seconds:g}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it lingers; always reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def sandbox(channel_id: int, size: int) -> Iterator[Sandbox]:
    """Run a sandbox serving `size` stocks and `size` prices of one channel."""
    port = free_port()
    command = guarded(
        "publisher.sandbox",
        *("--port", str(port), "--channels", str(channel_id)),
        *("--size", str(size), "--token", TOKEN),
    )
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            box = Sandbox(f"http://127.0.0.1:{port}", channel_id, size)
            _wait_until_up(box, process, log)
            yield box
        finally:
            stop(process)


def _wait_until_up(box: Sandbox, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            tail = log.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"the sandbox exited with {process.returncode}:\n{tail}")
        try:
            httpx.get(f"{box.url}/_control/state", timeout=5).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the sandbox did not answer within {_STARTUP_SECONDS:g}s")


def run_channels() -> tuple[int, int]:
    """Return this run's two channel ids: one for the main sandbox, one for the RSS runs."""
    base = 900_000 + os.getpid() % 50_000 * 2
    return base, base + 1


@contextlib.contextmanager
def bench_redis(channel_ids: Iterable[int]) -> Iterator[redis.Redis]:
    """Yield a client of the bench database; delete the channels' keys before and after."""
    client = redis.Redis.from_url(REDIS_URL)
    channels = list(channel_ids)
    try:
        for channel_id in channels:
            scrub(client, channel_id)
        yield client
    finally:
        for channel_id in channels:
            scrub(client, channel_id)
        client.close()


def scrub(client: redis.Redis, channel_id: int) -> None:
    """Delete every key a run wrote for a channel: its state and the ceiling's hashes."""
    forget(client, channel_id)
    _delete_matching(client, f"{SCRATCH_PREFIX}:{channel_id}:*")


@contextlib.contextmanager
def bench_queue(channel_id: int) -> Iterator[str]:
    """Bind a capped queue to a channel's change events; delete it afterwards."""
    bindings = [
        binding(
            Exchange(topology.exchange_for(resource), "topic", passive=True),
            routing_key=topology.changed_routing_key(resource, channel_id),
        )
        for resource in Resource
    ]
    queue = Queue(
        f"akinon.bench.{channel_id}",
        bindings=bindings,
        durable=False,
        # A run killed outright cannot delete it: the broker does, an hour after its last use.
        queue_arguments={"x-max-length": QUEUE_CAP, "x-expires": 3_600_000},
    )
    with Connection(AMQP_URL) as connection:
        channel = connection.channel()
        declare_topology(channel)
        bound = queue.bind(channel)
        bound.delete()  # a killed run's leftover, if any: start empty
        bound.declare()
        try:
            yield queue.name
        finally:
            bound.delete()


def edges_for(box: Sandbox) -> Edges:
    """Build the edges a worker would have, pointed at the sandbox and the bench database."""
    state = RedisStateStore.from_url(REDIS_URL)
    return Edges(
        source=AkinonClient(box.url, token=TOKEN, page_size=PAGE_SIZE),
        state=state,
        publisher=KombuPublisher(AMQP_URL),
        redis=state.client,
    )


def forget(client: redis.Redis, channel_id: int) -> None:
    """Delete every state key of a channel (both kinds): its records become new again."""
    _delete_matching(client, state_pattern(channel_id))


def _delete_matching(client: redis.Redis, pattern: str) -> None:
    names = list(client.scan_iter(pattern, count=1000))
    for start in range(0, len(names), 1000):
        client.delete(*names[start : start + 1000])


def state_pattern(channel_id: int) -> str:
    """Return the SCAN pattern of a channel's keys (see `publisher.keys`)."""
    # Every key of a (channel, resource) starts with its hash tag `akp:{<channel>:<kind>}`.
    return f"{topology.KEY_PREFIX}:{{{channel_id}:*"
