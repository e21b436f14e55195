"""The layout holds: the pure core loads no I/O library, every resource is a row everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from publisher.events import CHANGED_TYPE, EVENT_MODELS
from publisher.pages import ROWS
from publisher.records import CONTENT_FIELDS, RESOURCES, Resource
from publisher.topology import EVENT_EXCHANGES, ROUTES, exchange_for

IO_LIBRARIES = ("kombu", "amqp", "redis", "httpx", "httpcore", "lz4", "celery", "click")
PURE = (
    "publisher.errors",
    "publisher.backoff",
    "publisher.records",
    "publisher.pages",
    "publisher.fingerprint",
    "publisher.diff",
    "publisher.events",
    "publisher.outgoing",
    "publisher.topology",
    "publisher.ports",
    "publisher.framing",
    "publisher.pipeline",
    "publisher.acks",
    "publisher.channels",
)


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_and_the_pipeline_load_no_io_library(module: str) -> None:
    probe = (
        f"import sys, {module}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(IO_LIBRARIES)!r}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]", f"importing {module} loads {found}"


@pytest.mark.parametrize("resource", list(Resource))
def test_every_resource_is_a_row_of_every_table(resource: Resource) -> None:
    spec = RESOURCES[resource]
    assert spec.resource is resource
    assert spec.content_fields[0] == spec.key_field == resource.key_field
    assert CONTENT_FIELDS[resource] == spec.content_fields
    assert ROWS[resource].__struct_fields__[: len(spec.content_fields)] == spec.content_fields
    assert resource in CHANGED_TYPE and CHANGED_TYPE[resource] in EVENT_MODELS
    assert exchange_for(resource) in {e.name for e in EVENT_EXCHANGES}
    assert any(resource in route.resources for route in ROUTES)
    # The example is a whole record: the model reads it, and its fields are in the model's order.
    record = spec.model.model_validate(spec.example)
    assert record.key == spec.example[spec.key_field]
    assert [f for f in spec.example if f in spec.content_fields] == list(spec.content_fields)
