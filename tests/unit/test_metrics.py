"""Business metrics recorded in-process (no server): what each step outcome adds."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from publisher import metrics
from publisher.akinon.client import retry_cause
from publisher.akinon.errors import Retry
from publisher.errors import AuthError, BrokerError


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failed_step_counts_its_error_class_and_time() -> None:
    step = {"channel": "71", "resource": "stock"}
    metrics.step_failed(71, "stock", AuthError("no"), False, 0.2)
    metrics.step_failed(71, "stock", BrokerError("nack"), True, 0.3)
    failures = "akinon_publisher_step_failures_total"
    assert _value(failures, **step, error="AuthError") == 1
    assert _value(failures, **step, error="BrokerError") == 1
    count = "akinon_publisher_step_duration_seconds_count"
    assert _value(count, **step, result="fatal") == 1
    assert _value(count, **step, result="retryable") == 1
    assert _value("akinon_publisher_last_failure_timestamp_seconds", **step) > 0


def test_a_good_step_counts_records_and_sets_its_gauges() -> None:
    step = {"channel": "72", "resource": "price"}
    counts = {"seen": 10, "published": 3, "rejected": 1, "duration_seconds": 0.5}
    meta = {"newest_seen": "2026-01-01T00:00:00+00:00", "deletes_held": "4"}
    metrics.step_succeeded(72, "price", counts, meta)
    records = "akinon_publisher_records_total"
    assert _value(records, **step, outcome="seen") == 10
    assert _value(records, **step, outcome="published") == 3
    assert _value(records, **step, outcome="rejected") == 1
    assert _value("akinon_publisher_deletes_held", **step) == 4
    assert _value("akinon_publisher_watermark_lag_seconds", **step) > 86400
    metrics.step_skipped(72, "price")
    assert _value("akinon_publisher_lock_skips_total", **step) == 1


def test_a_retry_is_named_by_its_status_or_kind() -> None:
    assert retry_cause(Retry("HTTP 503")) == "503"
    assert retry_cause(Retry("ConnectError: refused")) == "network"
    assert retry_cause(Retry("invalid JSON", bad_body=True)) == "bad_body"


def test_every_metric_the_dashboard_and_the_alerts_query_exists() -> None:
    import json
    import re
    from pathlib import Path

    import yaml

    # One recording of each kind, so that every metric has samples in this process.
    metrics.step_succeeded(73, "stock", {"seen": 1}, {"newest_seen": "2026-01-01T00:00:00Z"})
    metrics.step_failed(73, "stock", AuthError("no"), False, 0.1)
    metrics.step_skipped(73, "stock")
    metrics.task_expired("73", "stock")
    metrics.akinon_answered(200)
    metrics.akinon_retried("503")
    with metrics.confirm_wait():
        pass
    scraped = {s.name for family in REGISTRY.collect() for s in family.samples}
    dashboards = Path(__file__).resolve().parents[2] / "dashboards"
    exprs = [
        target["expr"]
        for panel in json.loads((dashboards / "akinon-publisher.json").read_text())["panels"]
        for target in panel["targets"]
    ]
    rules = yaml.safe_load((dashboards / "alerts.yml").read_text())
    alerts = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) == 6
    exprs += alerts
    queried = {name for expr in exprs for name in re.findall(r"akinon_publisher_\w+", expr)}
    assert queried, "the dashboard queries no metric"
    assert queried <= scraped, queried - scraped
    documented = {metrics.PREFIX + name for name in metrics.NAMES}
    bases = {re.sub(r"_(bucket|count|sum)$", "", name) for name in queried}
    assert bases <= documented, bases - documented


def test_a_scrape_survives_a_pool_process_creating_its_file(tmp_path: Path) -> None:
    """prometheus_client creates a process's file empty and sizes it afterwards (its issue
    #1199): a scrape in that moment failed whole, and the metrics port answered 500."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    written = MmapedDict(str(tmp_path / "counter_101.db"))
    name = "akinon_publisher_lock_skips"
    written.write_value(mmap_key(name, name + "_total", ["channel"], ["5"], "skips"), 3.0, 0)
    written.close()
    (tmp_path / "counter_102.db").touch()  # a pool process between creating and sizing it
    registry = CollectorRegistry()
    registry.register(metrics.TolerantCollector(str(tmp_path)))
    text = generate_latest(registry).decode()
    assert 'akinon_publisher_lock_skips_total{channel="5"} 3.0' in text
