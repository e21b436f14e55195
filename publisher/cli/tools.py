"""Commands around the pipeline: tail, sandbox, demo, schemas."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import click

from publisher.cli.base import ConfigProblem, _channel_ids, main

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
    from publisher.errors import BrokerConfigError, PublisherError
    from publisher.tail import binding_line, event_line, json_line
    from publisher.tail import tail as follow

    def show(body: bytes) -> None:
        click.echo(json_line(body) if as_json else event_line(body))

    def announce() -> None:
        click.echo(binding_line(url, pattern), err=True)

    try:
        follow(url, pattern, show, on_ready=announce)
    except KeyboardInterrupt:
        return
    except ValueError as exc:  # a pattern no published routing key can match
        raise ConfigProblem(f"--pattern: {exc}") from None
    except BrokerConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    except (OSError, PublisherError) as exc:
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
