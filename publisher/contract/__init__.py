"""Publish the event contract and guard it: JSON Schemas, AsyncAPI, breaking-change rules.

    publisher.events models --render_schemas()--> schemas/<type>/v<major>.json  (Draft 2020-12)
                                                  schemas/asyncapi.yaml         (AsyncAPI 3.0)
    schemas/released/<version>/ --compare_contracts()--> findings, breaking or not

Modules, each pure but the last: `schemas` (JSON Schemas, example events, JSON and YAML
text), `asyncapi` (the AsyncAPI document), `compat` (the breaking-change rules below) and
`files` (render, write, check and release the files under `schemas/`).

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

from publisher.contract.asyncapi import asyncapi_document
from publisher.contract.compat import (
    Finding,
    breaking_changes,
    compare_contracts,
    compare_schemas,
)
from publisher.contract.files import (
    REGENERATE_HINT,
    RELEASED_DIR,
    check_released,
    load_schemas,
    release_schemas,
    released_versions,
    render_schemas,
    stale_schemas,
    write_schemas,
)
from publisher.contract.schemas import (
    ASYNCAPI_FILE,
    CONTRACT_MINOR,
    CONTRACT_VERSION,
    JSON_SCHEMA_DIALECT,
    event_schema,
    example_events,
    json_text,
    schema_path,
    yaml_text,
)

__all__ = [
    "ASYNCAPI_FILE",
    "CONTRACT_MINOR",
    "CONTRACT_VERSION",
    "JSON_SCHEMA_DIALECT",
    "REGENERATE_HINT",
    "RELEASED_DIR",
    "Finding",
    "asyncapi_document",
    "breaking_changes",
    "check_released",
    "compare_contracts",
    "compare_schemas",
    "event_schema",
    "example_events",
    "json_text",
    "load_schemas",
    "release_schemas",
    "released_versions",
    "render_schemas",
    "schema_path",
    "stale_schemas",
    "write_schemas",
    "yaml_text",
]
