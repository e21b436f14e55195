"""Run sync steps as Celery tasks: `celery -A publisher worker|beat|flower`.

Beat schedules one `akinon.sync` task per configured (channel, resource). Tasks are thin:
they take the process's edges (built once per worker process, after the fork) and call
`run_step`. Retryable errors retry with capped, jittered back-off; fatal ones fail at once.
The settings are read when Celery first needs its configuration, not at import.
"""

from __future__ import annotations

import sys
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown

from publisher.config import Settings, load_settings
from publisher.errors import ConfigError, RetryableError
from publisher.logs import configure_logging
from publisher.records import Resource
from publisher.service import Edges, build_edges, run_step, step_spec, tune_gc

SYNC_TASK = "akinon.sync"

app = Celery("publisher")

_settings: Settings | None = None
_edges: Edges | None = None


def settings() -> Settings:
    """Return this process's settings; exit with a one-line message if they are invalid."""
    global _settings  # noqa: PLW0603 - one settings object per process, read once
    if _settings is None:
        try:
            _settings = load_settings()
        except ConfigError as exc:
            sys.stderr.write(f"akinon-publisher: {exc}\n")
            raise SystemExit(2) from None
    return _settings


def beat_schedule(config: Settings) -> dict[str, dict[str, Any]]:
    """Return one schedule entry per (channel, resource)."""
    schedule = {}
    for channel_id in config.akinon_channels:
        interval = config.interval_for(channel_id)
        for resource in Resource:
            schedule[f"sync-{channel_id}-{resource.value}"] = {
                "task": SYNC_TASK,
                "schedule": interval,
                "args": (channel_id, resource.value),
                # A step nobody ran within one interval is stale: the next one replaces it.
                "options": {"expires": interval},
            }
    return schedule


def celery_config(config: Settings) -> dict[str, Any]:
    """Return Celery's configuration derived from our settings."""
    return {
        "broker_url": config.amqp_url,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": config.celery_queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,  # Flower sees every step
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "beat_schedule": beat_schedule(config),
    }


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    config = settings()
    configure_logging(config)
    sender.conf.update(celery_config(config))


@worker_init.connect
def _tune_gc(**_: Any) -> None:
    # In the main worker process, before any pool process is forked: every pool inherits it.
    tune_gc()


def edges() -> Edges:
    """Return this worker process's edges, connecting on first use."""
    global _edges  # noqa: PLW0603 - connections live as long as the worker process
    if _edges is None:
        _edges = build_edges(settings())
    return _edges


@worker_process_shutdown.connect
def _close_edges(**_: Any) -> None:
    global _edges  # noqa: PLW0603
    if _edges is not None:
        _edges.close()
        _edges = None


@app.task(
    name=SYNC_TASK,
    autoretry_for=(RetryableError,),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
)
def sync(channel_id: int, resource: str) -> dict[str, Any]:
    """Run one sync step for (channel, resource); return its summary for Flower."""
    spec = step_spec(settings(), channel_id, Resource(resource))
    return run_step(spec, edges()).as_dict()
