"""Commands that run or inspect sync steps: poll, status, snapshot, deletes."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import click
import orjson

from publisher.cli.base import RESOURCES, ConfigProblem, _emit, _settings, main

if TYPE_CHECKING:
    from publisher.config import Settings
    from publisher.pipeline import StepSummary
    from publisher.records import Resource
    from publisher.service import Edges


# ----------------------------------------------------------------------------------- poll


def _targets(
    settings: Settings, channels: tuple[int, ...], resource: str
) -> list[tuple[int, Resource]]:
    """Return the (channel, resource) steps asked for; a channel not configured is exit 2."""
    from publisher.errors import ConfigError

    targets = []
    for channel_id in channels or tuple(settings.channel_ids):
        try:
            configured = settings.channel(channel_id).resources
        except ConfigError as exc:
            raise ConfigProblem(str(exc)) from None
        targets += [(channel_id, item) for item in configured if resource in ("all", item.value)]
    return targets


class _Progress(logging.Filter):
    """Show a live count on a terminal while a long step runs.

    As a filter on the log handler, it clears its line before any log line is written, so
    the two never share a line.
    """

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled
        self.shown = False
        self.started = time.monotonic()

    def restart(self) -> None:
        """Start timing the next step."""
        self.started = time.monotonic()

    def __call__(self, summary: StepSummary) -> None:
        """Rewrite the progress line with the counts so far."""
        if not self.enabled or summary.pages < 2:
            return
        rate = summary.seen / max(time.monotonic() - self.started, 1e-6)
        click.echo(
            f"\r\033[K  ch={summary.channel_id} {summary.resource}: {summary.seen:,} records, "
            f"{summary.published:,} events ({rate:,.0f} records/s)",
            err=True,
            nl=False,
        )
        self.shown = True

    def clear(self) -> None:
        """Erase the progress line, if one is shown."""
        if self.shown:
            click.echo("\r\033[K", err=True, nl=False)
            self.shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Clear the progress line before a log record is written; keep the record."""
        self.clear()
        return True


def _poll_one(
    settings: Settings, channel_id: int, item: Resource, edges: Edges, progress: _Progress
) -> tuple[dict[str, Any], str, bool]:
    """Run one step; return what to print (JSON payload, line) and whether it failed."""
    from publisher.errors import PublisherError
    from publisher.service import run_step, step_spec

    progress.restart()
    try:
        summary = run_step(step_spec(settings, channel_id, item), edges, progress)
    except PublisherError as exc:
        payload = {
            "channel_id": channel_id,
            "resource": item.value,
            "error": type(exc).__name__,
            "message": str(exc),
        }
        return payload, f"channel={channel_id} resource={item.value} failed: {exc}", True
    finally:
        progress.clear()
    return summary.as_dict(), summary.line(), False


@main.command()
@click.option("--channel", "channels", type=int, multiple=True, help="Channel id (repeatable).")
@click.option("--resource", type=RESOURCES, default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON summary per line.")
def poll(channels: tuple[int, ...], resource: str, as_json: bool) -> None:
    """Run one sync step now for every configured channel and resource.

    Prints one line per step; exit status 1 if a step failed, 2 on bad configuration.
    """
    settings = _settings()
    from publisher.errors import ConfigError
    from publisher.logs import configure_logging
    from publisher.service import STEP_LOGGER, build_edges, tune_gc

    progress = _Progress(enabled=sys.stderr.isatty() and not as_json)
    configure_logging(settings).addFilter(progress)
    logging.getLogger(STEP_LOGGER).setLevel(logging.CRITICAL)  # this command prints its own
    tune_gc()
    targets = _targets(settings, channels, resource)
    try:
        edges = build_edges(settings)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    failed = False
    try:
        for channel_id, item in targets:
            payload, line, step_failed = _poll_one(settings, channel_id, item, edges, progress)
            _emit(as_json, payload, line)
            failed = failed or step_failed
    finally:
        edges.close()
    if failed:
        raise SystemExit(1)


# --------------------------------------------------------------------------------- status


def _status_rows(settings: Settings) -> tuple[list[dict[str, Any]], str | None]:
    """Return each step's status row and a warning if Redis does not persist the state."""
    from publisher.health import redis_persistence
    from publisher.lock import holder
    from publisher.logs import secrets_of
    from publisher.redact import register
    from publisher.state import RedisStateStore

    register(*secrets_of(settings))  # an error stored by an older version may hold one
    store = RedisStateStore.from_url(settings.redis_url)
    rows = []
    try:
        for channel_id, item in settings.targets():
            meta = store.read_meta(channel_id, item)
            rows.append(_status_row(channel_id, item, meta, holder(store.client, channel_id, item)))
        warning = redis_persistence(store.client)
    finally:
        store.close()
    return rows, warning


def _scrubbed(text: str | None) -> str | None:
    from publisher.redact import scrub

    return None if text is None else scrub(text)


def _status_row(
    channel_id: int, resource: Resource, meta: dict[str, str], lock_holder: str | None
) -> dict[str, Any]:
    from datetime import UTC, datetime

    last = meta.get("last_success_at")
    lag = (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds() if last else None
    summary = orjson.loads(meta["last_summary"]) if "last_summary" in meta else {}
    return {
        "channel_id": channel_id,
        "resource": resource.value,
        "tracked": int(meta.get("tracked", 0)),
        "last_success_at": last,
        "lag_seconds": round(lag, 1) if lag is not None else None,
        "last_step": summary,
        "last_error": _scrubbed(meta.get("last_error")),
        "last_error_at": meta.get("last_error_at"),
        "watermark": meta.get("watermark"),
        "last_full_scan_at": meta.get("last_full_scan_at"),
        "deletes_held": int(meta.get("deletes_held") or 0),
        "deletes_held_at": meta.get("deletes_held_at") or None,
        "reload_held": meta.get("reload_held") == "1",
        "date_filter_ignored_at": meta.get("date_filter_ignored_at") or None,
        "lock_holder": lock_holder,
    }


def _status_text(row: dict[str, Any]) -> str:
    step = row["last_step"]
    lag = f"{row['lag_seconds']}s ago" if row["lag_seconds"] is not None else "never"
    text = (
        f"channel={row['channel_id']} resource={row['resource']} tracked={row['tracked']} "
        f"last_success={lag}"
    )
    if step:
        text += f" seen={step.get('seen')} published={step.get('published')}"
        text += f" rejected={step.get('rejected')}"
    if row["last_error"] and (
        not row["last_success_at"] or row["last_error_at"] > row["last_success_at"]
    ):
        text += f" last_error={row['last_error']!r}"
    if row["deletes_held"]:
        text += (
            f" DELETES_HELD={row['deletes_held']} since={row['deletes_held_at']}"
            " (check the list, then: akinon-publisher deletes release)"
        )
    if row["reload_held"]:
        text += (
            f" RELOAD_HELD since={row['deletes_held_at']} (the list read empty after the state"
            " was lost; check it, then: akinon-publisher deletes release)"
        )
    if row["date_filter_ignored_at"]:
        text += " date_filter=ignored (complete scans only)"
    if row["lock_holder"]:
        text += f" running_on={row['lock_holder']}"
    return text


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 if a step failed last or has not succeeded in HEALTH_STALE_INTERVALS intervals.",
)
def status(as_json: bool, check: bool) -> None:
    """Show each channel's last step, lag, counts, last error and lock holder (Redis only).

    With --check it is a probe: exit status 1 when any (channel, resource) failed its last
    step or is stale, 0 when all are well. It warns (stderr) when Redis does not persist.
    """
    settings = _settings()
    from datetime import UTC, datetime

    from publisher.errors import PublisherError
    from publisher.health import step_problem

    try:
        rows, warning = _status_rows(settings)
    except PublisherError as exc:
        raise click.ClickException(str(exc)) from None
    if warning:
        click.echo(f"warning: Redis: {warning}", err=True)
    now = datetime.now(UTC)
    for row in rows:
        interval = settings.interval_for(row["channel_id"])
        row["problem"] = step_problem(row, interval, settings.health_stale_intervals, now)
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        for row in rows:
            click.echo(_status_text(row))
    unhealthy = [row for row in rows if row["problem"]]
    if check and not as_json:
        for row in unhealthy:
            where = f"channel={row['channel_id']} resource={row['resource']}"
            click.echo(f"UNHEALTHY {where}: {row['problem']}")
    if check and unhealthy:
        raise SystemExit(1)


# ------------------------------------------------------------------------------- snapshot


@main.command()
@click.option("--channel", "channels", type=int, multiple=True, help="Channel id (repeatable).")
@click.option("--resource", type=RESOURCES, default="all", show_default=True)
@click.option("--queue", help="Send the events to this queue only (it must exist).")
@click.option("--json", "as_json", is_flag=True, help="One JSON summary per line.")
def snapshot(channels: tuple[int, ...], resource: str, queue: str | None, as_json: bool) -> None:
    """Publish the current content of every record as `snapshot` events, for consumers.

    Without --queue every queue bound to the change routing keys gets them; with it, only
    that queue. The publisher's change state is not touched.
    """
    settings = _settings()
    import uuid

    from publisher.errors import PublisherError
    from publisher.logs import configure_logging
    from publisher.service import build_edges, run_snapshot, snapshot_spec

    configure_logging(settings)
    if queue is not None:
        _require_queue(settings.amqp_url, queue)
    snapshot_id = uuid.uuid4().hex
    targets = _targets(settings, channels, resource)
    edges = build_edges(settings)
    failed = False
    try:
        for channel_id, item in targets:
            spec = snapshot_spec(settings, channel_id, item, snapshot_id, queue)
            try:
                summary = run_snapshot(spec, edges)
            except PublisherError as exc:
                failed = True
                where = f"channel={channel_id} resource={item.value}"
                payload = {"snapshot_id": snapshot_id, "error": str(exc)}
                _emit(as_json, payload, f"snapshot={snapshot_id} {where} failed: {exc}")
                continue
            _emit(as_json, summary.as_dict(), summary.line())
    finally:
        edges.close()
    if failed:
        raise SystemExit(1)


def _require_queue(amqp_url: str, queue: str) -> None:
    """Stop with one line unless the named queue exists."""
    from publisher.broker import queue_exists

    if not queue_exists(amqp_url, queue):
        raise ConfigProblem(f"--queue {queue}: no such queue on the broker (declare it first)")


# -------------------------------------------------------------------------------- deletes


@main.group()
def deletes() -> None:
    """Look after deletes the delete guard held back (see `status`)."""


@deletes.command("release")
@click.option("--channel", "channel_id", type=int, required=True, help="Channel id.")
@click.option("--resource", type=click.Choice(RESOURCES.choices[:-1]), required=True)
def release(channel_id: int, resource: str) -> None:
    """Let the next complete scan publish the deletes it finds, however many."""
    settings = _settings()
    from publisher.errors import PublisherError
    from publisher.records import Resource
    from publisher.state import RedisStateStore

    store = RedisStateStore.from_url(settings.redis_url)
    try:
        meta = store.read_meta(channel_id, Resource(resource))
        store.write_meta(channel_id, Resource(resource), {"release_deletes": "1"})
    except PublisherError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    held = meta.get("deletes_held") or "0"
    click.echo(
        f"channel={channel_id} resource={resource}: the next complete scan publishes its "
        f"deletes (held now: {held})"
    )
