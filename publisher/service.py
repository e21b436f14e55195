"""Build the real edges from `Settings` and run sync steps with locking and bookkeeping.

This is where configuration meets the pipeline: the command line and the Celery tasks call
`run_step`; the pipeline itself never sees settings or the environment.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

import orjson

from publisher.akinon import AkinonClient
from publisher.config import Settings
from publisher.errors import PublisherError
from publisher.lock import holder, single_flight
from publisher.pipeline import (
    ProgressCallback,
    StepSpec,
    StepSummary,
    plan_since,
    sync_step,
)
from publisher.ports import ChangeSource, EventPublisher, StateStore
from publisher.publish import KombuPublisher
from publisher.records import Resource
from publisher.redis_client import RedisClient
from publisher.state import RedisStateStore

log = logging.getLogger(__name__)
# One line per step (done, failed, skipped) and progress lines of long steps. `poll` prints
# its own line per step, so it quiets this logger alone.
STEP_LOGGER: Final = "publisher.steps"
step_log = logging.getLogger(STEP_LOGGER)


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
    """Describe one sync step as the settings configure it."""
    return StepSpec(
        channel_id=channel_id,
        resource=resource,
        base_url=settings.akinon_url,
        endpoint=settings.akinon_endpoint,
        acknowledge=settings.akinon_acknowledge,
        lookback_seconds=(
            settings.incremental_lookback_seconds
            if settings.akinon_incremental and not settings.akinon_acknowledge
            else None
        ),
        full_scan_seconds=settings.full_scan_interval_seconds,
    )


def run_step(spec: StepSpec, edges: Edges, on_page: ProgressCallback | None = None) -> StepSummary:
    """Run one sync step unless another one holds its lock; record the outcome."""
    if edges.redis is None:  # one process, in-memory state: nothing to coordinate with
        return _run(spec, edges, on_page)
    with single_flight(edges.redis, spec.channel_id, spec.resource) as taken:
        if taken:
            return _run(spec, edges, on_page)
    owner = holder(edges.redis, spec.channel_id, spec.resource) or "another step"
    summary = StepSummary(
        spec.channel_id, spec.resource.value, skipped_because=f"lock held by {owner}"
    )
    step_log.info("step skipped %s", summary.line())
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


def _plan(spec: StepSpec, state: StateStore) -> tuple[StepSpec, dict[str, str]]:
    if spec.lookback_seconds is None or spec.acknowledge:
        return spec, {}
    meta = state.read_meta(spec.channel_id, spec.resource)
    since = plan_since(
        meta,
        datetime.now(UTC),
        lookback_seconds=spec.lookback_seconds,
        full_scan_seconds=spec.full_scan_seconds,
    )
    return replace(spec, since=since), meta


def _progress(summary: StepSummary, meta: dict[str, str], started_at: str) -> dict[str, str]:
    """Return the bookkeeping of a successful step: outcome, watermark, last full scan."""
    fields = {
        "last_success_at": _now(),
        "last_summary": orjson.dumps(summary.as_dict()).decode(),
    }
    watermark = max(filter(None, (meta.get("watermark"), summary.newest_modified)), default=None)
    if watermark:
        fields["watermark"] = watermark
    if not summary.incremental:
        fields["last_full_scan_at"] = started_at
    return fields


def _run(spec: StepSpec, edges: Edges, on_page: ProgressCallback | None) -> StepSummary:
    started_at = _now()
    try:
        spec, meta = _plan(spec, edges.state)
        summary = sync_step(spec, edges.source, edges.state, edges.publisher, on_page)
    except PublisherError as exc:
        step_log.error(
            "step failed channel=%s resource=%s error=%s: %s",
            spec.channel_id,
            spec.resource.value,
            type(exc).__name__,
            exc,
        )
        _record(
            edges.state,
            spec,
            {"last_error": f"{type(exc).__name__}: {exc}", "last_error_at": _now()},
        )
        raise
    step_log.info("step done %s", summary.line())
    _record(edges.state, spec, _progress(summary, meta, started_at))
    return summary


def _record(state: StateStore, spec: StepSpec, fields: dict[str, str]) -> None:
    try:
        state.write_meta(spec.channel_id, spec.resource, fields)
    except PublisherError as exc:  # bookkeeping must not hide the step's own outcome
        log.warning("could not record step outcome: %s", exc)


def _now() -> str:
    return datetime.now(UTC).isoformat()
