"""Health probes for the long-running processes: `health beat`, `health worker`."""

from __future__ import annotations

import socket

import click

from publisher.cli.base import _settings, main


@main.group()
def health() -> None:
    """Probes for beat and the worker: exit status 0 when healthy, 1 when not.

    For the steps themselves (failed or stale), use `akinon-publisher status --check`.
    """


@health.command("beat")
def beat() -> None:
    """Fail unless beat touched its heartbeat file (next to BEAT_SCHEDULE_FILE) lately."""
    settings = _settings()
    from publisher.health import beat_problem

    problem = beat_problem(settings.beat_schedule_file)
    if problem:
        click.echo(f"UNHEALTHY beat: {problem}")
        raise SystemExit(1)
    click.echo("beat: ticking")


@health.command("worker")
@click.option("--name", help="Worker name (default: any worker on this host, *@<hostname>).")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for an answer.")
def worker(name: str | None, timeout: float) -> None:
    """Fail unless a worker on this host answers a ping through the broker."""
    _settings()  # bad settings stop here with one line, as everywhere
    from publisher.celery import app

    suffix = f"@{socket.gethostname()}"
    replies = app.control.ping(destination=[name] if name else None, timeout=timeout)
    names = [worker for reply in replies for worker in reply]
    found = [n for n in names if n == name] if name else [n for n in names if n.endswith(suffix)]
    if not found:
        wanted = name or f"*{suffix}"
        click.echo(f"UNHEALTHY worker: no answer from {wanted} within {timeout:g}s")
        raise SystemExit(1)
    click.echo(f"worker: {', '.join(sorted(found))} answered")
