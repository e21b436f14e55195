"""Reduce a record to its canonical content and digest it (pure: no I/O).

A record's *canonical form* is the compact JSON array of its content fields, key first
(`CONTENT_FIELDS`), in a fixed order: decimals as their decimal strings, numbers as numbers,
nested objects with sorted keys. The state store keeps it per record; the diff compares it
byte for byte (with the key inside, one set lookup tells whether a record is unchanged); an
event's `before` is decoded from it; and its digest identifies a version of a record.

One encoder writes every form (`encode_form`), whichever way the values came:
- from a page's typed rows (`publisher.pages`, the fast path of every scan);
- from decoded JSON records (`raw_canonical`, `page_canonicals`: a page the typed rows
  cannot read), without building a model;
- from a validated record (`record_canonical`): the form that gets stored.
A record whose form equals its stored one is unchanged and is never turned into a model.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec
import orjson

from publisher.records import CONTENT_FIELDS, DECIMAL_FIELDS, RESOURCES, Record, Resource

# Nested objects with sorted keys; a value msgspec cannot write raises TypeError.
encode_form: Final[Callable[[Any], bytes]] = msgspec.json.Encoder(order="sorted").encode

# How a record's content fields are taken, tried in order: prices also come keyed by `pk`.
# The key field comes first, as it does in `record_key`: the first one a record has wins.
_GETTERS: Final = {
    resource: tuple(
        (key, operator.itemgetter(key, *CONTENT_FIELDS[resource][1:])) for key in spec.key_fields
    )
    for resource, spec in RESOURCES.items()
}


def _decimal_text(value: Any) -> Any:
    # A decimal arrives as a string ("120.00"); a number (120) is written as Decimal(120)
    # would be, so both spellings meet the model's form without building a Decimal.
    if value is None or type(value) is str:
        return value
    return str(value)


def raw_canonical(resource: Resource, raw: Mapping[str, Any]) -> bytes | None:
    """Return the canonical form of a decoded record, or None if it cannot have one.

    A record whose decimals came as JSON numbers, or that lacks a field, gets a form that
    matches no stored one and goes the slow way (validation), which still finds it
    unchanged if it is.
    """
    for _, getter in _GETTERS[resource]:
        try:
            return encode_form(getter(raw))
        except (KeyError, TypeError, RecursionError):  # RecursionError: nested too deep
            continue
    return None


def page_canonicals(resource: Resource, raws: Sequence[Any]) -> list[bytes | None]:
    """Return `raw_canonical` of every decoded record of a page, in page order.

    The whole page goes through C (`map` of the getter and of the encoder) unless one
    record is odd (not a dict, a field missing); then each record is tried on its own. A
    price page keyed by `pk` goes through C too, but only if no record has an `id`: a
    record holding both is keyed by its `id`, and a form under the other key could match
    another record's stored form and hide a change.
    """
    tried: set[str] = set()
    for key, getter in _GETTERS[resource]:
        if tried and any(type(raw) is dict and not tried.isdisjoint(raw) for raw in raws):
            break
        try:
            return list(map(encode_form, map(getter, raws)))
        except (KeyError, TypeError, RecursionError):  # RecursionError: nested too deep
            tried.add(key)
    return [raw_canonical(resource, raw) for raw in raws]


def record_canonical(record: Record) -> tuple[bytes, dict[str, Any]]:
    """Return a validated record's canonical form and its whole content (key included)."""
    resource = record.resource
    decimals = DECIMAL_FIELDS[resource]
    attributes = record.__dict__
    content = {
        name: _decimal_text(attributes[name]) if name in decimals else attributes[name]
        for name in CONTENT_FIELDS[resource]
    }
    return encode_form(list(content.values())), content


def content_of(resource: Resource, canonical: bytes) -> dict[str, Any]:
    """Turn a canonical form back into the field -> value content of an event."""
    values: Sequence[Any] = orjson.loads(canonical)
    return dict(zip(CONTENT_FIELDS[resource], values, strict=True))


def digest(data: bytes) -> str:
    """Return a short, stable hex digest (128 bits of BLAKE2b)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def raw_digest(raw: Any) -> str:
    """Digest any decoded JSON value, e.g. a record that failed validation."""
    try:
        data = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # nested deeper than orjson writes, or not JSON at all
        try:
            data = encode_form(raw)
        except (TypeError, RecursionError):
            data = repr(raw).encode() if not isinstance(raw, dict | list) else b"?"
    return digest(data)
