"""Generate the event contract's JSON Schemas and example events, and render documents (pure).

Each event type's schema (Draft 2020-12) comes from its pydantic model in `publisher.events`;
the example events come from the production builders, fed fixed records. `json_text` and
`yaml_text` turn documents into the deterministic text committed under `schemas/`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import orjson
import yaml

from publisher.deletes import ReloadPart
from publisher.diff import Deletion, Stored, diff_page
from publisher.events import EVENT_MODELS, RELOADED_TYPE, SCHEMA_MAJOR, EventType
from publisher.outgoing import (
    EventContext,
    OutgoingEvent,
    change_event,
    deletion_event,
    heartbeat_event,
    rejection_event,
    reload_events,
    source_uri,
)
from publisher.pages import RecordPage
from publisher.records import Resource

CONTRACT_MINOR: Final = 2
CONTRACT_VERSION: Final = f"{SCHEMA_MAJOR}.{CONTRACT_MINOR}"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_FILE: Final = "asyncapi.yaml"

JsonObject = dict[str, Any]


def schema_path(kind: EventType, major: int = SCHEMA_MAJOR) -> str:
    """Return where a type's schema lives under `schemas/`, e.g. ``stock.changed/v1.json``."""
    return f"{kind.value}/v{major}.json"


# ------------------------------------------------------------------------------ JSON Schema


def event_schema(kind: EventType) -> JsonObject:
    """Return the JSON Schema (Draft 2020-12) of one event type, from its pydantic model."""
    generated = EVENT_MODELS[kind].model_json_schema(mode="serialization")
    schema: JsonObject = {"$schema": JSON_SCHEMA_DIALECT, "$id": kind.dataschema}
    schema.update(_opened(generated))
    # The model accepts any text here (it parses every major); the schema pins its own.
    schema["properties"]["dataschema"] = {
        "const": kind.dataschema,
        "description": generated["properties"]["dataschema"].get("description", ""),
        "type": "string",
    }
    return schema


def _opened(node: Any) -> Any:
    """Drop every ``additionalProperties: false``: readers must tolerate new fields."""
    if isinstance(node, dict):
        return {
            name: _opened(value)
            for name, value in node.items()
            if not (name == "additionalProperties" and value is False)
        }
    if isinstance(node, list):
        return [_opened(item) for item in node]
    return node


# --------------------------------------------------------------------------------- examples

_EXAMPLE_SOURCE: Final = source_uri("https://omnitron.example.com", 1)
_EXAMPLE_TIME: Final = datetime(2025, 6, 27, 10, 7, tzinfo=UTC)
_STOCK: Final = dict(Resource.STOCK.spec.example)
_PRICE: Final = dict(Resource.PRICE.spec.example)


def example_events() -> dict[EventType, OutgoingEvent]:
    """Build one real event per type with the production builders, from fixed records."""
    stock_ctx = EventContext(1, Resource.STOCK, _EXAMPLE_SOURCE, _EXAMPLE_TIME)
    price_ctx = EventContext(1, Resource.PRICE, _EXAMPLE_SOURCE, _EXAMPLE_TIME)
    (created,) = diff_page(RecordPage.plain(Resource.STOCK, [_STOCK]), {}).changes
    (first,) = diff_page(RecordPage.plain(Resource.PRICE, [_PRICE]), {}).changes
    cheaper = {
        **_PRICE,
        "price": "109.90",
        "adjusted_price": "109.90",
        "retail_price": None,
        "discount_percentage": None,
    }
    stored = {first.key: Stored(first.sequence, first.after)}
    (updated,) = diff_page(RecordPage.plain(Resource.PRICE, [cheaper]), stored).changes
    bad_stock = {**_STOCK, "pk": 48214, "stock": "12 pcs"}
    (bad,) = diff_page(RecordPage.plain(Resource.STOCK, [bad_stock]), {}).rejections
    gone = datetime(2025, 6, 28, 9, 0, tzinfo=UTC)
    stock_gone = Deletion(created.key, created.sequence + 1, created.after)
    price_gone = Deletion(updated.key, updated.sequence + 1, updated.after)
    return {
        EventType.STOCK_CHANGED: change_event(stock_ctx, created),
        EventType.PRICE_CHANGED: change_event(price_ctx, updated),
        EventType.STOCK_DELETED: deletion_event(stock_ctx, stock_gone, gone),
        EventType.PRICE_DELETED: deletion_event(price_ctx, price_gone, gone),
        EventType.RECORD_REJECTED: rejection_event(stock_ctx, bad),
        EventType.HEARTBEAT: heartbeat_event(stock_ctx, _EXAMPLE_TIME, _HEARTBEAT),
        **{
            RELOADED_TYPE[ctx.resource]: reload_events(ctx, _EXAMPLE_TIME, [_RELOAD_PART])[0]
            for ctx in (stock_ctx, price_ctx)
        },
    }


_RELOAD_PART: Final = ReloadPart(None, None, [48213, 48214, 48990])
_HEARTBEAT: Final = {
    "interval_seconds": 30.0,
    "complete_scan": False,
    "watermark": "2025-06-27T10:06:56.438000+00:00",
    "last_complete_scan_at": "2025-06-27T09:55:00.000000+00:00",
    "seen": 12,
    "published": 1,
    "deleted": 0,
    "rejected": 0,
}


# ---------------------------------------------------------------------------------- render


def json_text(document: Any) -> str:
    """Serialise a JSON document deterministically: sorted keys, 2 spaces, final newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


class _Dumper(yaml.SafeDumper):
    """Write multi-line text as literal blocks, so descriptions read as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def yaml_text(document: Any) -> str:
    """Serialise a document as YAML in the order it was written (ordered for a reader)."""
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
