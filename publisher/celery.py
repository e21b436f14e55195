"""Run sync steps as Celery tasks: `celery -A publisher worker|beat|flower`.

Beat schedules one `akinon.sync` task per configured (channel, resource), the first at once
when it starts, and touches a heartbeat file on every tick (`health beat`). A task runs only
for a configured (channel, resource): its arguments come from whoever can publish to the
broker. A worker with METRICS_PORT serves its pool's business metrics. Tasks are thin: they
take the process's edges (built once per worker process, after the fork) and call
`run_step`. Retryable errors retry with capped, jittered
back-off; fatal ones fail at once. The settings are read when Celery first needs its
configuration, not at import; Flower takes its address, port and users from them too.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, cast

import click
from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import (
    before_task_publish,
    celeryd_init,
    task_revoked,
    worker_init,
    worker_process_shutdown,
)

from publisher import lock
from publisher.config import Settings, load_settings
from publisher.errors import ConfigError, RetryableError, UnsafeArgument
from publisher.health import BEAT_TICK_SECONDS, heartbeat_file, touch
from publisher.logs import configure_logging
from publisher.records import Resource
from publisher.service import (
    Edges,
    ProgressLog,
    build_edges,
    run_snapshot,
    run_step,
    snapshot_spec,
    step_spec,
    tune_gc,
)

SYNC_TASK = "akinon.sync"
SNAPSHOT_TASK = "akinon.snapshot"
# Seconds between a step's soft time limit and the hard one (the process is killed).
HARD_LIMIT_MARGIN = 30.0
# The broker's own TTL for a step beat sent: see `_keep_expiry_visible`.
EXPIRED_TASK_TTL_SECONDS = 3600.0

app = Celery("publisher")
log = logging.getLogger(__name__)

_settings: Settings | None = None
_edges: Edges | None = None
# A threads pool's first tasks all ask for the edges at once: build them once.
_edges_lock = threading.Lock()


def _exit(message: str) -> NoReturn:
    """Stop the process as the command line does on bad configuration: one line, status 2."""
    sys.stderr.write(f"akinon-publisher: {message}\n")
    raise SystemExit(2)


def settings() -> Settings:
    """Return this process's settings; exit with a one-line message if they are invalid."""
    global _settings  # noqa: PLW0603 - one settings object per process, read once
    if _settings is None:
        try:
            _settings = load_settings()
        except ConfigError as exc:
            _exit(str(exc))
    return _settings


def beat_schedule(config: Settings) -> dict[str, dict[str, Any]]:
    """Return one schedule entry per (channel, resource)."""
    schedule = {}
    for channel_id, resource in config.targets():  # the channels file's, if there is one
        interval = config.interval_for(channel_id)
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
        "result_expires": None,  # no results are kept, so beat needs no cleanup task
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,  # Flower sees every step
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "beat_schedule": beat_schedule(config),
        # A step that runs too long (a server that trickles bytes) gets SoftTimeLimitExceeded:
        # it fails like any step (`StepCrashed`, recorded) and releases its lock; a step
        # that does not stop then is killed HARD_LIMIT_MARGIN later, and its lock's TTL
        # frees the lock.
        "task_annotations": {
            SYNC_TASK: {
                "soft_time_limit": config.step_time_limit_seconds,
                "time_limit": config.step_time_limit_seconds + HARD_LIMIT_MARGIN,
            }
        },
        "beat_scheduler": f"{__name__}:{BeatScheduler.__name__}",
        "beat_schedule_filename": config.beat_schedule_file,
        # Beat wakes at least this often, so its heartbeat file stays fresh (`health beat`).
        "beat_max_loop_interval": BEAT_TICK_SECONDS,
    }


class BeatScheduler(PersistentScheduler):  # type: ignore[misc]
    """Keep beat's schedule in a private directory, and run every entry once at start.

    The schedule file is a pickle: whoever can write it can make beat run code, so its
    directory is created 0700 and refused if someone else owns it. Without the second part
    a fresh beat would wait a whole interval before the first step.
    """

    def setup_schedule(self) -> None:
        """Open the schedule in its private directory; make every entry due now."""
        try:
            private_directory(Path(self.schedule_filename).parent)
        except ConfigError as exc:
            _exit(str(exc))
        super().setup_schedule()
        for entry in self.schedule.values():
            run_every = getattr(entry.schedule, "run_every", None)
            if entry.task == SYNC_TASK and isinstance(run_every, timedelta):
                entry.last_run_at = entry.default_now() - run_every

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send what is due, as beat does; touch the heartbeat file `health beat` reads."""
        interval: float = super().tick(*args, **kwargs)
        touch(heartbeat_file(self.schedule_filename))
        return interval


def private_directory(path: Path) -> None:
    """Create `path` for this user only (0700); raise `ConfigError` if others could write it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"BEAT_SCHEDULE_FILE: {path} belongs to another user; choose a directory of yours"
        )
    if info.st_mode & 0o077:
        path.chmod(0o700)


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    config = settings()
    configure_logging(config)
    sender.conf.update(celery_config(config))
    context = click.get_current_context(silent=True)
    if context is not None and context.info_name == "flower":
        _configure_flower(config, context.params.get("tornado_argv", ()))


def _configure_flower(config: Settings, argv: tuple[str, ...]) -> None:
    """Give Flower our address, port and users, unless its own command line set them.

    Flower reads its options from FLOWER_* variables and its command line before it asks
    for Celery's configuration (here); the FLOWER_* variables are our settings' too, so
    only what the command line gave is left alone.
    """
    from flower.options import default_options as options  # noqa: PLC0415 - Flower only

    given = {arg.lstrip("-").partition("=")[0].replace("-", "_") for arg in argv}
    if "address" not in given:
        options.address = config.flower_address
    if "port" not in given:
        options.port = config.flower_port
    if "basic_auth" not in given and config.flower_basic_auth is not None:
        options.basic_auth = config.flower_basic_auth.get_secret_value().split(",")
    if not (options.basic_auth or options.auth or _is_loopback(options.address)):
        _exit(
            f"FLOWER_BASIC_AUTH is required when Flower listens on {options.address or '*'} "
            "(set it to user:password, or keep FLOWER_ADDRESS on 127.0.0.1)"
        )


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # '' (every interface) or a host name
        return False


@worker_init.connect
def _start_worker(**_: Any) -> None:
    # In the main worker process, before any pool process is forked: every pool inherits
    # the collector's thresholds and the metrics directory.
    tune_gc()
    _serve_metrics(settings())


def _serve_metrics(config: Settings) -> None:
    """Serve the business metrics of every pool process on METRICS_PORT, if it is set."""
    if config.metrics_port is None:
        return
    from publisher import metrics  # noqa: PLC0415 - workers with METRICS_PORT only

    try:
        metrics.serve(config.metrics_address, config.metrics_port, Path(config.metrics_directory))
    except OSError as exc:
        _exit(
            f"METRICS_PORT {config.metrics_port}: cannot listen on {config.metrics_address}: "
            f"{exc.strerror or exc}"
        )
    log.info("metrics on http://%s:%d/metrics", config.metrics_address, config.metrics_port)


def edges() -> Edges:
    """Return this worker process's edges, connecting on first use (once, whatever the pool).

    Every thread of a threads pool shares them: the Akinon client and the Redis store are
    thread-safe, and the publisher keeps an AMQP connection per thread.
    """
    global _edges  # noqa: PLW0603 - connections live as long as the worker process
    if _edges is None:
        with _edges_lock:
            if _edges is None:
                _edges = build_edges(settings())
    return _edges


@celeryd_init.connect
def _name_lock_owner(sender: str | None = None, **_: Any) -> None:
    # In the main worker process, before any pool process is forked: the locks a step takes
    # name this worker's node (`celery@host`, as `status` shows it), not just its host.
    if sender:
        lock.name_owner(sender)


@before_task_publish.connect
def _keep_expiry_visible(
    sender: str | None = None, properties: dict[str, Any] | None = None, **_: Any
) -> None:
    """Let a step that expires unsent reach a worker, which discards and counts it.

    Celery sends a task's `expires` twice: in the message, where the worker reads it, and
    as the AMQP per-message TTL, with which RabbitMQ drops the message without a word.
    Beat's steps keep the broker's TTL only as a bound for a queue nobody consumes.
    """
    if sender == SYNC_TASK and properties and properties.get("expiration") is not None:
        ttl = float(properties["expiration"])
        properties["expiration"] = max(ttl, EXPIRED_TASK_TTL_SECONDS)


@task_revoked.connect
def _count_expired(
    sender: Any = None, request: Any = None, expired: bool = False, **_: Any
) -> None:
    """Log and count a task the worker discarded because it expired before it started."""
    if not expired:
        return
    args = tuple(getattr(request, "args", None) or ())
    channel, resource = (str(a) for a in args[:2]) if _configured(*args[:2]) else ("?", "?")
    log.warning(
        "task expired unsent: %s channel=%s resource=%s (no worker started it within its "
        "expiry; the next one beat sends replaces it)",
        getattr(sender, "name", sender),
        channel,
        resource,
    )
    from publisher import metrics  # noqa: PLC0415 - as service does, on first use

    metrics.task_expired(channel, resource)


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
    channel, kind = checked_step(SYNC_TASK, channel_id, resource)
    spec = step_spec(settings(), channel, kind)
    return run_step(spec, edges(), ProgressLog()).as_dict()


def checked_step(task: str, channel_id: object, resource: object) -> tuple[int, Resource]:
    """Return a task's (channel, resource) if the settings configure it; else refuse it.

    Anyone who can publish to the broker can send a task with any arguments: a channel id
    is used only if it is an `int` and, with the resource it names, a configured step
    (AKINON_CHANNELS or the channels file), so nothing else reaches a request path, a Redis
    key or a routing key. A refusal is fatal (never retried) and logged.
    """
    if _configured(channel_id, resource):
        return cast(int, channel_id), Resource(cast(str, resource))
    configured = ", ".join(f"{c}/{r.value}" for c, r in settings().targets())
    message = (
        f"{task} refused: arguments ({_shown(channel_id)}, {_shown(resource)}) are not a "
        f"configured step ({configured})"
    )
    log.error("%s", message)
    raise UnsafeArgument(message)


def _configured(channel_id: object = None, resource: object = None) -> bool:
    """Say whether (channel_id, resource) are a configured step's arguments."""
    return (
        type(channel_id) is int
        and isinstance(resource, str)
        and resource in Resource.__members__.values()
        and (channel_id, Resource(resource)) in settings().targets()
    )


def _shown(value: object, limit: int = 60) -> str:
    """Return a refused argument as one short line: its repr, cut at `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


@app.task(
    name=SNAPSHOT_TASK,
    bind=True,
    autoretry_for=(RetryableError,),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
)
def snapshot(self: Any, channel_id: int, resource: str, queue: str | None = None) -> dict[str, Any]:
    """Publish every record of (channel, resource) as `snapshot` events; to `queue` only, if given.

    The task's id is the snapshot id, so a retried task publishes the same event ids.
    Start one from Flower or with `celery -A publisher call akinon.snapshot --args='[1, "stock"]'`.
    """
    channel, kind = checked_step(SNAPSHOT_TASK, channel_id, resource)
    if queue is not None and not isinstance(queue, str):
        message = f"{SNAPSHOT_TASK} refused: queue {_shown(queue)} is not a queue name"
        log.error("%s", message)
        raise UnsafeArgument(message)
    spec = snapshot_spec(settings(), channel, kind, self.request.id, queue)
    return run_snapshot(spec, edges()).as_dict()
