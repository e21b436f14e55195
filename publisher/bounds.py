"""Bound what one record may be: its nesting, its size, its dates (pure: no I/O).

Akinon's merchants edit `extra_field` freely, and a server can send anything: a record
nested hundreds of levels deep, a record of megabytes, a `modified_date` in 2099. Each is
a rejection of that record alone, with a reason; none may crash a step, swell an event or
move the watermark. A rejection's `raw` is cut down the same way before it is published.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

# Levels of objects and arrays a field value may nest (a record's own level not counted).
# orjson writes at most 254 levels, and an event wraps a record in three more.
MAX_NESTING: Final = 32
# The default cap on a record's content (its canonical form) in bytes: `MAX_RECORD_BYTES`.
MAX_RECORD_BYTES: Final = 256 * 1024
# How far past the server's clock a `modified_date` may be and still count.
CLOCK_SKEW: Final = timedelta(minutes=5)
# What replaces a value of a rejected record that is nested too deep to be reported.
OMITTED: Final = f"<omitted: nested more than {MAX_NESTING} levels deep>"


def nested_deeper(value: Any, limit: int = MAX_NESTING) -> bool:
    """Say whether `value` nests objects or arrays more than `limit` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            children: Any = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def shallow(value: Any) -> Any:
    """Check (as a model validator) that a field value nests at most `MAX_NESTING` levels."""
    if nested_deeper(value, MAX_NESTING):
        raise ValueError(f"nested more than {MAX_NESTING} levels deep")
    return value


def reportable(raw: Any, max_bytes: int = MAX_RECORD_BYTES) -> Any:
    """Return a rejected record as it can be published: too deep or too big, cut down.

    Values nested too deep become a marker; a record still bigger than `max_bytes` as JSON
    becomes the head of its JSON text (a string), so a rejection is never bigger than the
    records that pass.
    """
    if type(raw) is dict and nested_deeper(raw, MAX_NESTING + 1):
        raw = {k: OMITTED if nested_deeper(v, MAX_NESTING) else v for k, v in raw.items()}
    elif nested_deeper(raw, MAX_NESTING + 1):
        return OMITTED
    try:
        text = orjson.dumps(raw)
    except TypeError:
        return OMITTED
    if len(text) <= max_bytes:
        return raw
    head = text[: max(max_bytes - 64, 0)].decode("utf-8", errors="ignore")
    return f"<cut to its first {len(head)} characters of {len(text)} bytes> {head}"


def latest_date(served_at: datetime | None, now: datetime) -> datetime:
    """Return the latest `modified_date` a page may hold: the server's clock plus the skew.

    `served_at` is the server's own clock (its `Date` header) when the client knows it,
    else this process's clock stands in for it.
    """
    return (served_at or now) + CLOCK_SKEW


def date_problem(text: Any, latest: datetime) -> str | None:
    """Return why a `modified_date` cannot count (None if it can): not a date, or too late."""
    if type(text) is not str:
        return "not a date"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return "not a date"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > latest:
        return f"later than the server's clock allows ({latest.isoformat()})"
    return None
