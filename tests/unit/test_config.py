"""Settings: one order of sources (environment, then `.env`, then defaults) and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher import config
from publisher.config import load_broker_settings, load_sandbox_settings, load_settings
from publisher.errors import ConfigError

REQUIRED = {"AKINON_URL": "https://omni.example", "AKINON_CHANNELS": "1,2", "AKINON_TOKEN": "t"}


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return `.env` in a fresh working directory, read as the processes read it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "ENV_FILE", ".env")
    for name in (*REQUIRED, "AKINON_USERNAME", "AKINON_PASSWORD", "AMQP_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("POLL_INTERVAL_SECONDS", "SANDBOX_PORT", "LOG_LEVEL", "FLOWER_BASIC_AUTH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / ".env"


def _write(path: Path, **values: str) -> None:
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))


def test_environment_wins_over_env_file_which_wins_over_defaults(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(env_file, **REQUIRED, POLL_INTERVAL_SECONDS="7", LOG_LEVEL="debug")
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "9")
    settings = load_settings()
    assert settings.poll_interval_seconds == 9  # environment
    assert settings.log_level == "DEBUG"  # .env
    assert settings.akinon_channels == [1, 2]  # .env
    assert settings.confirm_timeout_seconds == 30  # default


def test_an_empty_value_counts_as_unset(env_file: Path) -> None:
    _write(
        env_file,
        **dict(REQUIRED, AKINON_TOKEN=""),
        AKINON_USERNAME="integration",
        AKINON_PASSWORD="secret",
    )
    settings = load_settings()
    assert settings.akinon_token is None
    assert settings.akinon_username == "integration"


def test_no_env_file_means_environment_and_defaults(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="AKINON_URL is required"):
        load_settings()
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    assert load_settings().amqp_url == "amqp://guest:guest@127.0.0.1:5672//"


def test_tail_and_sandbox_read_their_part_without_akinon_settings(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(env_file, AMQP_URL="amqp://u:p@broker:5672/h1", SANDBOX_PORT="8811")
    assert load_broker_settings().amqp_url == "amqp://u:p@broker:5672/h1"
    assert load_sandbox_settings().sandbox_port == 8811
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@other//")
    assert load_broker_settings().amqp_url == "amqp://u:p@other//"
    assert load_broker_settings(amqp_url="amqps://x//").amqp_url == "amqps://x//"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("REDIS_URL", "127.0.0.1:6379", "REDIS_URL must be a URL starting with redis://"),
        ("REDIS_URL", "redis://cache/zero", "REDIS_URL must end in a database number"),
        ("AMQP_URL", "kafka://broker:9092", "AMQP_URL must be an amqp://"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL must be one of"),
        ("FLOWER_BASIC_AUTH", "admin", "FLOWER_BASIC_AUTH must look like 'user:password'"),
        ("FLOWER_PORT", "http", "FLOWER_PORT"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    _write(env_file, **REQUIRED)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_override_is_named_as_the_option_it_came_from(env_file: Path) -> None:
    with pytest.raises(ConfigError, match="--amqp-url must be an amqp://"):
        load_broker_settings(amqp_url="localhost:5672")


def test_good_urls_pass() -> None:
    for url in ("redis://:pw@cache:6379/3", "rediss://cache", "unix:///run/redis.sock?db=2"):
        assert load_settings(**_required(), redis_url=url).redis_url == url


def _required() -> dict[str, str]:
    return {"akinon_url": "https://omni.example", "akinon_channels": "1", "akinon_token": "t"}
