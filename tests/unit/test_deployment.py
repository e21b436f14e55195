"""The deployment files run commands of this package, and compose resolves as intended.

There is no Docker engine where these tests usually run, so the compose file is resolved
here the way Compose interpolates it (`${VAR}`, `${VAR:-default}` nested, `${VAR:?error}`,
`env_file` then `environment`); where the compose plugin is installed, a test checks that
`docker compose config` agrees.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from dotenv import dotenv_values

from publisher.cli import main
from tests.readme import block_with

ROOT = Path(__file__).resolve().parents[2]
CELERY_COMMANDS = {"worker", "beat", "flower"}
TOPOLOGY = "Run the real topology"


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
    argv = [Path(argv[0]).name, *argv[1:]]
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
    assert {"worker", "beat", "flower", "sandbox"} <= set(entries)
    for argv in entries.values():
        # honcho runs them without an activated virtualenv: the commands are the .venv's.
        assert argv[0].startswith(".venv/bin/"), argv
        assert not any(a.startswith("--schedule") for a in argv)  # beat keeps it private
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
    from publisher.config import BrokerSettings, SandboxSettings, Settings

    text = (ROOT / ".env.example").read_text()
    for kind in (Settings, BrokerSettings, SandboxSettings):
        for name in kind.model_fields:
            assert name.upper() in text, name
    for line in text.splitlines():
        # Compose and python-dotenv read values alike only without quotes or trailing notes.
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z_]+=[^\s'\"#]*", line), line


# -------------------------------------------------------------- compose, resolved as Compose


class ComposeError(Exception):
    """Compose would refuse the file: a required variable has no value."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Resolve `$$` and `${...}` in one value the way Compose does."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end, depth = i + 2, 1
            while depth:
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            out.append(_expand(text[i + 2 : end - 1], env))
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _expand(inner: str, env: Mapping[str, str]) -> str:
    name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", inner)
    assert name is not None, inner
    value, rest = env.get(name.group()), inner[name.end() :]
    for op in (":-", ":?", "-", "?"):
        if rest.startswith(op):
            if value is not None and not (op.startswith(":") and value == ""):
                return value
            argument = interpolate(rest[len(op) :], env)
            if op.endswith("-"):
                return argument
            raise ComposeError(f"required variable {name.group()} is missing a value: {argument}")
    assert not rest, f"unsupported interpolation ${{{inner}}}"
    return value or ""


def _resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _resolve(value, env) for key, value in node.items()}
    return node


def resolved_compose(directory: Path) -> dict[str, dict[str, Any]]:
    """Return the services as Compose resolves them with `directory`'s .env (no shell env)."""
    env_path = directory / ".env"
    dotenv = {k: v or "" for k, v in dotenv_values(env_path).items()} if env_path.is_file() else {}
    services: dict[str, dict[str, Any]] = _resolve(_compose(), dotenv)
    for service in services.values():
        if "env_file" in service:
            assert service["env_file"] == [{"path": ".env", "required": False}]
            service["container_env"] = {**dotenv, **service.get("environment", {})}
    return services


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """Return a directory with the compose file and the .env the README's steps make."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / ".env.example", tmp_path)
    for line in block_with(TOPOLOGY, "docker compose up"):
        if not line.startswith("docker "):
            subprocess.run(["sh", "-c", line], cwd=tmp_path, check=True, timeout=30)
    return tmp_path


def _container_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    from publisher.config import load_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_compose_passes_env_file_through_with_in_network_addresses(
    compose_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = dotenv_values(compose_dir / ".env")
    password = dotenv["RABBITMQ_PASSWORD"]
    assert password
    services = resolved_compose(compose_dir)
    for name in ("sandbox", "worker", "beat", "flower"):
        env = services[name]["container_env"]
        assert env["AKINON_URL"] == "http://sandbox:8800"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["AMQP_URL"] == f"amqp://akinon:{password}@rabbitmq:5672//"
        for passed in ("AKINON_TOKEN", "AKINON_CHANNELS", "POLL_INTERVAL_SECONDS", "LOG_FORMAT"):
            assert env[passed] == dotenv[passed], passed
    worker = _container_settings(services["worker"]["container_env"], monkeypatch)
    assert worker.akinon_channels == [1, 2]
    rabbitmq = services["rabbitmq"]["environment"]
    assert rabbitmq == {"RABBITMQ_DEFAULT_USER": "akinon", "RABBITMQ_DEFAULT_PASS": password}
    assert "guest" not in json.dumps(services)


def test_compose_publishes_only_flower_beyond_this_machine_and_flower_has_users(
    compose_dir: Path,
) -> None:
    services = resolved_compose(compose_dir)
    for name in ("rabbitmq", "sandbox"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name
    flower = services["flower"]
    assert "--address=0.0.0.0" in flower["command"]
    users = flower["container_env"]["FLOWER_BASIC_AUTH"]
    assert users == dotenv_values(compose_dir / ".env")["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"admin:[0-9a-f]{24}", users)


def test_compose_injects_no_token_over_an_empty_one(
    compose_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = compose_dir / ".env"
    text = env_file.read_text().replace("AKINON_TOKEN=sandbox-token", "AKINON_TOKEN=")
    env_file.write_text(text + "AKINON_USERNAME=integration\nAKINON_PASSWORD=pw-123\n")
    services = resolved_compose(compose_dir)
    assert "sandbox-token" not in json.dumps(services)
    worker = _container_settings(services["worker"]["container_env"], monkeypatch)
    assert worker.akinon_token is None
    assert worker.akinon_username == "integration"


def test_compose_takes_container_addresses_from_their_own_variables(compose_dir: Path) -> None:
    with (compose_dir / ".env").open("a") as env_file:
        env_file.write("CONTAINER_AKINON_URL=https://omnitron.example.com\n")
        env_file.write("CONTAINER_REDIS_URL=redis://cache.internal:6379/3\n")
        env_file.write("CONTAINER_AMQP_URL=amqps://pub:pw@mq.internal:5671/prod\n")
    env = resolved_compose(compose_dir)["worker"]["container_env"]
    assert env["AKINON_URL"] == "https://omnitron.example.com"
    assert env["REDIS_URL"] == "redis://cache.internal:6379/3"
    assert env["AMQP_URL"] == "amqps://pub:pw@mq.internal:5671/prod"


def test_compose_without_env_file_names_what_is_missing(tmp_path: Path) -> None:
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    with pytest.raises(ComposeError, match="RABBITMQ_PASSWORD"):
        resolved_compose(tmp_path)


def test_compose_file_states_the_compose_version_it_needs() -> None:
    assert "Docker Compose 2.24 or later" in (ROOT / "docker-compose.yml").read_text()


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_config_agrees(compose_dir: Path) -> None:
    result = subprocess.run(
        ["docker", "compose", "config", "--format", "json"],
        cwd=compose_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    real = json.loads(result.stdout)["services"]
    ours = resolved_compose(compose_dir)
    for name in ("worker", "flower", "sandbox"):
        assert real[name]["environment"] == {
            k: v for k, v in ours[name]["container_env"].items() if v is not None
        }, name


def test_worker_processes_let_a_page_die_before_the_first_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    from celery.signals import worker_init

    import publisher.celery  # connects its signal handlers
    from publisher.config import Settings
    from publisher.service import GC_FIRST_THRESHOLD

    settings = Settings(
        _env_file=None, akinon_url="https://omni.example", akinon_channels="1", akinon_token="t"
    )
    monkeypatch.setattr(publisher.celery, "_settings", settings)  # a worker has its settings

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


def test_compose_checks_the_health_of_worker_beat_and_flower() -> None:
    services = _compose()
    for name in ("worker", "beat", "flower"):
        check = services[name].get("healthcheck")
        assert isinstance(check, dict), name
        test = check["test"]
        assert isinstance(test, list) and test[0] == "CMD", name
        assert {"interval", "timeout", "retries", "start_period"} <= set(check), name
    for name, probe in (("worker", ["health", "worker"]), ("beat", ["health", "beat"])):
        test = services[name]["healthcheck"]["test"]  # type: ignore[index]
        assert test[1:] == ["akinon-publisher", *probe], name
        result = CliRunner().invoke(main, [*probe, "--help"])
        assert result.exit_code == 0, result.output
    flower_test = " ".join(services["flower"]["healthcheck"]["test"])  # type: ignore[index]
    assert "http://127.0.0.1:5555/healthcheck" in flower_test  # Flower's own, no auth needed


def test_compose_worker_serves_metrics_on_this_machine_only() -> None:
    worker = _compose()["worker"]
    environment = worker["environment"]
    assert isinstance(environment, dict)
    assert environment["METRICS_ADDRESS"] == "0.0.0.0"  # inside its container
    assert environment["METRICS_PORT"] == "9808"
    assert worker["ports"] == ["127.0.0.1:${METRICS_PORT:-9808}:9808"]
