"""Worker pools and beat as operators run them: a threads pool, tasks that expire unsent."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx
import pytest
import redis

from publisher.lock import holder
from publisher.records import Resource
from publisher.sandbox import SandboxServer
from tests.conftest import _channel_ids
from tests.integration.collect import Collector
from tests.integration.services import Processes, celery, service_env

pytestmark = pytest.mark.integration

# Ports this file's workers serve their metrics on (this suite's own range).
METRICS_PORT = 5620


def threads_worker(name: str, concurrency: int, pool: str = "threads") -> list[str]:
    return celery(
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--hostname={name}@%h",
        "--without-mingle",
        "--without-gossip",
    )


def _holders(client: redis.Redis, channels: list[int]) -> set[str]:
    found = set()
    for channel in channels:
        for resource in Resource:
            owner = holder(client, channel, resource)
            if owner is not None:
                found.add(owner)
    return found


def test_a_threads_pool_runs_eight_steps_at_once_without_duplicates_or_errors(
    sandbox_factory: Callable[..., SandboxServer],
    processes: Processes,
    redis_url: str,
    redis_client: redis.Redis,
    amqp_url: str,
) -> None:
    from celery import Celery

    from publisher.celery import SYNC_TASK

    channels = [next(_channel_ids) for _ in range(4)]
    server = sandbox_factory(channels, size=40)
    # Each step takes ten pages of 50 ms: the eight overlap on the worker's eight threads.
    httpx.put(f"{server.url}/_control/faults", json={"latency_ms": 50}).raise_for_status()
    env = service_env(
        server,
        channels[0],
        redis_url,
        amqp_url,
        AKINON_CHANNELS=",".join(map(str, channels)),
        AKINON_PAGE_SIZE="4",
    )
    processes.start("worker", threads_worker("pool", 8), env)
    processes.wait_for(" ready.")
    client = Celery("test-client", broker=amqp_url)
    patterns = [f"*.changed.{channel}" for channel in channels]
    holders: set[str] = set()
    most_at_once = 0
    with Collector(amqp_url, *patterns) as events:
        for channel in channels:
            for resource in Resource:
                client.send_task(
                    SYNC_TASK, args=(channel, resource.value), queue=env["CELERY_QUEUE"]
                )
        deadline = time.monotonic() + 90
        while len(events.messages) < 320 and time.monotonic() < deadline:
            held = _holders(redis_client, channels)
            holders |= held
            most_at_once = max(most_at_once, len(held))
            events.collect(len(events.messages) + 1, timeout=0.2)
        received = events.settle(quiet=2.0)
    client.close()
    logs = processes.logs()
    ids = [e["id"] for e in received]
    assert len(ids) == 320, logs
    assert len(set(ids)) == 320  # no event id twice
    keys = {(e["type"], e["data"]["channel_id"], e["data"]["key"]) for e in received}
    assert len(keys) == 320  # every record of every step, once
    assert len(re.findall(r"akinon\.sync\[[^]]+\] succeeded", logs)) == 8, logs
    assert "ERROR" not in logs and "Traceback" not in logs, logs
    assert most_at_once >= 4, most_at_once  # the steps did run side by side
    # The lock names the worker's node, as `status` shows it.
    assert holders, "no step was seen holding its lock"
    assert all(owner.startswith("pool@") for owner in holders), holders


def _scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def _expired(text: str, channel: int, resource: str) -> float:
    labels = f'channel="{channel}",resource="{resource}"'
    pattern = r"^akinon_publisher_tasks_expired_total\{" + labels + r"\} ([0-9.e+]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_steps_beat_sent_that_expire_before_a_worker_starts_them_are_logged_and_counted(
    pool: str,
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    env = service_env(sandbox, channel_id, redis_url, amqp_url, METRICS_PORT=str(METRICS_PORT))
    env["METRICS_DIRECTORY"] = str(processes.tmp_path / "metrics")
    schedule = processes.tmp_path / "beat" / "schedule"
    processes.start("beat", celery("beat", "--loglevel=INFO", f"--schedule={schedule}"), env)
    # No worker yet: beat sends a step per resource every 2 s, each expiring 2 s later.
    deadline = time.monotonic() + 30
    while processes.logs().count("Sending due task") < 6:
        assert time.monotonic() < deadline, processes.logs()
        time.sleep(0.2)
    time.sleep(2.5)  # the first ones are past their expiry, still in the queue
    processes.start("worker", threads_worker("late", 2, pool), env)
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = _scrape(METRICS_PORT)
        if all(_expired(text, channel_id, r.value) >= 1 for r in Resource):
            break
        time.sleep(0.5)
    logs = processes.logs()
    assert all(_expired(text, channel_id, r.value) >= 1 for r in Resource), f"{text}\n{logs}"
    assert f"task expired unsent: akinon.sync channel={channel_id} resource=stock" in logs
    # Steps beat sent in time still run.
    while "published=30" not in processes.logs():
        assert time.monotonic() < deadline, processes.logs()
        time.sleep(0.3)
