"""Read the per-channel configuration file (TOML): what each channel polls, and how.

`AKINON_CHANNELS_FILE` names the file; without it every channel of `AKINON_CHANNELS` gets
the environment's settings. The file describes one Akinon installation:

    [akinon]                      # optional; the secrets stay in the environment
    url = "https://omnitron.example.com"
    token_variable = "SHOP_AKINON_TOKEN"         # or username_variable + password_variable

    [defaults]                    # optional; any channel key, for every channel
    poll_interval_seconds = 30

    [channels.5]
    resources = ["stock", "price"]
    mode = "read-only"            # or "acknowledging"
    endpoint = "list"             # list, detailed; inserts, updates, inserts_or_updates
    poll_interval_seconds = 10
    page_size = 200
    stock_lists = [3, 4]          # one query per list
    price_lists = [7]

    [channels.5.filters.price]    # passed through as query parameters
    currency_type = "try"

Everything is checked at start: an unknown key or filter, a value of the wrong type, a
list endpoint with acknowledging. A problem is one line naming the file, the channel and
the key. Parsing is pure: `parse_channels` takes the file's text.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from publisher.records import Endpoint, Resource

MODES: Final = ("read-only", "acknowledging")
CHANNEL_KEYS: Final = frozenset(
    {
        "resources",
        "mode",
        "endpoint",
        "poll_interval_seconds",
        "page_size",
        "stock_lists",
        "price_lists",
        "filters",
    }
)
AKINON_KEYS: Final = frozenset({"url", "token_variable", "username_variable", "password_variable"})
LIST_KEYS: Final = {Resource.STOCK: "stock_lists", Resource.PRICE: "price_lists"}

# Filters the seeds document for the list endpoints, by resource, that this service passes
# through (the lists themselves are `stock_lists` / `price_lists`; dates are the step's own).
_EVERY_LIST: Final = frozenset(
    {"pk__in", "product", "product__pk__in", "product__sku__in", "product__sku__exact"}
)
FILTERS: Final[dict[Resource, frozenset[str]]] = {
    Resource.STOCK: _EVERY_LIST | {"stock", "unit_type", "sold_quantity_unreported"},
    Resource.PRICE: _EVERY_LIST | {"currency_type", "tax_rate", "price", "retail_price"},
}
# Filters with a key of the merchant's own after the prefix (`product__attributes__color`).
KEYED_FILTERS: Final[dict[Resource, tuple[str, ...]]] = {
    Resource.STOCK: ("product__attributes__",),
    Resource.PRICE: ("product__attributes__", "extra_field__"),
}
_KEY: Final = re.compile(r"[A-Za-z0-9_]+")

Query = tuple[tuple[str, str], ...]


class ChannelsFileError(ValueError):
    """The channels file is wrong; the message is one line naming the place and the key."""


@dataclass(frozen=True)
class ChannelConfig:
    """How one channel is polled."""

    channel_id: int
    resources: tuple[Resource, ...] = tuple(Resource)
    acknowledge: bool = False
    endpoint: Endpoint = Endpoint.LIST
    interval_seconds: float | None = None  # None: POLL_INTERVAL_SECONDS
    page_size: int | None = None  # None: AKINON_PAGE_SIZE
    # Per resource, the queries one step reads in turn (one per stock or price list).
    queries: Mapping[Resource, tuple[Query, ...]] = field(default_factory=dict)

    def queries_for(self, resource: Resource) -> tuple[Query, ...]:
        """Return the queries a step of `resource` reads, at least the unfiltered one."""
        return self.queries.get(resource) or ((),)


@dataclass(frozen=True)
class ChannelsFile:
    """The whole file: the Akinon it talks to and its channels."""

    channels: dict[int, ChannelConfig]
    url: str | None = None
    token_variable: str | None = None
    username_variable: str | None = None
    password_variable: str | None = None


def parse_channels(text: str, name: str) -> ChannelsFile:
    """Parse and check a channels file's text; raise ChannelsFileError in one line."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChannelsFileError(f"{name}: not valid TOML: {exc}") from None
    _only(document, {"akinon", "defaults", "channels"}, name)
    akinon = _table(document.get("akinon", {}), name, "akinon")
    _only(akinon, AKINON_KEYS, f"{name}: [akinon]")
    for key, value in akinon.items():
        _expect(isinstance(value, str) and value, f"{name}: [akinon] {key}", "a non-empty string")
    if ("username_variable" in akinon) != ("password_variable" in akinon):
        raise ChannelsFileError(
            f"{name}: [akinon] username_variable and password_variable go together"
        )
    defaults = _table(document.get("defaults", {}), name, "defaults")
    _only(defaults, CHANNEL_KEYS, f"{name}: [defaults]")
    channels = _table(document.get("channels"), name, "channels")
    if not channels:
        raise ChannelsFileError(f"{name}: [channels] needs at least one channel")
    parsed = {}
    for key, body in channels.items():
        where = f"{name}: channel {key}"
        _expect(key.isdigit(), where, "a channel id (an integer)")
        merged = {**defaults, **_table(body, name, f"channels.{key}")}
        parsed[int(key)] = _channel(int(key), merged, where)
    return ChannelsFile(parsed, **akinon)


def _channel(channel_id: int, body: dict[str, Any], where: str) -> ChannelConfig:
    _only(body, CHANNEL_KEYS, where)
    mode = body.get("mode", "read-only")
    _expect(mode in MODES, f"{where}: mode", f"one of {', '.join(MODES)}")
    acknowledge = mode == "acknowledging"
    endpoint = _endpoint(body.get("endpoint"), acknowledge, where)
    resources = _resources(body.get("resources", [r.value for r in Resource]), where)
    interval = body.get("poll_interval_seconds")
    _expect(
        interval is None or (_number(interval) and interval > 0),
        f"{where}: poll_interval_seconds",
        "a positive number",
    )
    page_size = body.get("page_size")
    _expect(
        page_size is None or (_integer(page_size) and 1 <= page_size <= 10_000),
        f"{where}: page_size",
        "an integer from 1 to 10000",
    )
    filters = _table(body.get("filters", {}), where, "filters")
    _only(filters, {r.value for r in Resource}, f"{where}: filters")
    queries = {
        resource: _queries(resource, body, filters.get(resource.value, {}), acknowledge, where)
        for resource in resources
    }
    seconds = None if interval is None else float(interval)
    return ChannelConfig(channel_id, resources, acknowledge, endpoint, seconds, page_size, queries)


def _endpoint(value: Any, acknowledge: bool, where: str) -> Endpoint:
    if value is None:
        return Endpoint.INSERTS_OR_UPDATES if acknowledge else Endpoint.LIST
    names = ", ".join(e.value for e in Endpoint)
    _expect(value in {e.value for e in Endpoint}, f"{where}: endpoint", f"one of {names}")
    endpoint = Endpoint(value)
    if endpoint.is_work_queue != acknowledge:
        raise ChannelsFileError(
            f"{where}: endpoint {endpoint.value} cannot be read "
            f"{'acknowledging' if acknowledge else 'read-only'}: acknowledging drains a work "
            "queue (inserts, updates, inserts_or_updates), read-only reads list or detailed"
        )
    return endpoint


def _resources(value: Any, where: str) -> tuple[Resource, ...]:
    known = {r.value for r in Resource}
    _expect(
        isinstance(value, list) and value and all(v in known for v in value),
        f"{where}: resources",
        f"a non-empty list of {', '.join(sorted(known))}",
    )
    return tuple(Resource(v) for v in dict.fromkeys(value))


def _queries(
    resource: Resource, body: dict[str, Any], filters: Any, acknowledge: bool, where: str
) -> tuple[Query, ...]:
    key = LIST_KEYS[resource]
    lists = body.get(key, [])
    _expect(
        isinstance(lists, list) and all(_integer(v) and v > 0 for v in lists),
        f"{where}: {key}",
        "a list of list ids (integers)",
    )
    table = _table(filters, where, f"filters.{resource.value}")
    if table and acknowledge:
        raise ChannelsFileError(
            f"{where}: filters.{resource.value}: the work queue takes no filters (only "
            f"{key}); filter in read-only mode"
        )
    pairs = tuple(
        sorted(
            _filter(resource, n, v, f"{where}: filters.{resource.value}") for n, v in table.items()
        )
    )
    if not lists:
        return (pairs,)
    return tuple(((resource.spec.list_field, str(list_id)), *pairs) for list_id in lists)


def _filter(resource: Resource, name: str, value: Any, where: str) -> tuple[str, str]:
    keyed = any(
        name.startswith(prefix) and _KEY.fullmatch(name[len(prefix) :])
        for prefix in KEYED_FILTERS[resource]
    )
    if name not in FILTERS[resource] and not keyed:
        raise ChannelsFileError(
            f"{where}: unknown filter {name!r} (known: "
            f"{', '.join(sorted(FILTERS[resource]))}, "
            f"{', '.join(p + '<key>' for p in KEYED_FILTERS[resource])})"
        )
    if isinstance(value, list) and name.endswith("__in"):
        value = ",".join(str(v) for v in value)
    _expect(
        isinstance(value, str | int | float) and not isinstance(value, bool),
        f"{where}: {name}",
        "a string or a number",
    )
    return name, str(value)


def _table(value: Any, where: str, key: str) -> dict[str, Any]:
    if value is None:
        raise ChannelsFileError(f"{where}: [{key}] is missing")
    _expect(isinstance(value, dict), f"{where}: {key}", "a table")
    return dict(value)


def _only(table: Mapping[str, Any], known: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ChannelsFileError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


def _expect(ok: Any, where: str, what: str) -> None:
    if not ok:
        raise ChannelsFileError(f"{where} must be {what}")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
