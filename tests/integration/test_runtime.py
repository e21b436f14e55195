"""The product as operators run it: Celery worker and beat processes, the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from publisher.records import Resource
from publisher.sandbox import SandboxServer
from tests.conftest import SANDBOX_TOKEN
from tests.integration.collect import Collector
from tests.integration.services import BIN, Processes, celery, free_port, service_env, worker

pytestmark = pytest.mark.integration


def test_worker_and_beat_deliver_sandbox_changes_within_two_intervals(
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    env = service_env(sandbox, channel_id, redis_url, amqp_url)
    with Collector(amqp_url, f"*.changed.{channel_id}") as events:
        processes.start("worker", worker("w1"), env)
        processes.start(
            "beat",
            celery("beat", "--loglevel=INFO", f"--schedule={processes.tmp_path / 'beat'}"),
            env,
        )
        initial = events.collect(60, timeout=60)
        assert len(initial) == 60, processes.logs()

        record = sandbox.catalog.records(channel_id, Resource.STOCK)[0]
        response = httpx.post(
            f"{sandbox.url}/_control/records/{channel_id}/stock",
            json={"pk": record["pk"], "stock": record["stock"] + 40},
        )
        response.raise_for_status()
        changed_at = time.monotonic()
        events.clear()
        got = events.collect(1, timeout=4.0)
        waited = time.monotonic() - changed_at
    assert got, f"no event within two intervals\n{processes.logs()}"
    assert got[0]["data"]["key"] == record["pk"]
    assert got[0]["data"]["after"]["stock"] == record["stock"] + 40
    assert waited <= 4.0 + 0.5


def test_beat_sends_the_first_steps_when_it_starts(
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    # An interval far longer than the test: events can only come from beat's first steps.
    env = service_env(sandbox, channel_id, redis_url, amqp_url, POLL_INTERVAL_SECONDS="600")
    with Collector(amqp_url, f"*.changed.{channel_id}") as events:
        processes.start("worker", worker("w1"), env)
        processes.start("beat", celery("beat", "--loglevel=INFO"), env)
        initial = events.collect(60, timeout=45)
    assert len(initial) == 60, processes.logs()
    assert oct((processes.tmp_path / ".celery").stat().st_mode & 0o777) == "0o700"


def test_two_workers_on_one_channel_publish_each_change_once(
    sandbox_factory: object,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    from celery import Celery

    from publisher.celery import SYNC_TASK

    server = sandbox_factory([channel_id], size=40)  # type: ignore[operator]
    httpx.put(f"{server.url}/_control/faults", json={"latency_ms": 50}).raise_for_status()
    env = service_env(server, channel_id, redis_url, amqp_url, AKINON_PAGE_SIZE="4")
    processes.start("worker-a", worker("a"), env)
    processes.start("worker-b", worker("b"), env)
    processes.wait_for(" ready.")
    client = Celery("test-client", broker=amqp_url)
    with Collector(amqp_url, f"stock.changed.{channel_id}") as events:
        # Four steps at once on four worker threads in two processes: without the lock they
        # would all read the same empty state and publish every record four times.
        for _ in range(4):
            client.send_task(SYNC_TASK, args=(channel_id, "stock"), queue=env["CELERY_QUEUE"])
        received = events.collect(40, timeout=60)
        received = events.settle(quiet=3.0)
    keys = [e["data"]["key"] for e in received]
    assert len(keys) == 40, processes.logs()
    assert len(set(keys)) == 40  # no change published twice
    client.close()
    assert "skipped: lock held by" in processes.logs()


def test_demo_prints_events_without_redis_or_rabbitmq(tmp_path: Path) -> None:
    env = dict(
        os.environ, REDIS_URL="redis://127.0.0.1:1/0", AMQP_URL="amqp://guest:guest@127.0.0.1:1//"
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(BIN / "akinon-publisher"), "demo", "--duration", "6", "--size", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    first_event_at = None
    lines = []
    for raw in proc.stdout:
        line = raw.decode()
        lines.append(line)
        if "stock.changed" in line or "price.changed" in line:
            first_event_at = time.monotonic() - started
            break
    proc.terminate()
    proc.wait(timeout=15)
    proc.stdout.close()
    assert first_event_at is not None, "".join(lines)
    assert first_event_at < 10


COMMANDS = ["poll", "status", "tail", "sandbox", "demo", "schemas"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command: str | None, tmp_path: Path) -> None:
    args = [str(BIN / "akinon-publisher"), *([command] if command else []), "--help"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_module_entry_point_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "publisher", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "poll" in result.stdout


def test_poll_with_a_wrong_token_fails_in_one_line_without_the_secret(
    sandbox: SandboxServer, channel_id: int, redis_url: str, amqp_url: str, tmp_path: Path
) -> None:
    secret = "wrong-secret-token-123"
    env = service_env(
        sandbox, channel_id, redis_url, amqp_url, AKINON_TOKEN=secret, LOG_LEVEL="DEBUG"
    )
    result = subprocess.run(
        [str(BIN / "akinon-publisher"), "poll", "--resource", "stock"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert len(result.stdout.strip().splitlines()) == 1
    assert "AuthError" in result.stdout or "401" in result.stdout or "token" in result.stdout
    assert secret not in result.stdout + result.stderr


def test_poll_with_missing_settings_names_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AKINON_")}
    result = subprocess.run(
        [str(BIN / "akinon-publisher"), "poll"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "AKINON_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_poll_and_status_report_each_step(
    sandbox: SandboxServer, channel_id: int, redis_url: str, amqp_url: str, tmp_path: Path
) -> None:
    import orjson

    env = service_env(sandbox, channel_id, redis_url, amqp_url)
    result = subprocess.run(
        [str(BIN / "akinon-publisher"), "poll", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summaries = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(s["resource"], s["published"]) for s in summaries] == [("stock", 30), ("price", 30)]
    assert "step done" not in result.stderr  # one line per step: the summary, not a log too
    status = subprocess.run(
        [str(BIN / "akinon-publisher"), "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    rows = orjson.loads(status.stdout)
    assert [(r["resource"], r["tracked"]) for r in rows] == [("stock", 30), ("price", 30)]
    assert all(r["lag_seconds"] is not None and r["lag_seconds"] < 60 for r in rows)
    assert all(r["last_step"]["published"] == 30 for r in rows)
    assert all(r["watermark"] and r["last_full_scan_at"] for r in rows)


def test_flower_shows_each_step_with_channel_resource_and_summary(
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    port = free_port()
    env = service_env(sandbox, channel_id, redis_url, amqp_url, FLOWER_UNAUTHENTICATED_API="true")
    processes.start("worker", worker("w1"), env)
    processes.start("beat", celery("beat", f"--schedule={processes.tmp_path / 'beat'}"), env)
    # No users and no address given: Flower listens on 127.0.0.1 only (FLOWER_ADDRESS).
    processes.start("flower", celery("flower", f"--port={port}"), env)
    deadline = time.monotonic() + 30
    tasks: dict[str, dict[str, str]] = {}
    while time.monotonic() < deadline:
        try:
            tasks = httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            tasks = {}
        done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        if {t["args"] for t in done} >= {f"[{channel_id}, 'stock']", f"[{channel_id}, 'price']"}:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"Flower never showed both steps: {tasks}\n{processes.logs()}")
    first = next(t for t in done if t["args"] == f"[{channel_id}, 'stock']")
    assert first["name"] == "akinon.sync"
    assert "'published': " in first["result"]
    assert "'seen': 30" in first["result"]


def test_a_fatal_error_fails_the_task_once_and_a_retryable_one_retries(
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    from celery import Celery

    from publisher.celery import SYNC_TASK

    env = service_env(
        sandbox,
        channel_id,
        redis_url,
        amqp_url,
        AKINON_TOKEN="not-the-token",
        AKINON_MAX_RETRIES="0",
    )
    processes.start("worker", worker("w1"), env)
    processes.wait_for(" ready.")
    client = Celery("test-client", broker=amqp_url)
    client.send_task(SYNC_TASK, args=(channel_id, "stock"), queue=env["CELERY_QUEUE"])
    time.sleep(3)
    logs = processes.logs()
    assert logs.count("AuthError") >= 1
    assert "Retry in" not in logs  # bad credentials never loop

    httpx.put(f"{sandbox.url}/_control/faults", json={"fail_next": 1}).raise_for_status()
    env2 = dict(env, AKINON_TOKEN=SANDBOX_TOKEN, CELERY_QUEUE=env["CELERY_QUEUE"] + "-2")
    processes.start("worker-2", worker("w2"), env2)
    processes.wait_for(" ready.")
    client.send_task(SYNC_TASK, args=(channel_id, "stock"), queue=env2["CELERY_QUEUE"])
    deadline = time.monotonic() + 30
    while "Retry in" not in processes.logs() or "published=30" not in processes.logs():
        assert time.monotonic() < deadline, processes.logs()
        time.sleep(0.3)
    client.close()
