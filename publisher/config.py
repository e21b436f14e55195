"""Read every setting from the environment and `.env`, once, into typed objects.

This is the only module that reads the environment. Everything else takes a `Settings`
(or plain values taken from one) as an argument.

Every process (the command line, the Celery worker, beat and Flower) reads settings the
same way: a variable in the environment wins over the same line in `.env` (in the working
directory), which wins over the default; an empty value counts as unset. Commands that need
only part of the configuration (`tail`, `sandbox`) read their part the same way, so a
missing Akinon setting never stops them.

Its length (about 470 lines) is the settings table itself: every setting with its type,
bound and description in one class, which `.env.example` and the README follow. The
per-channel file is parsed in `publisher.channels`.
"""

from __future__ import annotations

import os
from ipaddress import ip_address
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from publisher.bounds import MAX_RECORD_BYTES
from publisher.channels import ChannelConfig, ChannelsFile, ChannelsFileError, parse_channels
from publisher.errors import ConfigError
from publisher.records import Endpoint, Resource
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


# Where settings files are looked for, relative to the working directory. Tests set it to
# None so that a developer's `.env` in the checkout never reaches them.
ENV_FILE: str | None = ".env"

# Events need publisher confirms, which only the AMQP transports give.
AMQP_SCHEMES: Final = ("amqp", "amqps", "pyamqp")
LOG_LEVELS: Final = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def check_akinon_url(url: str, *, allow_http: bool) -> None:
    """Refuse an Akinon base URL the token should not go to; the ValueError says why in a line.

    Credentials in the URL would silently switch to Basic auth; http:// to any host but
    loopback sends the token in cleartext, so it takes an explicit AKINON_ALLOW_HTTP.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://omnitron.example.com")
    if "@" in parts.netloc:
        raise ValueError(
            "must not hold a user or password: set AKINON_TOKEN, or "
            "AKINON_USERNAME and AKINON_PASSWORD"
        )
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise ValueError(
            f"AKINON_URL is http:// to {parts.hostname}: the token would travel in cleartext; "
            "use https://, or set AKINON_ALLOW_HTTP=true for a trusted network"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class _Settings(BaseSettings):
    """Read fields from the environment, then the `.env` that `_load` names, then defaults."""

    model_config = SettingsConfigDict(
        env_file=None, env_ignore_empty=True, extra="ignore", frozen=True
    )


class BrokerSettings(_Settings):
    """Hold what watching the broker needs (`tail`): its URL only."""

    amqp_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672//", repr=False, description="Event broker."
    )

    @field_validator("amqp_url")
    @classmethod
    def _check_amqp_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in AMQP_SCHEMES or not parts.hostname:
            raise ValueError(
                "must be an amqp:// or amqps:// URL such as amqp://user:pass@host:5672//"
            )
        return value


class SandboxSettings(_Settings):
    """Hold the local Akinon stand-in's defaults (`akinon-publisher sandbox`)."""

    sandbox_port: int = Field(8800, ge=0, le=65535, description="Sandbox HTTP port.")


class Settings(BrokerSettings):
    """Hold the whole configuration of the service; built by `load_settings`."""

    akinon_url: str = Field(description="Base URL of the Akinon (Omnitron) API.")
    akinon_token: SecretStr | None = Field(None, description="Integration user's API token.")
    akinon_username: str | None = Field(None, description="Login user, when no token is set.")
    akinon_password: SecretStr | None = Field(None, description="Login password.")
    akinon_channels: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="Comma-separated sales channel ids to poll."
    )
    akinon_channels_file: str | None = Field(
        None, description="Per-channel configuration file (TOML); see `publisher.channels`."
    )
    akinon_endpoint: Endpoint | None = Field(
        None,
        description="Endpoint read: `list` read-only, `inserts_or_updates` acknowledging.",
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
    delete_guard_share: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Hold deletes when more than this share of tracked records vanish at once.",
    )
    delete_guard_min_records: int = Field(
        10, ge=1, description="... and at least this many (smaller deletes always go out)."
    )
    akinon_page_size: int = Field(500, ge=1, le=10_000, description="Records per page.")
    akinon_drain_max_pages: int = Field(
        1000, ge=1, description="Acknowledging: most pages one step takes off the work queue."
    )
    akinon_timeout_seconds: float = Field(30.0, gt=0, description="HTTP timeout per request.")
    akinon_max_retries: int = Field(5, ge=0, le=20, description="Retries per request.")
    akinon_backoff_cap_seconds: float = Field(30.0, gt=0, description="Longest retry pause.")
    akinon_max_response_bytes: int = Field(
        64 * 2**20,
        ge=64 * 1024,
        description="Largest answer read, on the wire and once decompressed (bytes).",
    )
    akinon_request_deadline_seconds: float = Field(
        120.0,
        gt=0,
        description="Wall-clock bound on one whole request: connect, TLS, send, headers, body.",
    )
    akinon_max_in_flight: int = Field(
        16,
        ge=1,
        le=64,
        description="Most page requests a scan keeps in flight (the window adapts below it).",
    )
    akinon_max_requests_per_second: float = Field(
        0.0, ge=0, description="Ceiling on requests per second to Akinon per worker process."
    )
    akinon_allow_http: bool = Field(
        False, description="Allow an http:// AKINON_URL to a host other than loopback."
    )
    akinon_trust_env: bool = Field(
        False,
        description="Take proxies (HTTPS_PROXY...) and SSL_CERT_FILE from the environment.",
    )
    akinon_ca_bundle: str | None = Field(
        None, description="PEM file of the CA that signed Akinon's certificate (a private CA)."
    )

    # URLs may hold passwords: keep them out of repr() and so out of logs (AMQP_URL too,
    # from BrokerSettings).
    redis_url: str = Field("redis://127.0.0.1:6379/0", repr=False, description="State store.")
    confirm_timeout_seconds: float = Field(30.0, gt=0, description="Wait for broker confirms.")

    max_record_bytes: int = Field(
        MAX_RECORD_BYTES, ge=1024, description="A record with more content is rejected alone."
    )
    step_time_limit_seconds: float = Field(
        1800.0, gt=0, description="A sync step running longer is stopped (Celery soft limit)."
    )

    celery_queue: str = Field("akinon-publisher", description="Celery's task queue name.")
    poll_interval_seconds: float = Field(30.0, gt=0, description="Beat interval per step.")
    poll_interval_overrides: Annotated[dict[int, int], NoDecode] = Field(
        default_factory=dict, description="Per-channel intervals, e.g. '5:10,7:120'."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: str = Field("INFO", description="Log level.")

    beat_schedule_file: str = Field(
        ".celery/beat-schedule", description="Beat's schedule file; its directory is kept 0700."
    )
    flower_address: str = Field("127.0.0.1", description="Address Flower listens on.")
    flower_port: int = Field(5555, ge=0, le=65535, description="Port Flower listens on.")
    flower_basic_auth: SecretStr | None = Field(
        None, description="Flower's users, 'user:password[,user:password]'."
    )

    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port a worker serves Prometheus metrics on (unset: off)."
    )
    metrics_address: str = Field("127.0.0.1", description="Address the metrics server binds.")
    metrics_directory: str = Field(
        ".celery/metrics", description="Private directory of the worker processes' metric files."
    )
    health_stale_intervals: float = Field(
        3.0,
        gt=0,
        description="`status --check` fails a step with no success in this many intervals.",
    )

    _split_channels = field_validator("akinon_channels", mode="before")(_split_ints)
    _split_overrides = field_validator("poll_interval_overrides", mode="before")(_split_overrides)

    @field_validator("akinon_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        check_akinon_url(value, allow_http=True)
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_cleartext(self) -> Settings:
        check_akinon_url(self.akinon_url, allow_http=self.akinon_allow_http)
        return self

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        parse_redis_url(value)  # its ValueError says what is wrong, without the URL
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.upper()

    @field_validator("flower_basic_auth")
    @classmethod
    def _check_basic_auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not all(
            user and password
            for user, _, password in (p.partition(":") for p in value.get_secret_value().split(","))
        ):
            raise ValueError("must look like 'user:password' (comma-separated for several users)")
        return value

    _file: ChannelsFile | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_channels(self) -> Settings:
        if not self.akinon_channels and self.akinon_channels_file is None:
            raise ValueError("AKINON_CHANNELS needs at least one channel id")
        return self

    @model_validator(mode="after")
    def _check_credentials(self) -> Settings:
        if self.akinon_token is None and not (self.akinon_username and self.akinon_password):
            raise ValueError("set AKINON_TOKEN, or AKINON_USERNAME and AKINON_PASSWORD")
        return self

    @model_validator(mode="after")
    def _check_endpoint(self) -> Settings:
        endpoint = self.akinon_endpoint
        if endpoint is None:
            return self
        if self.akinon_acknowledge and not endpoint.is_work_queue:
            raise ValueError(
                f"AKINON_ENDPOINT={endpoint.value} is a whole list, which cannot be drained by "
                "acknowledging: use inserts, updates or inserts_or_updates with "
                "AKINON_ACKNOWLEDGE=true"
            )
        elif not self.akinon_acknowledge and endpoint.is_work_queue:
            raise ValueError(
                f"AKINON_ENDPOINT={endpoint.value} is a work queue another integration may "
                "drain: read-only mode reads list or detailed (or set AKINON_ACKNOWLEDGE=true)"
            )
        return self

    @property
    def endpoint(self) -> Endpoint:
        """Return the endpoint steps read (AKINON_ENDPOINT, or the mode's default)."""
        if self.akinon_endpoint is not None:
            return self.akinon_endpoint
        return Endpoint.INSERTS_OR_UPDATES if self.akinon_acknowledge else Endpoint.LIST

    def interval_for(self, channel_id: int) -> float:
        """Return the poll interval of one channel: the file's, else override, else default."""
        if self._file is not None and channel_id in self._file.channels:
            seconds = self._file.channels[channel_id].interval_seconds
            return self.poll_interval_seconds if seconds is None else seconds
        return float(self.poll_interval_overrides.get(channel_id, self.poll_interval_seconds))

    @property
    def channel_ids(self) -> list[int]:
        """Return the configured channels: the file's, else AKINON_CHANNELS."""
        if self._file is not None:
            return list(self._file.channels)
        return list(self.akinon_channels)

    def channel(self, channel_id: int) -> ChannelConfig:
        """Return how one configured channel is polled; ConfigError if it is not configured."""
        if self._file is not None:
            found = self._file.channels.get(channel_id)
            if found is None:
                raise ConfigError(f"channel {channel_id} is not in {self.akinon_channels_file}")
            return found
        if channel_id not in self.akinon_channels:
            raise ConfigError(f"channel {channel_id} is not in AKINON_CHANNELS")
        return ChannelConfig(
            channel_id,
            tuple(Resource),
            self.akinon_acknowledge,
            self.endpoint,
            self.interval_for(channel_id),
        )

    def targets(self) -> list[tuple[int, Resource]]:
        """Return every configured (channel, resource), in the configured order."""
        return [(c, r) for c in self.channel_ids for r in self.channel(c).resources]


class _ChannelsFileSetting(_Settings):
    """Hold where the per-channel file is, read before the rest (it may supply some of it)."""

    akinon_channels_file: str | None = None


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings` from the environment and `.env`; raise `ConfigError` in one line.

    With `AKINON_CHANNELS_FILE`, the file is read and checked first: its `[akinon]` table
    gives the URL and names the variables holding the credentials, and its channels are
    the ones polled.
    """
    path = (
        overrides.get("akinon_channels_file")
        or _load(_ChannelsFileSetting, {}).akinon_channels_file
    )
    if path is None:
        return _load(Settings, overrides)
    channels = read_channels_file(path)
    settings = _load(Settings, {**_from_file(channels, path), **overrides})
    settings._file = channels
    return settings


def read_channels_file(path: str) -> ChannelsFile:
    """Read and check the per-channel file; raise `ConfigError` in one line."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"AKINON_CHANNELS_FILE {path}: {exc.strerror or exc}") from None
    try:
        return parse_channels(text, path)
    except ChannelsFileError as exc:
        raise ConfigError(f"AKINON_CHANNELS_FILE {exc}") from None


def _from_file(channels: ChannelsFile, path: str) -> dict[str, Any]:
    """Return the settings the file supplies: URL, credentials named by variable."""
    # The file's channels replace AKINON_CHANNELS, so whatever reads that field sees them.
    supplied: dict[str, Any] = {
        "akinon_channels_file": path,
        "akinon_channels": list(channels.channels),
    }
    if channels.url is not None:
        supplied["akinon_url"] = channels.url
    for name, setting in (
        (channels.token_variable, "akinon_token"),
        (channels.username_variable, "akinon_username"),
        (channels.password_variable, "akinon_password"),
    ):
        if name is None:
            continue
        value = _variable(name)
        if value is None:
            raise ConfigError(
                f"AKINON_CHANNELS_FILE {path}: [akinon] names the variable {name}, which is not set"
            )
        supplied[setting] = value
    return supplied


def _variable(name: str) -> str | None:
    """Return a variable the channels file names: the environment's, else `.env`'s."""
    value = os.environ.get(name)
    if not value and ENV_FILE is not None and os.path.exists(ENV_FILE):
        value = dotenv_values(ENV_FILE).get(name)
    return value or None


def load_broker_settings(amqp_url: str | None = None) -> BrokerSettings:
    """Build `BrokerSettings` the way `load_settings` builds `Settings`.

    An `amqp_url` given here comes from `tail --amqp-url`, and an error names that option.
    """
    if amqp_url is None:
        return _load(BrokerSettings, {})
    return _load(BrokerSettings, {"amqp_url": amqp_url}, {"amqp_url": "--amqp-url"})


def load_sandbox_settings() -> SandboxSettings:
    """Build `SandboxSettings` the way `load_settings` builds `Settings`."""
    return _load(SandboxSettings, {})


SettingsT = TypeVar("SettingsT", bound="_Settings")


def _load(
    kind: type[SettingsT], overrides: dict[str, Any], names: dict[str, str] | None = None
) -> SettingsT:
    try:
        return kind(_env_file=ENV_FILE, **overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, names)) from None


def describe_validation_error(exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """Turn a settings ValidationError into one line that names each variable.

    `names` renames fields that came from somewhere else than a variable (a command-line
    option given as an override), so the message names what the user typed.
    """
    problems = []
    for error in exc.errors():
        field = "_".join(str(p) for p in error["loc"])
        name = (names or {}).get(field) or field.upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        problems.append(f"{name} {message}")
    return "invalid configuration: " + "; ".join(problems)
