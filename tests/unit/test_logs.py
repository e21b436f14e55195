from __future__ import annotations

import io
import logging

import orjson
import pytest

from publisher.config import load_settings
from publisher.logs import configure_logging

TOKEN = "tok-7f3a9c1e"
PASSWORD = "pw-very-secret"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AKINON_URL", "https://omni.example")
    monkeypatch.setenv("AKINON_CHANNELS", "1")
    monkeypatch.setenv("AKINON_TOKEN", TOKEN)
    monkeypatch.setenv("AKINON_USERNAME", "integration")
    monkeypatch.setenv("AKINON_PASSWORD", PASSWORD)
    monkeypatch.setenv("AMQP_URL", "amqp://user:amqp-pass-123@broker//")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-pass-456@cache:6379/0")
    return load_settings()


def _log_everything(stream: io.StringIO) -> str:
    log = logging.getLogger("publisher.test")
    log.info("token %s password %s", TOKEN, PASSWORD)
    log.warning("connecting to amqp://user:amqp-pass-123@broker// and redis-pass-456")
    try:
        raise RuntimeError(f"Authorization: Token {TOKEN}")
    except RuntimeError:
        log.exception("failed")
    return stream.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_never_reach_the_log(settings, log_format: str) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    handler = configure_logging(
        settings.model_copy(update={"log_format": log_format}), stream=stream
    )
    try:
        output = _log_everything(stream)
    finally:
        logging.getLogger().removeHandler(handler)
    for secret in (TOKEN, PASSWORD, "amqp-pass-123", "redis-pass-456"):
        assert secret not in output
    assert output.count("***") >= 5
    if log_format == "json":
        lines = [orjson.loads(line) for line in output.splitlines()]
        assert lines[0]["level"] == "info"
        assert "exc" in lines[-1]


def test_settings_repr_hides_secrets(settings) -> None:  # type: ignore[no-untyped-def]
    text = repr(settings) + str(settings)
    for secret in (TOKEN, PASSWORD, "amqp-pass-123", "redis-pass-456"):
        assert secret not in text
