"""Reduce a record to its canonical content and digest it (pure: no I/O).

The canonical form is the JSON array of a record's content fields (`CONTENT_FIELDS`) in
their fixed order, decimals as their decimal strings, nested objects with sorted keys.
It is what the state store keeps per record, so the diff compares bytes, an event's
`before` is decoded from it, and its digest identifies a version of a record.

Two ways in, one result for a valid record:
- `raw_canonical` works on the decoded JSON dict, without building a model. It is the fast
  path: a record whose raw canonical form equals the stored one is unchanged and is never
  turned into a model.
- `record_canonical` works on a validated record; this is the form that gets stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from publisher.records import CONTENT_FIELDS, DECIMAL_FIELDS, Record, Resource, StockRecord

_DUMP_OPTIONS = orjson.OPT_SORT_KEYS


def _decimal_text(value: Any) -> Any:
    # A decimal arrives as a string ("120.00"); a number (120) is written as Decimal(120)
    # would be, so both spellings meet the model's form without building a Decimal.
    if value is None or type(value) is str:
        return value
    return str(value)


def raw_canonical(resource: Resource, raw: Mapping[str, Any]) -> bytes | None:
    """Return the canonical bytes of a decoded record, or None if it cannot have one."""
    decimals = DECIMAL_FIELDS[resource]
    get = raw.get
    values = [
        _decimal_text(get(name)) if name in decimals else get(name)
        for name in CONTENT_FIELDS[resource]
    ]
    if resource is Resource.PRICE and values[0] is None:
        values[0] = get("pk")
    try:
        return orjson.dumps(values, option=_DUMP_OPTIONS)
    except TypeError:
        return None


def record_content(record: Record) -> tuple[bytes, dict[str, Any]]:
    """Return a validated record's canonical bytes (the stored form) and its content."""
    resource = Resource.STOCK if isinstance(record, StockRecord) else Resource.PRICE
    decimals = DECIMAL_FIELDS[resource]
    attributes = record.__dict__
    content = {
        name: _decimal_text(attributes[name]) if name in decimals else attributes[name]
        for name in CONTENT_FIELDS[resource]
    }
    return orjson.dumps(list(content.values()), option=_DUMP_OPTIONS), content


def record_canonical(record: Record) -> bytes:
    """Return the canonical bytes of a validated record: the form that is stored."""
    return record_content(record)[0]


def decode_content(resource: Resource, canonical: bytes) -> dict[str, Any]:
    """Turn canonical bytes back into a field -> value mapping."""
    values: Sequence[Any] = orjson.loads(canonical)
    return dict(zip(CONTENT_FIELDS[resource], values, strict=True))


def digest(data: bytes) -> str:
    """Return a short, stable hex digest (128 bits of BLAKE2b)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def raw_digest(raw: Any) -> str:
    """Digest any decoded JSON value, e.g. a record that failed validation."""
    try:
        data = orjson.dumps(raw, option=_DUMP_OPTIONS)
    except TypeError:
        data = repr(raw).encode()
    return digest(data)
