"""The command group and what every command shares: settings, one-line errors, output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
import orjson

if TYPE_CHECKING:
    from publisher.config import Settings

# Resource values, written out so that `--help` need not import the record models (a test
# keeps them equal to `Resource`).
RESOURCE_NAMES = ("stock", "price")
RESOURCES = click.Choice([*RESOURCE_NAMES, "all"])


class ConfigProblem(click.ClickException):
    """Stop on a bad setting or option: one line on stderr, exit status 2."""

    exit_code = 2


def load() -> Settings:
    """Return the settings, or stop with one line and exit status 2."""
    return _settings()


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
