"""What an operator alerts on: metrics from prefork workers, `status --check`, health probes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from publisher.celery import SYNC_TASK
from publisher.sandbox import SandboxServer
from tests.integration.services import BIN, Processes, celery, free_port, service_env, worker

pytestmark = pytest.mark.integration


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    """Return {(name, labels): value} for every sample of a scrape."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _get(samples: Samples, name: str, **labels: object) -> float:
    key = (name, frozenset((k, str(v)) for k, v in labels.items()))
    assert key in samples, f"{name} {labels} not in {sorted(samples)}"
    return samples[key]


def _scrape(port: int, name: str, timeout: float = 30.0, **labels: object) -> Samples:
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    key = (name, frozenset((k, str(v)) for k, v in labels.items()))
    while time.monotonic() < deadline:
        try:
            samples = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        except httpx.HTTPError:
            samples = {}
        if samples.get(key, 0) > 0:
            return samples
        time.sleep(0.3)
    raise AssertionError(f"{name} {labels} never above 0 in {sorted(samples)}")


def test_a_prefork_worker_serves_business_metrics_of_its_pool(
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    port = free_port()
    env = service_env(sandbox, channel_id, redis_url, amqp_url, METRICS_PORT=str(port))
    args = celery("worker", "--loglevel=INFO", "--concurrency=2", "--pool=prefork")
    processes.start("worker", [*args, "--hostname=metrics@%h", "--without-mingle"], env)
    processes.wait_for(" ready.", timeout=45)
    client = Celery("test-client", broker=amqp_url)
    for resource in ("stock", "price"):
        client.send_task(SYNC_TASK, args=(channel_id, resource), queue=env["CELERY_QUEUE"])
    client.close()
    records = "akinon_publisher_records_total"
    stock = {"channel": channel_id, "resource": "stock"}
    _scrape(port, records, **stock, outcome="published")
    samples = _scrape(port, records, channel=channel_id, resource="price", outcome="published")
    assert _get(samples, records, **stock, outcome="published") == 30
    assert _get(samples, records, **stock, outcome="seen") == 30
    assert _get(samples, records, **stock, outcome="rejected") == 0
    last = _get(samples, "akinon_publisher_last_success_timestamp_seconds", **stock)
    assert time.time() - 60 < last <= time.time()
    steps = _get(samples, "akinon_publisher_step_duration_seconds_count", **stock, result="ok")
    assert steps == 1
    assert _get(samples, "akinon_publisher_akinon_requests_total", status=200) >= 2
    assert _get(samples, "akinon_publisher_broker_confirm_seconds_count") >= 2
    assert _get(samples, "akinon_publisher_broker_confirm_failures_total") == 0
    assert _get(samples, "akinon_publisher_watermark_lag_seconds", **stock) >= 0
    assert _get(samples, "akinon_publisher_deletes_held", **stock) == 0
    assert "metrics on http://127.0.0.1:" in processes.logs()


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "akinon-publisher"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_status_check_fails_after_a_failed_step_and_passes_after_a_good_one(
    sandbox: SandboxServer, channel_id: int, redis_url: str, amqp_url: str, tmp_path: Path
) -> None:
    env = service_env(sandbox, channel_id, redis_url, amqp_url)
    never = _cli(env, tmp_path, "status", "--check")
    assert never.returncode == 1
    assert f"UNHEALTHY channel={channel_id} resource=stock: no successful step yet" in never.stdout

    assert _cli(env, tmp_path, "poll").returncode == 0
    good = _cli(env, tmp_path, "status", "--check")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "UNHEALTHY" not in good.stdout

    bad_env = dict(env, AKINON_TOKEN="not-the-token")
    assert _cli(bad_env, tmp_path, "poll", "--resource", "price").returncode == 1
    failed = _cli(env, tmp_path, "status", "--check")
    assert failed.returncode == 1
    assert f"UNHEALTHY channel={channel_id} resource=price: last step failed: AuthError" in (
        failed.stdout
    )
    assert f"channel={channel_id} resource=stock:" not in failed.stdout.partition("UNHEALTHY")[2]
    as_json = _cli(env, tmp_path, "status", "--check", "--json")
    assert as_json.returncode == 1
    assert [bool(row["problem"]) for row in orjson.loads(as_json.stdout)] == [False, True]

    assert _cli(env, tmp_path, "poll").returncode == 0
    assert _cli(env, tmp_path, "status", "--check").returncode == 0

    stale = _cli(dict(env, POLL_INTERVAL_SECONDS="0.1"), tmp_path, "status", "--check")
    assert stale.returncode == 1
    assert "no successful step for" in stale.stdout


def test_status_warns_when_its_redis_does_not_persist_the_state(
    sandbox: SandboxServer,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
    tmp_path: Path,
    redis_client: redis.Redis,
) -> None:
    env = service_env(sandbox, channel_id, redis_url, amqp_url)
    result = _cli(env, tmp_path, "status")
    assert result.returncode == 0
    aof = redis_client.info("persistence")["aof_enabled"]
    if aof:
        assert "warning: Redis" not in result.stderr
    else:  # as on the development machines
        assert "warning: Redis: the state is kept" in result.stderr
        assert "re-publication" in result.stderr
        assert "appendonly yes" in result.stderr


def test_health_probes_for_beat_and_the_worker(
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    env = service_env(sandbox, channel_id, redis_url, amqp_url)
    cwd = processes.tmp_path
    before = _cli(env, cwd, "health", "beat")
    assert before.returncode == 1
    assert "UNHEALTHY beat" in before.stdout
    lonely = _cli(env, cwd, "health", "worker", "--timeout", "1")
    assert lonely.returncode == 1
    assert "UNHEALTHY worker" in lonely.stdout

    processes.start("worker", worker("probe"), env)
    processes.start("beat", celery("beat", "--loglevel=INFO"), env)
    deadline = time.monotonic() + 45
    while _cli(env, cwd, "health", "beat").returncode != 0:
        assert time.monotonic() < deadline, processes.logs()
        time.sleep(0.5)
    while (answered := _cli(env, cwd, "health", "worker")).returncode != 0:
        assert time.monotonic() < deadline, answered.stdout + processes.logs()
        time.sleep(0.5)
    assert "probe@" in answered.stdout


def test_a_worker_refuses_a_hostile_task_without_touching_akinon(
    sandbox: SandboxServer,
    processes: Processes,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
) -> None:
    env = service_env(sandbox, channel_id, redis_url, amqp_url)
    processes.start("worker", worker("guard"), env)
    processes.wait_for(" ready.", timeout=45)
    before = httpx.get(f"{sandbox.url}/_control/state").json()["requests"]
    client = Celery("test-client", broker=amqp_url)
    client.send_task(SYNC_TASK, args=["../users/#", "stock"], queue=env["CELERY_QUEUE"])
    client.send_task(SYNC_TASK, args=[channel_id, "users"], queue=env["CELERY_QUEUE"])
    client.close()
    deadline = time.monotonic() + 20
    while processes.logs().count("akinon.sync refused") < 2:
        assert time.monotonic() < deadline, processes.logs()
        time.sleep(0.3)
    time.sleep(1)
    logs = processes.logs()
    assert "UnsafeArgument" in logs
    assert "Retry in" not in logs  # fatal: never retried
    assert httpx.get(f"{sandbox.url}/_control/state").json()["requests"] == before
