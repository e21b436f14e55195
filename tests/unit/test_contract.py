"""The published contract: generated files, schema validity, AsyncAPI routes, releases."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from publisher import topology
from publisher.broker import EXCHANGES
from publisher.contract import (
    ASYNCAPI_FILE,
    CONTRACT_VERSION,
    REGENERATE_HINT,
    asyncapi_document,
    check_released,
    event_schema,
    example_events,
    load_schemas,
    release_schemas,
    released_versions,
    render_schemas,
    schema_path,
    stale_schemas,
    write_schemas,
)
from publisher.events import CHANGED_TYPE, DELETED_TYPE, RELOADED_TYPE, SCHEMA_MAJOR, EventType
from publisher.outgoing import message_properties
from publisher.topology import ROUTES

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _validator(kind: EventType) -> Draft202012Validator:
    schema = orjson.loads((SCHEMAS / schema_path(kind)).read_bytes())
    return Draft202012Validator(schema, format_checker=FormatChecker())


def test_committed_schemas_are_what_the_models_generate() -> None:
    stale = stale_schemas(SCHEMAS)
    assert not stale, f"schemas/ is out of date ({', '.join(stale)}): {REGENERATE_HINT}"


def test_rendering_is_deterministic_and_ends_each_file_with_a_newline() -> None:
    first, second = render_schemas(), render_schemas()
    assert first == second
    assert set(first) == {schema_path(kind) for kind in EventType} | {ASYNCAPI_FILE}
    assert all(text.endswith("\n") and not text.endswith("\n\n") for text in first.values())


@pytest.mark.parametrize("kind", list(EventType))
def test_each_schema_is_valid_draft_2020_12_and_pins_type_and_major(kind: EventType) -> None:
    schema = orjson.loads((SCHEMAS / schema_path(kind)).read_bytes())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == kind.dataschema
    assert kind.dataschema.endswith(f":v{SCHEMA_MAJOR}")
    assert schema["properties"]["type"]["const"] == kind.value
    assert schema["properties"]["dataschema"]["const"] == kind.dataschema


@pytest.mark.parametrize("kind", list(EventType))
def test_the_builders_examples_validate_against_the_files(kind: EventType) -> None:
    body = orjson.loads(example_events()[kind].body)
    errors = [e.message for e in _validator(kind).iter_errors(body)]
    assert errors == []


def test_decimals_are_strings_with_a_decimal_pattern_and_may_be_null() -> None:
    validator = _validator(EventType.PRICE_CHANGED)
    body = orjson.loads(example_events()[EventType.PRICE_CHANGED].body)
    assert body["data"]["after"]["retail_price"] is None
    assert validator.is_valid(body)
    as_number = copy.deepcopy(body)
    as_number["data"]["after"]["price"] = 109.9
    assert not validator.is_valid(as_number)
    as_words = copy.deepcopy(body)
    as_words["data"]["after"]["price"] = "cheap"
    assert not validator.is_valid(as_words)


def test_schemas_are_open_to_fields_a_minor_version_adds() -> None:
    body = orjson.loads(example_events()[EventType.STOCK_CHANGED].body)
    body["traceparent"] = "00-abc-def-01"  # a CloudEvents extension attribute
    body["data"]["warehouse"] = "IST-1"
    assert _validator(EventType.STOCK_CHANGED).is_valid(body)


def test_a_different_major_or_type_does_not_validate() -> None:
    body = orjson.loads(example_events()[EventType.STOCK_CHANGED].body)
    v2 = {**body, "dataschema": body["dataschema"].replace(":v1", ":v2")}
    assert not _validator(EventType.STOCK_CHANGED).is_valid(v2)
    assert not _validator(EventType.PRICE_CHANGED).is_valid(body)


# -------------------------------------------------------------------------------- AsyncAPI


def _committed_asyncapi() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SCHEMAS / ASYNCAPI_FILE).read_text())
    return loaded


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_asyncapi_file_is_the_generated_document_and_every_ref_resolves() -> None:
    document = _committed_asyncapi()
    assert document == asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == CONTRACT_VERSION
    for ref in _refs(document):
        if ref.startswith("#/"):
            assert _resolve(document, ref) is not None, ref
        else:
            assert (SCHEMAS / ref).is_file(), ref


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.kind.value)
def test_channels_name_the_routing_keys_and_exchanges_the_publisher_uses(route: Any) -> None:
    channel = _committed_asyncapi()["channels"][route.channel]
    keys = {
        EventType.RECORD_REJECTED: topology.rejected_routing_key,
        EventType.HEARTBEAT: topology.heartbeat_routing_key,
        **{kind: topology.changed_routing_key for kind in CHANGED_TYPE.values()},
        **{kind: topology.deleted_routing_key for kind in DELETED_TYPE.values()},
        **{kind: topology.reloaded_routing_key for kind in RELOADED_TYPE.values()},
    }
    for resource in route.resources:
        address = channel["address"].format(channel_id=5, resource=resource.value)
        assert address == keys[route.kind](resource, 5)
    exchange = next(e for e in EXCHANGES if e.name == route.exchange)
    binding = channel["bindings"]["amqp"]
    assert binding["is"] == "routingKey"
    assert binding["exchange"] == {
        "name": exchange.name,
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    # Every event is kept when no queue wants it, but a heartbeat (it is only news now).
    kept = (
        {}
        if route.kind is EventType.HEARTBEAT
        else {"alternate-exchange": topology.UNROUTED_EXCHANGE}
    )
    assert channel["x-amqp-exchange-arguments"] == kept
    assert "channel_id" in channel["parameters"]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.kind.value)
def test_messages_describe_the_real_headers_and_reference_the_schema_file(route: Any) -> None:
    message = _committed_asyncapi()["components"]["messages"][route.channel]
    assert message["contentType"] == "application/cloudevents+json"
    assert message["payload"]["schema"] == {"$ref": f"./{schema_path(route.kind)}"}
    headers = message_properties(example_events()[route.kind])["application_headers"]
    validator = Draft202012Validator(message["headers"])
    assert [e.message for e in validator.iter_errors(headers)] == []
    assert validator.is_valid({**headers, "ce-type": "something.else"}) is False


# -------------------------------------------------------------------------------- releases


def test_current_schemas_break_no_released_contract() -> None:
    versions = released_versions(SCHEMAS)
    assert "1.0" in versions
    problems = check_released(SCHEMAS)
    assert problems == [], "breaking changes need a new major version:\n" + "\n".join(problems)


def test_released_copies_are_kept_for_every_event_type() -> None:
    # The latest release holds every type; earlier ones hold the types they had (1.0: no
    # deletions, no heartbeats).
    latest = released_versions(SCHEMAS)[-1]
    released = load_schemas(SCHEMAS / "released" / latest)
    assert set(released) == {schema_path(kind, 1) for kind in EventType}
    first = load_schemas(SCHEMAS / "released" / "1.0")
    assert set(first) < set(released)


def test_write_then_release_round_trip(tmp_path: Path) -> None:
    assert sorted(write_schemas(tmp_path)) == sorted(render_schemas())
    assert write_schemas(tmp_path) == []  # nothing changed, nothing written
    assert stale_schemas(tmp_path) == []
    (tmp_path / schema_path(EventType.STOCK_CHANGED)).write_text("{}\n")
    assert stale_schemas(tmp_path) == [schema_path(EventType.STOCK_CHANGED)]
    write_schemas(tmp_path)
    target = release_schemas(tmp_path, "1.0")
    assert target == tmp_path / "released" / "1.0"
    assert check_released(tmp_path) == []
    with pytest.raises(FileExistsError):
        release_schemas(tmp_path, "1.0")


def test_a_removed_field_in_the_working_copy_fails_the_release_check(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    release_schemas(tmp_path, "1.0")
    schema = event_schema(EventType.PRICE_CHANGED)
    del schema["$defs"]["PriceContent"]["properties"]["tax_rate"]
    (tmp_path / schema_path(EventType.PRICE_CHANGED)).write_bytes(orjson.dumps(schema))
    assert check_released(tmp_path) == [
        "against 1.0: price.changed/v1.json $.data.after.tax_rate: field removed",
        "against 1.0: price.changed/v1.json $.data.before.tax_rate: field removed",
    ]
