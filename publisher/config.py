"""Read every setting from the environment and `.env`, once, into typed objects.

This is the only module that reads the environment. Everything else takes a `Settings`
(or plain values taken from one) as an argument.

Every process (the command line, the Celery worker, beat and Flower) reads settings the
same way: a variable in the environment wins over the same line in `.env` (in the working
directory), which wins over the default; an empty value counts as unset. Commands that need
only part of the configuration (`tail`, `sandbox`) read their part the same way, so a
missing Akinon setting never stops them.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Annotated, Any, Final, Literal, TypeVar
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
        description="Comma-separated sales channel ids to poll."
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
    akinon_timeout_seconds: float = Field(30.0, gt=0, description="HTTP timeout per request.")
    akinon_max_retries: int = Field(5, ge=0, le=20, description="Retries per request.")
    akinon_backoff_cap_seconds: float = Field(30.0, gt=0, description="Longest retry pause.")
    akinon_max_response_bytes: int = Field(
        64 * 2**20,
        ge=64 * 1024,
        description="Largest answer read, on the wire and once decompressed (bytes).",
    )
    akinon_request_deadline_seconds: float = Field(
        120.0, gt=0, description="Wall-clock bound on one request, its whole body included."
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
        """Return the poll interval of one channel, override first."""
        return float(self.poll_interval_overrides.get(channel_id, self.poll_interval_seconds))


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings` from the environment and `.env`; raise `ConfigError` in one line."""
    return _load(Settings, overrides)


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
