"""Build the real edges from `Settings` and run sync steps with locking and bookkeeping.

This is where configuration meets the pipeline: the command line and the Celery tasks call
`run_step`; the pipeline itself never sees settings or the environment.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from publisher import metrics
from publisher.akinon import AkinonClient
from publisher.config import Settings
from publisher.deletes import DeleteGuard
from publisher.errors import PublisherError, RetryableError, StepCrashed
from publisher.fence import FencedPublisher, FencedState
from publisher.lock import StepLock, holder, single_flight
from publisher.logs import secrets_of
from publisher.outgoing import EventContext, heartbeat_event, source_uri
from publisher.pipeline import ProgressCallback, StepSpec, StepSummary, sync_step
from publisher.plan import plan_step, step_progress
from publisher.ports import ChangeSource, EventPublisher, StateStore
from publisher.publish import KombuPublisher
from publisher.records import Endpoint, Resource
from publisher.redact import register, scrub, scrub_exception
from publisher.redis_client import RedisClient
from publisher.snapshot import SnapshotSpec, SnapshotSummary, snapshot_step
from publisher.state import RedisStateStore

log = logging.getLogger(__name__)
# One line per step (done, failed, skipped) and progress lines of long steps. `poll` prints
# its own line per step, so it quiets this logger alone.
STEP_LOGGER: Final = "publisher.steps"
step_log = logging.getLogger(STEP_LOGGER)
T = TypeVar("T")


@dataclass
class Edges:
    """The outside systems one process talks to; `redis` also carries the step locks."""

    source: ChangeSource
    state: StateStore
    publisher: EventPublisher
    redis: RedisClient | None = None

    def close(self) -> None:
        """Close every edge that holds a connection."""
        for edge in (self.source, self.publisher, self.state):
            close = getattr(edge, "close", None)
            if close is not None:
                close()


# A page decodes about a thousand records into dicts the garbage collector tracks. With the
# default first threshold (700) a collection runs while a page is still alive, so its
# records are promoted to older generations, and full collections keep walking them: about
# a tenth of a full scan's time, measured. Let most pages die before the first collection.
GC_FIRST_THRESHOLD = 10_000


def tune_gc() -> None:
    """Set this process's collector up for sync steps (call once at process start)."""
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, GC_FIRST_THRESHOLD), second, third)


def build_edges(settings: Settings) -> Edges:
    """Connect (lazily) to Akinon, Redis and the broker named in the settings."""
    register(*secrets_of(settings))  # whatever fails from here on is scrubbed of them
    state = RedisStateStore.from_url(settings.redis_url)
    return Edges(
        source=AkinonClient.from_settings(settings),
        state=state,
        publisher=KombuPublisher(
            settings.amqp_url, confirm_timeout=settings.confirm_timeout_seconds
        ),
        redis=state.client,
    )


def step_spec(settings: Settings, channel_id: int, resource: Resource) -> StepSpec:
    """Describe one sync step as the settings (and the channels file) configure it."""
    channel = settings.channel(channel_id)
    return StepSpec(
        channel_id=channel_id,
        resource=resource,
        base_url=settings.akinon_url,
        endpoint=channel.endpoint,
        acknowledge=channel.acknowledge,
        lookback_seconds=(
            settings.incremental_lookback_seconds
            if settings.akinon_incremental and not channel.acknowledge
            else None
        ),
        full_scan_seconds=settings.full_scan_interval_seconds,
        max_rounds=settings.akinon_drain_max_pages,
        delete_guard=DeleteGuard(
            share=settings.delete_guard_share, minimum=settings.delete_guard_min_records
        ),
        interval_seconds=settings.interval_for(channel_id),
        queries=channel.queries_for(resource),
        page_size=channel.page_size,
        max_record_bytes=settings.max_record_bytes,
    )


def snapshot_spec(
    settings: Settings, channel_id: int, resource: Resource, snapshot_id: str, queue: str | None
) -> SnapshotSpec:
    """Describe one snapshot: the channel's whole list (the work queue is never read)."""
    channel = settings.channel(channel_id)
    endpoint = channel.endpoint if not channel.endpoint.is_work_queue else Endpoint.LIST
    return SnapshotSpec(
        channel_id,
        resource,
        settings.akinon_url,
        snapshot_id,
        queue,
        endpoint,
        queries=channel.queries_for(resource),
    )


def run_snapshot(spec: SnapshotSpec, edges: Edges) -> SnapshotSummary:
    """Publish one snapshot (no lock: it reads the state and writes none); log its outcome."""
    try:
        summary = _guarded(snapshot_step, spec, edges.source, edges.state, edges.publisher)
    except PublisherError as exc:
        scrub_exception(exc)
        step_log.error(
            "snapshot failed snapshot=%s channel=%s resource=%s: %s",
            spec.snapshot_id,
            spec.channel_id,
            spec.resource.value,
            exc,
        )
        raise
    step_log.info("snapshot done %s", summary.line())
    return summary


def run_step(spec: StepSpec, edges: Edges, on_page: ProgressCallback | None = None) -> StepSummary:
    """Run one sync step unless another one holds its lock; record the outcome.

    Whatever goes wrong leaves as a `PublisherError` (one that is not ours as
    `StepCrashed`), recorded in the step's `last_error` first.
    """
    if edges.redis is None:  # one process, in-memory state: nothing to coordinate with
        return _run(spec, edges, on_page)
    with single_flight(edges.redis, spec.channel_id, spec.resource) as lock:
        if lock is not None:
            return _run(spec, edges, on_page, lock)
    owner = holder(edges.redis, spec.channel_id, spec.resource) or "another step"
    summary = StepSummary(
        spec.channel_id, spec.resource.value, skipped_because=f"lock held by {owner}"
    )
    step_log.info("step skipped %s", summary.line())
    metrics.step_skipped(spec.channel_id, spec.resource.value)
    return summary


class ProgressLog:
    """Log a running step's counts every `every` seconds, so a long first sync is not silent.

    Pass it as `run_step`'s `on_page`; it is called once per committed page.
    """

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._started = self._last = clock()

    def __call__(self, summary: StepSummary) -> None:
        """Log the counts so far if `every` seconds passed since the last line."""
        now = self._clock()
        if now - self._last < self._every:
            return
        self._last = now
        step_log.info(
            "step progress channel=%s resource=%s pages=%d seen=%d published=%d elapsed=%.0fs",
            summary.channel_id,
            summary.resource,
            summary.pages,
            summary.seen,
            summary.published,
            now - self._started,
        )


def _run(
    spec: StepSpec, edges: Edges, on_page: ProgressCallback | None, lock: StepLock | None = None
) -> StepSummary:
    started = time.monotonic()
    try:
        return _guarded(_attempt, spec, edges, on_page, lock)
    except PublisherError as exc:
        _failed(spec, edges.state, exc)
        retryable = isinstance(exc, RetryableError)
        elapsed = time.monotonic() - started
        metrics.step_failed(spec.channel_id, spec.resource.value, exc, retryable, elapsed)
        raise


def _guarded(run: Callable[..., T], *args: Any) -> T:
    """Call `run`; an exception that is not ours leaves as `StepCrashed`, never raw.

    Not ours: a bug, data no rule foresaw, Celery's soft time limit. The original stays
    its cause (scrubbed with it, or cut off if its text cannot be).
    """
    try:
        return run(*args)
    except PublisherError:
        raise
    except Exception as exc:
        raise StepCrashed(scrub(f"{type(exc).__name__}: {exc}")) from exc


def _attempt(
    spec: StepSpec, edges: Edges, on_page: ProgressCallback | None, lock: StepLock | None
) -> StepSummary:
    """Plan the step, run it, and write its bookkeeping; every write checks `lock` first."""
    started_at = datetime.now(UTC)
    state, publisher = edges.state, edges.publisher
    if lock is not None:
        state, publisher = FencedState(state, lock), FencedPublisher(publisher, lock)
    meta = edges.state.read_meta(spec.channel_id, spec.resource)
    spec = plan_step(spec, meta, started_at)
    summary = sync_step(spec, edges.source, state, publisher, on_page)
    step_log.info("step done %s", summary.line())
    if summary.date_filter_ignored and not meta.get("date_filter_ignored_at"):
        step_log.warning(
            "date filter ignored channel=%s resource=%s: the server answered "
            "modified_date__gte=%s with older records; this list is read by complete scans "
            "from now on",
            spec.channel_id,
            spec.resource.value,
            spec.since,
        )
    progress = step_progress(
        summary, meta, started_at, datetime.now(UTC), lookback_seconds=spec.lookback_seconds
    )
    _record(state, spec, progress)
    metrics.step_succeeded(
        spec.channel_id, spec.resource.value, summary.as_dict(), {**meta, **progress}
    )
    _heartbeat(spec, edges, summary, {**meta, **progress})
    return summary


def _failed(spec: StepSpec, state: StateStore, exc: PublisherError) -> None:
    """Log a failed step and record it as the step's `last_error`, secrets masked.

    The exception itself is scrubbed too: it is what `poll` prints and what a Celery task
    result (Flower) shows.
    """
    scrub_exception(exc)
    step_log.error(
        "step failed channel=%s resource=%s error=%s: %s",
        spec.channel_id,
        spec.resource.value,
        type(exc).__name__,
        exc,
    )
    _record(state, spec, {"last_error": f"{type(exc).__name__}: {exc}", "last_error_at": _now()})


def _heartbeat(spec: StepSpec, edges: Edges, summary: StepSummary, meta: dict[str, str]) -> None:
    """Publish the step's heartbeat; a failure is logged, never the step's own outcome."""
    now = datetime.now(UTC)
    ctx = EventContext(
        spec.channel_id, spec.resource, source_uri(spec.base_url, spec.channel_id), now
    )
    data = {
        "interval_seconds": spec.interval_seconds,
        "complete_scan": summary.complete_scan,
        "watermark": meta.get("newest_seen") or None,
        "last_complete_scan_at": meta.get("last_full_scan_at") or None,
        "seen": summary.seen,
        "published": summary.published,
        "deleted": summary.deleted,
        "rejected": summary.rejected,
    }
    try:
        edges.publisher.publish([heartbeat_event(ctx, now, data)])
    except PublisherError as exc:
        log.warning("could not publish the heartbeat: %s", exc)


def _record(state: StateStore, spec: StepSpec, fields: dict[str, str]) -> None:
    try:
        state.write_meta(spec.channel_id, spec.resource, fields)
    except PublisherError as exc:  # bookkeeping must not hide the step's own outcome
        log.warning("could not record step outcome: %s", exc)


def _now() -> str:
    return datetime.now(UTC).isoformat()
