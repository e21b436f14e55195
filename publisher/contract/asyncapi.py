"""Describe the published events as an AsyncAPI 3.0 document (pure).

Channels, operations and messages come from the routes in `publisher.topology`; payloads
point at the JSON Schemas (`publisher.contract.schemas`) and each message carries a real
example event.
"""

from __future__ import annotations

from typing import Final

import orjson

from publisher import topology
from publisher.contract.schemas import CONTRACT_VERSION, JsonObject, example_events, schema_path
from publisher.events import EVENT_MODELS, MESSAGE_CONTENT_TYPE, EventType
from publisher.outgoing import ce_headers
from publisher.records import Resource
from publisher.topology import ROUTES, Route

# AsyncAPI 3.0 names only draft-07 among JSON Schema formats; ours are 2020-12 and say so.
PAYLOAD_FORMAT: Final = "application/schema+json;version=draft-2020-12"
AMQP_BINDING_VERSION: Final = "0.3.0"

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
