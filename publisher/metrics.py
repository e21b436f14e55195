"""Business metrics for Prometheus: what an operator graphs and alerts on.

Every process that runs steps records into prometheus_client's metrics; a Celery worker
serves them on `METRICS_PORT`. Its pool processes are forked, so the worker runs
prometheus_client's multiprocess mode: each process writes its values to files in a
private directory (`PROMETHEUS_MULTIPROC_DIR`, set by `serve` before any metric exists)
and the worker's main process adds them up when scraped. Without a server (`poll`, tests)
the same calls record into the process's default registry.

prometheus_client is imported on first use, never at import: the directory must be set
before it decides how values are stored. `NAMES` lists every metric (the dashboard test
checks the dashboard against it).
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

MULTIPROC_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
PREFIX: Final = "akinon_publisher_"
STEP_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
CONFIRM_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30)
# The counts of a step summary that become records_total{outcome=...}.
OUTCOMES: Final = ("seen", "changed", "published", "rejected", "deleted", "acknowledged")

# name (as scraped, counters with _total) -> help; the table the README documents.
NAMES: Final = {
    "records_total": "Records per channel, resource and outcome "
    "(seen, changed, published, rejected, deleted, acknowledged)",
    "step_duration_seconds": "Sync step duration by result (ok, retryable, fatal)",
    "step_failures_total": "Failed steps by error class",
    "lock_skips_total": "Steps skipped because another step held the lock",
    "last_success_timestamp_seconds": "Unix time of the last successful step",
    "last_failure_timestamp_seconds": "Unix time of the last failed step",
    "watermark_lag_seconds": "Seconds from the newest committed modified_date to the end "
    "of the last successful step",
    "deletes_held": "Deletes the delete guard holds back (release them by hand)",
    "akinon_requests_total": "Akinon HTTP answers by status ('network' when none came)",
    "akinon_retries_total": "Akinon request retries by cause (a status, network, bad_body)",
    "broker_confirm_seconds": "Wait for the broker's confirms of one batch",
    "broker_confirm_failures_total": "Batches the broker did not confirm (nack, timeout, loss)",
    "tasks_expired_total": "Steps beat sent that expired before a worker started them",
}


class _Metrics:
    """The metric objects, created once per process on first use."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram  # noqa: PLC0415 - see module

        step = ["channel", "resource"]
        self.records = Counter(_name("records"), NAMES["records_total"], [*step, "outcome"])
        self.duration = Histogram(
            _name("step_duration_seconds"),
            NAMES["step_duration_seconds"],
            [*step, "result"],
            buckets=STEP_BUCKETS,
        )
        self.failures = Counter(
            _name("step_failures"), NAMES["step_failures_total"], [*step, "error"]
        )
        self.lock_skips = Counter(_name("lock_skips"), NAMES["lock_skips_total"], step)
        self.last_success = _gauge("last_success_timestamp_seconds", step, "max")
        self.last_failure = _gauge("last_failure_timestamp_seconds", step, "max")
        self.watermark_lag = _gauge("watermark_lag_seconds", step, "mostrecent")
        self.deletes_held = _gauge("deletes_held", step, "mostrecent")
        self.requests = Counter(
            _name("akinon_requests"), NAMES["akinon_requests_total"], ["status"]
        )
        self.retries = Counter(_name("akinon_retries"), NAMES["akinon_retries_total"], ["cause"])
        self.confirm = Histogram(
            _name("broker_confirm_seconds"),
            NAMES["broker_confirm_seconds"],
            buckets=CONFIRM_BUCKETS,
        )
        self.confirm_failures = Counter(
            _name("broker_confirm_failures"), NAMES["broker_confirm_failures_total"]
        )
        self.expired = Counter(_name("tasks_expired"), NAMES["tasks_expired_total"], step)


def _name(short: str) -> str:
    return PREFIX + short


def _gauge(short: str, labels: list[str], mode: Literal["max", "mostrecent"]) -> Any:
    from prometheus_client import Gauge  # noqa: PLC0415 - see module

    return Gauge(_name(short), NAMES[short], labels, multiprocess_mode=mode)


_metrics: _Metrics | None = None
# A threads pool's first steps record at once: a metric registered twice is an error.
_metrics_lock = threading.Lock()


def _get() -> _Metrics:
    global _metrics  # noqa: PLW0603 - one set of metric objects per process
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


# ------------------------------------------------------------------------------ recording


def step_succeeded(
    channel_id: int, resource: str, counts: Mapping[str, Any], meta: Mapping[str, str]
) -> None:
    """Record a successful step: its counts, duration, and the state it left (`meta`)."""
    m = _get()
    step = (str(channel_id), resource)
    for outcome in OUTCOMES:
        m.records.labels(*step, outcome).inc(int(counts.get(outcome) or 0))
    m.duration.labels(*step, "ok").observe(float(counts.get("duration_seconds") or 0.0))
    now = time.time()
    m.last_success.labels(*step).set(now)
    newest = _timestamp(meta.get("newest_seen"))
    if newest is not None:
        m.watermark_lag.labels(*step).set(max(now - newest, 0.0))
    m.deletes_held.labels(*step).set(int(meta.get("deletes_held") or 0))


def step_failed(
    channel_id: int, resource: str, error: Exception, retryable: bool, seconds: float
) -> None:
    """Record a failed step: its duration, its error class, when."""
    m = _get()
    step = (str(channel_id), resource)
    m.duration.labels(*step, "retryable" if retryable else "fatal").observe(seconds)
    m.failures.labels(*step, type(error).__name__).inc()
    m.last_failure.labels(*step).set(time.time())


def step_skipped(channel_id: int, resource: str) -> None:
    """Record a step skipped because another one held its lock."""
    _get().lock_skips.labels(str(channel_id), resource).inc()


def task_expired(channel: str, resource: str) -> None:
    """Count one step that expired before a worker started it."""
    _get().expired.labels(channel, resource).inc()


def akinon_answered(status: int | str) -> None:
    """Count one Akinon answer by status (`network` when no answer came)."""
    _get().requests.labels(str(status)).inc()


def akinon_retried(cause: str) -> None:
    """Count one retry of an Akinon request by cause."""
    _get().retries.labels(cause).inc()


@contextmanager
def confirm_wait() -> Iterator[None]:
    """Time a wait for the broker's confirms; count it as failed if it raises."""
    m = _get()
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        m.confirm_failures.inc()
        raise
    finally:
        m.confirm.observe(time.perf_counter() - started)


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -------------------------------------------------------------------------------- serving


def serve(address: str, port: int, directory: Path) -> Path:
    """Serve every process's metrics on (address, port); return this worker's directory.

    Call it in the worker's main process before the pool forks and before any metric is
    recorded. Each worker writes under a subdirectory of its own (its pid): a worker
    started on the same host does not wipe another's files; those of workers no longer
    running are removed. Raises `OSError` if the port cannot be bound.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _remove_dead(directory)
    own = directory / str(os.getpid())
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir(mode=0o700)
    os.environ[MULTIPROC_VARIABLE] = str(own)
    from prometheus_client import (  # noqa: PLC0415 - see module
        CollectorRegistry,
        start_http_server,
        values,
    )

    # If something imported prometheus_client before the directory was set, its values
    # would live in process memory, invisible to the scrape: choose again.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    registry.register(TolerantCollector(str(own)))
    start_http_server(port, addr=address, registry=registry)
    return own


class TolerantCollector:
    """Merge the metrics files of every process, as prometheus_client's multiprocess
    collector does, but never fail a scrape on a file caught mid-creation.

    A pool process creates its file empty and sizes it only afterwards (client_python issue
    #1199), and a file can vanish between listing and reading it: a scrape in that moment
    would fail whole, so the port would answer 500. Files too short to hold a header are
    skipped, and a read that fails is tried again; the next scrape sees them complete.
    """

    HEADER_BYTES: Final = 8
    ATTEMPTS: Final = 3

    def __init__(self, path: str) -> None:
        from prometheus_client import multiprocess  # noqa: PLC0415 - see module

        self._path = Path(path)
        self._merge = multiprocess.MultiProcessCollector.merge

    def collect(self) -> Any:
        """Return the merged metrics of every readable process file."""
        for attempt in range(self.ATTEMPTS):
            try:
                return self._merge(self._files(), accumulate=True)  # type: ignore[no-untyped-call]
            except (struct.error, RuntimeError, OSError):
                if attempt + 1 == self.ATTEMPTS:
                    raise
                time.sleep(0.05)
        return []

    def _files(self) -> list[str]:
        found = []
        for path in self._path.glob("*.db"):
            try:
                if path.stat().st_size >= self.HEADER_BYTES:
                    found.append(str(path))
            except FileNotFoundError:
                continue  # a dead process's file, removed as we listed it
        return found


def _remove_dead(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and entry.name.isdigit() and not _alive(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
