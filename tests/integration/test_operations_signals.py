"""What an operator alerts on: metrics from prefork workers, `status --check`, health probes."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from publisher.celery import SYNC_TASK
from publisher.sandbox import SandboxServer
from tests.integration.test_runtime import Processes, celery, processes, service_env

pytestmark = pytest.mark.integration
__all__ = ["processes"]  # the fixture, shared with test_runtime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    port = _free_port()
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
