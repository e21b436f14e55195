"""Read every setting from the environment, once, into one typed object.

This is the only module that reads the environment. Everything else takes a `Settings`
(or plain values taken from one) as an argument.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from publisher.errors import ConfigError
from publisher.records import Endpoint
from publisher.redis_client import parse as parse_redis_url


def _split_ints(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise ValueError(f"must be comma-separated integers, got {value!r}")
        return [int(p) for p in parts]
    return value


def _split_overrides(value: Any) -> Any:
    if isinstance(value, str):
        pairs = [p.strip() for p in value.split(",") if p.strip()]
        result: dict[int, int] = {}
        for pair in pairs:
            channel, _, seconds = pair.partition(":")
            if not (channel.strip().isdigit() and seconds.strip().isdigit()):
                raise ValueError(f"must look like '5:10,7:120', got {value!r}")
            result[int(channel)] = int(seconds)
        return result
    return value


class Settings(BaseSettings):
    """Hold the whole configuration of the service; built by `load_settings`."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    akinon_url: str = Field(description="Base URL of the Akinon (Omnitron) API.")
    akinon_token: SecretStr | None = Field(None, description="Integration user's API token.")
    akinon_username: str | None = Field(None, description="Login user, when no token is set.")
    akinon_password: SecretStr | None = Field(None, description="Login password.")
    akinon_channels: Annotated[list[int], NoDecode] = Field(
        description="Comma-separated sales channel ids to poll."
    )
    akinon_endpoint: Endpoint = Field(
        Endpoint.INSERTS_OR_UPDATES, description="Change endpoint to poll."
    )
    akinon_acknowledge: bool = Field(
        False, description="Acknowledge published records through batch requests."
    )
    akinon_incremental: bool = Field(
        True, description="Poll only records modified since the last step (not when acknowledging)."
    )
    incremental_lookback_seconds: float = Field(
        120.0, ge=0, description="How far before the watermark incremental steps look."
    )
    full_scan_interval_seconds: float = Field(
        900.0, gt=0, description="Scan every record at least this often."
    )
    akinon_page_size: int = Field(500, ge=1, le=10_000, description="Records per page.")
    akinon_timeout_seconds: float = Field(30.0, gt=0, description="HTTP timeout per request.")
    akinon_max_retries: int = Field(5, ge=0, le=20, description="Retries per request.")
    akinon_backoff_cap_seconds: float = Field(30.0, gt=0, description="Longest retry pause.")

    # URLs may hold passwords: keep them out of repr() and so out of logs.
    redis_url: str = Field("redis://127.0.0.1:6379/0", repr=False, description="State store.")
    amqp_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672//", repr=False, description="Event broker."
    )
    confirm_timeout_seconds: float = Field(30.0, gt=0, description="Wait for broker confirms.")

    celery_queue: str = Field("akinon-publisher", description="Celery's task queue name.")
    poll_interval_seconds: float = Field(30.0, gt=0, description="Beat interval per step.")
    poll_interval_overrides: Annotated[dict[int, int], NoDecode] = Field(
        default_factory=dict, description="Per-channel intervals, e.g. '5:10,7:120'."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: str = Field("INFO", description="Log level.")

    _split_channels = field_validator("akinon_channels", mode="before")(_split_ints)
    _split_overrides = field_validator("poll_interval_overrides", mode="before")(_split_overrides)

    @field_validator("akinon_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://omnitron.example.com")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        parse_redis_url(value)  # its ValueError says what is wrong, without the URL
        return value

    @field_validator("akinon_channels")
    @classmethod
    def _check_channels(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("needs at least one channel id")
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        if self.akinon_token is None and not (self.akinon_username and self.akinon_password):
            raise ValueError("set AKINON_TOKEN, or AKINON_USERNAME and AKINON_PASSWORD")
        return self

    def interval_for(self, channel_id: int) -> float:
        """Return the poll interval of one channel, override first."""
        return float(self.poll_interval_overrides.get(channel_id, self.poll_interval_seconds))


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings` from the environment; raise `ConfigError` with a one-line message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """Turn a settings ValidationError into one line that names each variable."""
    problems = []
    for error in exc.errors():
        name = "_".join(str(p) for p in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        problems.append(f"{name} {message}")
    return "invalid configuration: " + "; ".join(problems)
