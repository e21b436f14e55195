"""The `akinon-publisher` command line (also `python -m publisher`).

Each command imports what it needs when it runs: `--help` and a mistyped option answer at
once instead of after loading httpx, redis, kombu, pydantic models and the sandbox.

A bad setting or option stops any command with one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

if TYPE_CHECKING:
    from collections.abc import Iterator

    from publisher.config import Settings
    from publisher.pipeline import StepSummary
    from publisher.records import Resource
    from publisher.service import Edges

# Resource values, written out so that `--help` need not import the record models (a test
# keeps them equal to `Resource`).
RESOURCE_NAMES = ("stock", "price")
RESOURCES = click.Choice([*RESOURCE_NAMES, "all"])


class ConfigProblem(click.ClickException):
    """Stop on a bad setting or option: one line on stderr, exit status 2."""

    exit_code = 2


def _settings() -> Settings:
    from publisher.config import load_settings
    from publisher.errors import ConfigError

    try:
        return load_settings()
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None


def _channel_ids(text: str, option: str = "--channels") -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ConfigProblem(f"{option} must be comma-separated channel ids, got {text!r}")
    return [int(part) for part in parts]


def _emit(as_json: bool, payload: Any, text: str) -> None:
    click.echo(orjson.dumps(payload).decode() if as_json else text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="akinon-publisher")
def main() -> None:
    """Turn Akinon stock and price changes into typed events on RabbitMQ.

    Settings come from the environment, then `.env` in the working directory, then
    defaults.
    """


# ----------------------------------------------------------------------------------- poll


def _targets(
    settings: Settings, channels: tuple[int, ...], resource: str
) -> Iterator[tuple[int, Resource]]:
    from publisher.records import Resource

    chosen = channels or tuple(settings.akinon_channels)
    resources = list(Resource) if resource == "all" else [Resource(resource)]
    for channel_id in chosen:
        for item in resources:
            yield channel_id, item


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
    try:
        edges = build_edges(settings)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    failed = False
    try:
        for channel_id, item in _targets(settings, channels, resource):
            payload, line, step_failed = _poll_one(settings, channel_id, item, edges, progress)
            _emit(as_json, payload, line)
            failed = failed or step_failed
    finally:
        edges.close()
    if failed:
        raise SystemExit(1)


# --------------------------------------------------------------------------------- status


def _status_rows(settings: Settings) -> list[dict[str, Any]]:
    from publisher.lock import holder
    from publisher.records import Resource
    from publisher.state import RedisStateStore

    store = RedisStateStore.from_url(settings.redis_url)
    rows = []
    try:
        for channel_id in settings.akinon_channels:
            for item in Resource:
                meta = store.read_meta(channel_id, item)
                rows.append(
                    _status_row(channel_id, item, meta, holder(store.client, channel_id, item))
                )
    finally:
        store.close()
    return rows


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
        "last_error": meta.get("last_error"),
        "last_error_at": meta.get("last_error_at"),
        "watermark": meta.get("watermark"),
        "last_full_scan_at": meta.get("last_full_scan_at"),
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
    if row["lock_holder"]:
        text += f" running_on={row['lock_holder']}"
    return text


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool) -> None:
    """Show each channel's last step, lag, counts, last error and lock holder (Redis only)."""
    settings = _settings()
    from publisher.errors import PublisherError

    try:
        rows = _status_rows(settings)
    except PublisherError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for row in rows:
        click.echo(_status_text(row))


# ----------------------------------------------------------------------------------- tail


def _broker_url(amqp_url: str | None) -> str:
    from publisher.config import load_broker_settings
    from publisher.errors import ConfigError

    try:
        return load_broker_settings(amqp_url).amqp_url
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None


@main.command()
@click.option("--pattern", default="#", show_default=True, help="Routing-key pattern.")
@click.option("--json", "as_json", is_flag=True, help="Print each event's full JSON.")
@click.option(
    "--amqp-url",
    default=None,
    help="Broker URL (default: AMQP_URL from the environment or .env, else local RabbitMQ).",
)
def tail(pattern: str, as_json: bool, amqp_url: str | None) -> None:
    """Print events as they arrive on a temporary queue bound with a pattern."""
    url = _broker_url(amqp_url)
    from publisher.errors import BrokerError
    from publisher.tail import binding_line, event_line
    from publisher.tail import tail as follow

    def show(body: bytes) -> None:
        click.echo(body.decode() if as_json else event_line(body))

    def announce() -> None:
        click.echo(binding_line(url, pattern), err=True)

    try:
        follow(url, pattern, show, on_ready=announce)
    except KeyboardInterrupt:
        return
    except ValueError as exc:  # a pattern no published routing key can match
        raise ConfigProblem(f"--pattern: {exc}") from None
    except (OSError, BrokerError) as exc:
        raise click.ClickException(f"cannot reach the broker: {exc}") from None


# -------------------------------------------------------------------------------- sandbox


def _sandbox_port(port: int | None) -> int:
    if port is not None:
        return port
    from publisher.config import load_sandbox_settings
    from publisher.errors import ConfigError

    try:
        return load_sandbox_settings().sandbox_port
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="Port (default: SANDBOX_PORT, else 8800).")
@click.option("--channels", default="1,2", show_default=True, help="Comma-separated ids.")
@click.option("--size", default=1000, show_default=True, help="Records per channel/resource.")
@click.option("--churn", default=0.0, show_default=True, help="Random changes per second.")
@click.option("--token", default="sandbox-token", show_default=True)
@click.option("--latency-ms", default=0, show_default=True, help="Delay per API request.")
@click.option("--error-rate", default=0.0, show_default=True, help="Fraction answered 503.")
@click.option("--seed", default=42, show_default=True)
def sandbox(
    host: str,
    port: int | None,
    channels: str,
    size: int,
    churn: float,
    token: str,
    latency_ms: int,
    error_rate: float,
    seed: int,
) -> None:
    """Run the local Akinon stand-in (HTTP API, batch requests, control API, faults)."""
    ids = _channel_ids(channels)
    port = _sandbox_port(port)
    from publisher.sandbox import Catalog, SandboxServer

    server = SandboxServer(
        Catalog.seeded(channels=ids, size=size, seed=seed), host=host, port=port, token=token
    )
    server.faults.latency_ms = latency_ms
    server.faults.error_rate = error_rate
    listening = False

    def announce(url: str) -> None:
        nonlocal listening
        listening = True
        click.echo(f"sandbox listening on {url} token={token} channels={ids} size={size}", err=True)
        if churn:
            server.run_churn(churn)

    try:
        server.serve_forever(ready=announce)
    except KeyboardInterrupt:
        server.stop()
    except OSError as exc:
        if listening:
            raise
        reason = exc.strerror or str(exc)
        raise ConfigProblem(f"--port {port}: cannot listen on {host}: {reason}") from None


# ----------------------------------------------------------------------------------- demo


@main.command()
@click.option("--channels", default="1,2", show_default=True, help="Comma-separated ids.")
@click.option("--size", default=20, show_default=True, help="Records per channel/resource.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--churn", default=2.0, show_default=True, help="Sandbox changes per second.")
@click.option("--duration", default=0.0, help="Stop after this many seconds (0: run on).")
@click.option("--json", "as_json", is_flag=True, help="Print each event's full JSON.")
def demo(
    channels: str, size: int, interval: float, churn: float, duration: float, as_json: bool
) -> None:
    """Run everything in one process, no Redis or RabbitMQ: sandbox, pipeline, tail."""
    ids = _channel_ids(channels)
    from publisher.demo import run_demo
    from publisher.logs import configure_logging

    configure_logging(None)
    logging.getLogger().setLevel(logging.WARNING)  # the demo prints its own step lines
    stop = threading.Event()
    try:
        run_demo(
            ids,
            size=size,
            interval=interval,
            churn=churn,
            duration=duration,
            as_json=as_json,
            out=click.echo,
            stop=stop,
        )
    except KeyboardInterrupt:
        stop.set()


# -------------------------------------------------------------------------------- schemas


@main.command()
@click.option(
    "--directory",
    default="schemas",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the contract files live.",
)
@click.option("--check", is_flag=True, help="Write nothing; fail if a file is stale or breaking.")
@click.option("--release", "version", metavar="VERSION", help="Then freeze them as VERSION.")
def schemas(directory: Path, check: bool, version: str | None) -> None:
    """Generate the JSON Schemas and the AsyncAPI document from the event models."""
    from publisher import contract

    written: list[str] = []
    if check:
        problems = [
            f"{path} is stale: {contract.REGENERATE_HINT}"
            for path in contract.stale_schemas(directory)
        ]
    else:
        written = contract.write_schemas(directory)
        for relative in written:
            click.echo(f"wrote {directory / relative}")
        problems = []
    problems += [f"BREAKING {problem}" for problem in contract.check_released(directory)]
    if problems:
        raise click.ClickException("\n".join(problems))
    if check or not written:
        count = len(contract.render_schemas())
        released = " and none breaks a released version" if check else ""
        click.echo(f"{directory}: all {count} generated files are current{released}")
    if version is not None:
        try:
            click.echo(f"released {contract.release_schemas(directory, version)}")
        except FileExistsError as exc:
            raise click.ClickException(str(exc)) from None
