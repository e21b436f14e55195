"""The deployment files only run commands that exist in this package."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from publisher.cli import main

ROOT = Path(__file__).resolve().parents[2]
CELERY_COMMANDS = {"worker", "beat", "flower"}


def _procfile() -> dict[str, list[str]]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = shlex.split(command)
    return entries


def _compose() -> dict[str, dict[str, object]]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services: dict[str, dict[str, object]] = document["services"]
    return services


def _check_command(argv: list[str]) -> None:
    if argv[0] == "celery":
        assert argv[1:3] == ["-A", "publisher"]
        assert argv[3] in CELERY_COMMANDS
        from publisher.celery import app

        assert app.main == "publisher"
        if argv[3] == "flower":
            pytest.importorskip("flower")
        return
    assert argv[0] == "akinon-publisher", argv
    result = CliRunner().invoke(main, [argv[1], "--help"])
    assert result.exit_code == 0, result.output


def test_procfile_runs_the_real_topology() -> None:
    entries = _procfile()
    assert {"worker", "beat", "flower"} <= set(entries)
    for argv in entries.values():
        _check_command(argv)


def test_compose_services_and_health_gates() -> None:
    services = _compose()
    assert {"redis", "rabbitmq", "sandbox", "worker", "beat", "flower"} <= set(services)
    assert "management" in str(services["rabbitmq"]["image"])
    for name in ("redis", "rabbitmq", "sandbox"):
        assert "healthcheck" in services[name], name
    for name in ("worker", "beat", "flower"):
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict)
        assert {d["condition"] for d in depends.values()} == {"service_healthy"}
        command = services[name]["command"]
        assert isinstance(command, list)
        _check_command(command)
    sandbox_command = services["sandbox"]["command"]
    assert isinstance(sandbox_command, list)
    _check_command(sandbox_command)


def test_env_example_lists_every_setting() -> None:
    from publisher.config import Settings

    text = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert name.upper() in text, name


def test_worker_processes_let_a_page_die_before_the_first_collection() -> None:
    import gc

    from celery.signals import worker_init

    import publisher.celery  # noqa: F401 - connects its signal handlers
    from publisher.service import GC_FIRST_THRESHOLD

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        worker_init.send(sender=None)  # what a starting Celery worker sends
        assert gc.get_threshold() == (GC_FIRST_THRESHOLD, 10, 10)
        gc.set_threshold(50_000, 10, 10)
        worker_init.send(sender=None)
        assert gc.get_threshold()[0] == 50_000  # a higher setting of the operator's stays
    finally:
        gc.set_threshold(*before)
