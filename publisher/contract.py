"""Publish the event contract and guard it: JSON Schemas, AsyncAPI, breaking-change rules.

    publisher.events models --render_schemas()--> schemas/<type>/v<major>.json  (Draft 2020-12)
                                                  schemas/asyncapi.yaml         (AsyncAPI 3.0)
    schemas/released/<version>/ --compare_contracts()--> findings, breaking or not

Everything here is pure except the few functions at the bottom that read and write files.

Versioning policy
-----------------
The contract version is `<major>.<minor>`. The major version is in every event: `dataschema`
ends in `:v<major>` and the schema file is `schemas/<type>/v<major>.json`.

* A **minor** change keeps every consumer working: adding an optional field, adding an event
  type, adding an enum value, loosening a constraint. Consumers must ignore fields and event
  types they do not know; the published schemas are open (no `additionalProperties: false`)
  so that a v1.0 validator accepts a v1.1 event.
* A **breaking** change is anything else: removing a field, making an optional field required
  (or a required one optional), changing a field's type, narrowing an enum, changing a
  pattern, removing an event type. It needs a new major version, published **side by side**:
  the producer sends each event twice for a deprecation period, once per major
  (`dataschema ...:v1` and `...:v2`, schemas `<type>/v1.json` and `<type>/v2.json`); each
  consumer acts only on the major it was written for (the consumer kit skips the others), and
  moves to v2 at its own pace. The v1 schema stays frozen until the last v1 consumer is gone.
* At each release the current schemas are copied to `schemas/released/<version>/`; a test
  compares the current schemas with every released copy and fails on a breaking change.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import yaml

from publisher import topology
from publisher.diff import Stored, diff_page
from publisher.events import EVENT_MODELS, MESSAGE_CONTENT_TYPE, SCHEMA_MAJOR, EventType
from publisher.outgoing import (
    EventContext,
    OutgoingEvent,
    ce_headers,
    change_event,
    rejection_event,
    source_uri,
)
from publisher.pages import RecordPage
from publisher.records import Resource
from publisher.topology import ROUTES, Route

CONTRACT_MINOR: Final = 0
CONTRACT_VERSION: Final = f"{SCHEMA_MAJOR}.{CONTRACT_MINOR}"
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# AsyncAPI 3.0 names only draft-07 among JSON Schema formats; ours are 2020-12 and say so.
PAYLOAD_FORMAT: Final = "application/schema+json;version=draft-2020-12"
ASYNCAPI_FILE: Final = "asyncapi.yaml"
RELEASED_DIR: Final = "released"
AMQP_BINDING_VERSION: Final = "0.3.0"
REGENERATE_HINT: Final = "run `akinon-publisher schemas` to regenerate"

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
    return {
        EventType.STOCK_CHANGED: change_event(stock_ctx, created),
        EventType.PRICE_CHANGED: change_event(price_ctx, updated),
        EventType.RECORD_REJECTED: rejection_event(stock_ctx, bad),
    }


# --------------------------------------------------------------------------------- AsyncAPI


_INFO_DESCRIPTION: Final = """\
Typed CloudEvents 1.0 (structured JSON) for every change of an Akinon sales channel's extra
product stocks and prices, and for every record that failed validation.

Delivery is at least once. Each message carries `message_id` = `ce-id` = the event `id`; a
re-published event has the same id. `data.sequence` counts a record's changes (per channel,
type and key): keep the last applied sequence and event id per record, drop a smaller
sequence (stale) and an equal sequence with the same id (duplicate); apply an equal sequence
with another id (it supersedes a version the producer never committed).

Bind your own durable queue to the exchanges with routing-key patterns such as
`stock.changed.*` or `*.changed.5`. Events no queue is bound for go to the alternate exchange
`akinon.unrouted` and its queue, so nothing is dropped. The Python consumer kit
(`publisher.consumer`) dead-letters failed messages to `<queue>.dead` via `akinon.dead`.

Versioning: `dataschema` ends in `:v<major>`. Minor versions only add (optional fields, event
types, enum values): ignore what you do not know. A breaking change is a new major version,
published side by side with the old one."""


def asyncapi_document() -> JsonObject:
    """Return the AsyncAPI 3.0 document of the published events."""
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Akinon publisher events",
            "version": CONTRACT_VERSION,
            "description": _INFO_DESCRIPTION,
        },
        "defaultContentType": MESSAGE_CONTENT_TYPE,
        "servers": _servers(),
        "channels": _channels(),
        "operations": _operations(),
        "components": {"messages": _messages()},
    }


def _servers() -> JsonObject:
    return {
        "rabbitmq": {
            "host": "{host}:{port}",
            "protocol": "amqp",
            "protocolVersion": "0.9.1",
            "pathname": "/",
            "description": "The RabbitMQ broker (virtual host `/`) the publisher writes to.",
            "variables": {
                "host": {"default": "localhost"},
                "port": {"default": "5672"},
            },
        }
    }


def _exchange_spec(name: str) -> topology.ExchangeSpec:
    return next(e for e in (*topology.EVENT_EXCHANGES, topology.UNROUTED) if e.name == name)


def _exchange_binding(name: str) -> JsonObject:
    exchange = _exchange_spec(name)
    return {
        "name": exchange.name,
        "type": exchange.kind,
        "durable": exchange.durable,
        "autoDelete": False,
        "vhost": "/",
    }


def _parameters(route: Route) -> JsonObject:
    parameters: JsonObject = {
        "channel_id": {
            "description": "The Akinon sales channel id.",
            "examples": ["1"],
        }
    }
    if len(route.resources) > 1:
        parameters["resource"] = {
            "description": "The kind of record that was rejected.",
            "enum": [r.value for r in Resource],
        }
    return parameters


def _channels() -> JsonObject:
    channels: JsonObject = {}
    for route in ROUTES:
        name = route.channel
        channels[name] = {
            "address": route.address,
            "title": f"{route.kind.value} on {route.exchange}",
            "description": (
                f"Routing key `{route.address}` on the durable topic exchange "
                f"`{route.exchange}`; unroutable events go to its alternate exchange "
                f"`{topology.UNROUTED_EXCHANGE}`."
            ),
            "parameters": _parameters(route),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": _exchange_binding(route.exchange),
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            "x-amqp-exchange-arguments": _exchange_spec(route.exchange).arguments(),
        }
    channels["unrouted"] = _unrouted_channel()
    return channels


def _unrouted_channel() -> JsonObject:
    return {
        "address": topology.UNROUTED_QUEUE,
        "title": "Events no queue was bound for",
        "description": (
            f"The fanout exchange `{topology.UNROUTED_EXCHANGE}` is the alternate exchange of "
            "every event exchange; its durable queue of the same name keeps what no binding "
            "matched."
        ),
        "messages": {
            route.channel: {"$ref": f"#/components/messages/{route.channel}"} for route in ROUTES
        },
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": topology.UNROUTED_QUEUE,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def _operations() -> JsonObject:
    return {
        f"publish{name[0].upper()}{name[1:]}": {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": f"Publish `{route.kind.value}` events, with publisher confirms.",
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": True,
                    "timestamp": True,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        for route in ROUTES
        for name in (route.channel,)
    }


def _headers(kind: EventType) -> JsonObject:
    return {
        "type": "object",
        "description": "AMQP application headers: the CloudEvents attributes (binary names).",
        "required": ["ce-specversion", "ce-id", "ce-type", "ce-source", "ce-subject"],
        "properties": {
            "ce-specversion": {"type": "string", "const": "1.0"},
            "ce-id": {"type": "string", "description": "The event id; also `message_id`."},
            "ce-type": {"type": "string", "const": kind.value},
            "ce-source": {"type": "string", "description": "The event `source`."},
            "ce-subject": {"type": "string", "description": "The event `subject`."},
        },
    }


def _messages() -> JsonObject:
    examples = example_events()
    messages: JsonObject = {}
    for route in ROUTES:
        model = EVENT_MODELS[route.kind]
        event = examples[route.kind]
        name = route.channel
        messages[name] = {
            "name": route.kind.value,
            "title": route.kind.value,
            "summary": (model.__doc__ or "").strip(),
            "contentType": MESSAGE_CONTENT_TYPE,
            "headers": _headers(route.kind),
            "payload": {
                "schemaFormat": PAYLOAD_FORMAT,
                "schema": {"$ref": f"./{schema_path(route.kind)}"},
            },
            "bindings": {
                "amqp": {
                    "contentEncoding": "utf-8",
                    "messageType": route.kind.value,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            "examples": [
                {
                    "name": name,
                    "headers": ce_headers(event),
                    "payload": orjson.loads(event.body),
                }
            ],
        }
    return messages


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


def render_schemas() -> dict[str, str]:
    """Return every generated contract file: relative path -> text."""
    files = {schema_path(kind): json_text(event_schema(kind)) for kind in EventType}
    files[ASYNCAPI_FILE] = yaml_text(asyncapi_document())
    return files


# ------------------------------------------------------------------------ breaking changes


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference between two versions of a schema, and whether it breaks consumers."""

    where: str
    what: str
    breaking: bool

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


_CONSTRAINTS: Final = ("pattern", "format", "minimum", "maximum", "minLength", "maxLength")


def breaking_changes(old: JsonObject, new: JsonObject) -> list[str]:
    """List what in `new` breaks a consumer of `old` (empty: `new` is a minor update)."""
    return [str(f) for f in compare_schemas(old, new) if f.breaking]


def compare_schemas(old: JsonObject, new: JsonObject) -> list[Finding]:
    """Compare two JSON Schemas of one event type; report every difference that matters."""
    return list(_SchemaPair(old, new).compare(old, new, "$"))


def compare_contracts(
    old: Mapping[str, JsonObject], new: Mapping[str, JsonObject]
) -> list[Finding]:
    """Compare two sets of schema files (path -> schema): removed, added and changed types."""
    findings = [Finding(path, "event type removed", True) for path in sorted(old.keys() - new)]
    findings += [Finding(path, "event type added", False) for path in sorted(new.keys() - old)]
    for path in sorted(old.keys() & new.keys()):
        findings += [
            Finding(f"{path} {f.where}", f.what, f.breaking)
            for f in compare_schemas(old[path], new[path])
        ]
    return findings


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class _SchemaPair:
    """Walk an old and a new schema side by side, each resolving its own local `$ref`s."""

    def __init__(self, old_root: JsonObject, new_root: JsonObject) -> None:
        self._roots = (old_root, new_root)

    def compare(self, old: Any, new: Any, where: str) -> Iterator[Finding]:
        """Compare one node of each schema: the JSON types they allow, then each type."""
        old_kinds = _variants(_resolve(self._roots[0], old), self._roots[0])
        new_kinds = _variants(_resolve(self._roots[1], new), self._roots[1])
        if "any" in old_kinds or "any" in new_kinds:
            if old_kinds.keys() != new_kinds.keys():
                was, now = "/".join(sorted(old_kinds)), "/".join(sorted(new_kinds))
                yield Finding(where, f"type changed: {was} -> {now}", True)
            return  # nothing more to compare against "any value"
        for kind in sorted(old_kinds.keys() - new_kinds.keys()):
            yield Finding(where, f"type changed: {kind} no longer allowed", True)
        for kind in sorted(new_kinds.keys() - old_kinds.keys()):
            yield Finding(where, f"type changed: {kind} now allowed", True)
        for kind in sorted(old_kinds.keys() & new_kinds.keys()):
            yield from self._same_type(old_kinds[kind], new_kinds[kind], where)

    def _same_type(self, old: JsonObject, new: JsonObject, where: str) -> Iterator[Finding]:
        yield from _compare_values(old, new, where)
        yield from _compare_constraints(old, new, where)
        if "items" in old or "items" in new:
            yield from self.compare(old.get("items", {}), new.get("items", {}), f"{where}[]")
        if "properties" in old or "properties" in new:
            yield from self._compare_object(old, new, where)

    def _compare_object(self, old: JsonObject, new: JsonObject, where: str) -> Iterator[Finding]:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name in sorted(old_props.keys() - new_props.keys()):
            yield Finding(f"{where}.{name}", "field removed", True)
        for name in sorted(new_props.keys() - old_props.keys()):
            required = name in new_required
            what = "required field added" if required else "optional field added"
            yield Finding(f"{where}.{name}", what, required)
        for name in sorted(old_props.keys() & new_props.keys()):
            path = f"{where}.{name}"
            yield from _compare_required(name in old_required, name in new_required, path)
            yield from self.compare(old_props[name], new_props[name], path)
        if (
            old.get("additionalProperties") is not False
            and new.get("additionalProperties") is False
        ):
            yield Finding(where, "object closed to new fields", True)


def _compare_required(was: bool, now: bool, where: str) -> Iterator[Finding]:
    if now and not was:
        yield Finding(where, "optional field made required", True)
    elif was and not now:
        yield Finding(where, "required field made optional: it may now be missing", True)


def _compare_values(old: JsonObject, new: JsonObject, where: str) -> Iterator[Finding]:
    old_values, new_values = _allowed_values(old), _allowed_values(new)
    if new_values is None:
        if old_values is not None:
            yield Finding(where, "enum lifted: any value allowed", False)
        return
    if old_values is None:
        yield Finding(where, "enum narrowed: only listed values allowed", True)
        return
    removed, added = _minus(old_values, new_values), _minus(new_values, old_values)
    if removed:
        yield Finding(where, f"enum narrowed: {removed} removed", True)
    if added:
        yield Finding(where, f"enum widened: {added} added", False)


def _minus(values: list[Any], others: list[Any]) -> list[Any]:
    return [value for value in values if value not in others]


def _compare_constraints(old: JsonObject, new: JsonObject, where: str) -> Iterator[Finding]:
    for name in _CONSTRAINTS:
        if old.get(name) != new.get(name):
            yield Finding(where, f"{name} changed: {old.get(name)!r} -> {new.get(name)!r}", True)


def _allowed_values(node: JsonObject) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    values = node.get("enum")
    return list(values) if values is not None else None


def _resolve(root: JsonObject, node: Any) -> JsonObject:
    """Follow local `$ref`s (``#/...``) until a node without one."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#"):
            raise ValueError(f"cannot follow $ref {ref!r}")
        seen.add(ref)
        node = root
        for part in filter(None, ref[1:].split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node if isinstance(node, dict) else {}


def _variants(node: JsonObject, root: JsonObject) -> dict[str, JsonObject]:
    """Split a node into the JSON types it allows: type name -> the schema for that type."""
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        merged: dict[str, JsonObject] = {}
        for alternative in alternatives:
            merged.update(_variants(_resolve(root, alternative), root))
        return merged
    declared = node.get("type")
    if declared is None and "const" in node:
        declared = _json_type(node["const"])
    if declared is None and "enum" in node:
        declared = sorted({_json_type(value) for value in node["enum"]})
    if declared is None:
        return {"any": node}
    names = [declared] if isinstance(declared, str) else list(declared)
    return {name: node for name in names}


# ----------------------------------------------------------------------------- file edges


def write_schemas(directory: Path) -> list[str]:
    """Write every generated file under `directory`; return the paths whose text changed."""
    changed = []
    for relative, text in render_schemas().items():
        target = directory / relative
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(relative)
    return changed


def stale_schemas(directory: Path) -> list[str]:
    """Return the generated files that are missing under `directory` or differ from it."""
    return [
        relative
        for relative, text in render_schemas().items()
        if not (directory / relative).is_file()
        or (directory / relative).read_text(encoding="utf-8") != text
    ]


def load_schemas(directory: Path) -> dict[str, JsonObject]:
    """Read the event schemas (``<type>/v<major>.json``) found directly under `directory`."""
    return {
        path.relative_to(directory).as_posix(): orjson.loads(path.read_bytes())
        for path in sorted(directory.glob("*/v*.json"))
        if path.parent.name != RELEASED_DIR
    }


def released_versions(directory: Path) -> list[str]:
    """Return the versions kept under ``released/``, oldest first."""
    root = directory / RELEASED_DIR
    found = [path.name for path in root.iterdir() if path.is_dir()] if root.is_dir() else []
    return sorted(found, key=lambda v: tuple(int(part) for part in v.split(".")))


def check_released(directory: Path) -> list[str]:
    """List every breaking difference between the current schemas and each released copy."""
    current = load_schemas(directory)
    problems = []
    for version in released_versions(directory):
        released = load_schemas(directory / RELEASED_DIR / version)
        problems += [
            f"against {version}: {finding}"
            for finding in compare_contracts(released, current)
            if finding.breaking
        ]
    return problems


def release_schemas(directory: Path, version: str = CONTRACT_VERSION) -> Path:
    """Copy the current event schemas to ``released/<version>/``; refuse to overwrite."""
    target = directory / RELEASED_DIR / version
    if target.exists():
        raise FileExistsError(f"{target} exists: a released contract is never rewritten")
    for relative in load_schemas(directory):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(directory / relative, target / relative)
    return target
