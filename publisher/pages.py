"""Decode a page body into its records, with the diff's view of them made in one pass (pure).

    page body  ->  RecordPage(keys, forms, newest_modified) + records decoded on demand

A page is decoded as orjson would decode it, except that the record array becomes a
`RecordPage`: the one type of page the client yields and the core works on. Built the fast
way (`RecordPage.typed`), typed structs (`msgspec`, derived from the record models) read
only the fields the models read (the key, the content fields, the two dates) and skip the
rest without building a dict; each record's canonical form is written from its content
fields. A record whose form is
not a stored one is validated from its row (`fields`), so a steady-state poll builds no
record dict at all; a record is decoded in full only when asked for (`page[i]`): to report
it as rejected, to acknowledge it.

The typed pass takes a page only if *every* record fits it: an integer key within 64 bits,
every content field present, the decimals as strings (or null where they may be), a
`modified_date` string, a `created_date` string or null (or none). Otherwise nothing
changes: the page is decoded by orjson into plain dicts and the same type is built from
them (`RecordPage.plain`, with `publisher.fingerprint.page_canonicals`), so an odd record
costs speed, never correctness.

Why the two ways agree: for the values the typed pass accepts, msgspec decodes what orjson
decodes (a repeated field counts last, as in orjson), and a form that equals a stored one
byte for byte holds the same values. Where msgspec writes a value differently (a float in
`extra_field`, a huge integer there), the form matches no stored one and the record is
validated, which finds it unchanged if it is.

Validating a row gives what validating the dict gives: the same fields with the same values
(the model ignores every other field). The one value the two decoders read apart, an
integer past 64 bits nested in `extra_field` (msgspec exactly, orjson as a float), is why
a record with a non-empty `extra_field` is validated from its dict instead.

Where they differ: the typed pass does not look inside the fields it skips, so bytes there
that are not valid JSON text (not UTF-8, a raw control character) do not refuse the whole
page, as orjson does. Such a record raises `AkinonBadResponse`, naming it, only when it
has to be decoded in full (it is rejected, or acknowledged); that fails the step, as the
whole page's bad body always did. Otherwise, changed or not, it passes.

Its length (a little over 400 lines) is the one page type and both ways of building it,
kept together because they must agree byte for byte.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, get_origin, overload

import msgspec
import orjson
from msgspec.structs import asdict, astuple

from publisher.errors import AkinonBadResponse
from publisher.fingerprint import encode_form, page_canonicals
from publisher.records import DATE_FIELDS, RESOURCES, Resource, ResourceSpec, unwrap

# Akinon's integers are 64-bit. A bigger one is left to the plain way: orjson reads it as a
# float, which validation rejects, where msgspec would read it exactly.
Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


def _row_type(annotation: Any) -> Any:
    """Return what the typed pass reads for a model field's type (a decimal as its text)."""
    base, optional = unwrap(annotation)
    if get_origin(base) is dict:
        found: Any = dict[str, Any]
    else:
        found = {int: Int, str: str, Decimal: str}.get(base)
    if found is None:
        raise TypeError(f"the typed pass cannot read a field of type {annotation!r}")
    return found | None if optional else found


def row_struct(spec: ResourceSpec) -> type[msgspec.Struct]:
    """Return the typed row of a resource: its content fields, in order, then the dates.

    Every content field must be present (no defaults): a record without one takes the plain
    way. The rows are never tracked by the garbage collector (`gc=False`): they hold decoded
    JSON values only, which cannot refer back to a row, so no cycle can run through one. It
    makes the decode of a page about a third cheaper. A form is the head of a row's tuple.
    """
    fields = spec.content.model_fields
    layout: list[Any] = [(name, _row_type(fields[name].annotation)) for name in spec.content_fields]
    modified, created = DATE_FIELDS[1], DATE_FIELDS[0]
    layout += [(modified, str), (created, str | None, None)]
    name = f"{spec.resource.value.capitalize()}Row"
    return msgspec.defstruct(name, layout, gc=False)


ROWS: Final = {resource: row_struct(spec) for resource, spec in RESOURCES.items()}


def _envelope(results: Any) -> type[msgspec.Struct]:
    # {count, next, previous, results}: `previous` is not read.
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("results", list[results]),
        ("next", Any, None),
        ("count", Any, None),
    ]
    return msgspec.defstruct("Envelope", fields, gc=False)


_ENVELOPES: Final = {resource: _envelope(row) for resource, row in ROWS.items()}
_TYPED: Final = {
    resource: msgspec.json.Decoder(list[row] | _ENVELOPES[resource])  # type: ignore[valid-type]
    for resource, row in ROWS.items()
}
_RAW_ENVELOPE: Final = _envelope(msgspec.Raw)
_RAW: Final = msgspec.json.Decoder(list[msgspec.Raw] | _RAW_ENVELOPE)
_CONTENT: Final = {
    r: operator.itemgetter(slice(len(s.content_fields))) for r, s in RESOURCES.items()
}
_KEY: Final = {r: operator.attrgetter(s.key_field) for r, s in RESOURCES.items()}
_MODIFIED: Final = operator.attrgetter("modified_date")
_MODIFIED_KEY: Final = operator.itemgetter("modified_date")


class RecordPage(Sequence[Any]):
    """The records of one page: keys, canonical forms and newest date made, dicts on demand.

    `page[i]` is the record as orjson decodes it (the same dict each time); iterating
    decodes every record. `fields(i)` is what validating a record needs, `row(i)` what the
    decode read of it, `modified(i)` its `modified_date` text (or None). A key is None and a
    form None where a record has none (only a plain page can hold such records).
    """

    __slots__ = (
        "_body",
        "_decoded",
        "_raws",
        "_rows",
        "cut_short",
        "forms",
        "keys",
        "newest_modified",
        "oldest_modified",
        "resource",
        "served_at",
    )

    def __init__(
        self,
        resource: Resource,
        keys: list[int | None],
        forms: list[bytes | None],
        newest_modified: str | None,
        *,
        body: bytes = b"",
        rows: Sequence[msgspec.Struct] | None = None,
        decoded: dict[int, Any] | None = None,
    ) -> None:
        """Hold a page; build one with `typed` or `plain`."""
        self.resource = resource
        self.keys = keys
        self.forms = forms
        self.newest_modified = newest_modified
        self.oldest_modified: str | None = None
        # Set by the client on the last page of a scan that stopped before the list's end
        # (a server ignoring `page`): the scan saw only part of the list.
        self.cut_short = False
        # The server's clock when it sent the page (its `Date` header), if the client knows
        # it: no `modified_date` may be later than that plus a small skew.
        self.served_at: datetime | None = None
        self._body = body
        self._rows = rows
        self._raws: list[msgspec.Raw] | None = None
        self._decoded: dict[int, Any] = {} if decoded is None else decoded

    @classmethod
    def typed(cls, resource: Resource, body: bytes, rows: Sequence[msgspec.Struct]) -> RecordPage:
        """Return the page of typed rows read from `body` (the fast way)."""
        keys: list[int | None] = list(map(_KEY[resource], rows))
        # astuple reads a row's slots in C: less than half the cost of getting each field.
        forms: list[bytes | None] = list(
            map(encode_form, map(_CONTENT[resource], map(astuple, rows)))
        )
        # ISO-8601 text in one format sorts as the moments do.
        newest: str | None = max(map(_MODIFIED, rows), default=None)
        page = cls(resource, keys, forms, newest, body=body, rows=rows)
        page.oldest_modified = min(map(_MODIFIED, rows), default=None)
        return page

    @classmethod
    def plain(cls, resource: Resource, records: Sequence[Any]) -> RecordPage:
        """Return the page of records decoded as orjson decodes them, whatever they hold."""
        decoded = dict(enumerate(records))
        page = cls(
            resource,
            page_keys(resource, records),
            page_canonicals(resource, records),
            newest_modified(records),
            decoded=decoded,
        )
        page.oldest_modified = newest_modified(records, oldest=True)
        return page

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("record index out of range")
        found = self._decoded.get(index, _MISSING)
        if found is _MISSING:
            try:
                found = self._decoded[index] = orjson.loads(memoryview(self._raw()[index]))
            except orjson.JSONDecodeError as exc:  # in a field the typed pass skipped
                raise AkinonBadResponse(
                    f"record {index} (key {self.keys[index]}) of a {self.resource.value} "
                    f"page is not valid JSON: {exc}"
                ) from None
        return found

    def __iter__(self) -> Iterator[Any]:
        return map(self.__getitem__, range(len(self)))

    @property
    def is_typed(self) -> bool:
        """Say whether the typed pass read this page (else orjson did, record by record)."""
        return self._rows is not None

    def fields(self, index: int) -> Any:
        """Return what the record's model reads of it: the row, or the whole record.

        Validating either gives the same outcome (see the module's docstring); the row needs
        no second pass over the body.
        """
        if self._rows is None or getattr(self._rows[index], "extra_field", None):
            return self[index]  # a plain record, or nested JSON: read as orjson reads it
        return self.row(index)

    def row(self, index: int) -> Any:
        """Return what the decode read of a record: its typed fields, or the plain record."""
        if self._rows is None:
            return self[index]
        return asdict(self._rows[index])

    def modified(self, index: int) -> str | None:
        """Return a record's `modified_date` text, or None when it has none."""
        if self._rows is not None:
            found: str = _MODIFIED(self._rows[index])
            return found
        record = self[index]
        date = record.get("modified_date") if type(record) is dict else None
        return date if type(date) is str else None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordPage | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        way = "typed" if self.is_typed else "plain"
        return f"<RecordPage {self.resource.value} {way} records={len(self)}>"

    def _raw(self) -> list[msgspec.Raw]:
        # Each record's own JSON text, found by one more (light) pass over the body.
        if self._raws is None:
            found = _RAW.decode(self._body)
            self._raws = found if isinstance(found, list) else found.results
        return self._raws


_MISSING: Final = object()


def page_keys(resource: Resource, raws: Sequence[Any]) -> list[int | None]:
    """Return each decoded record's key (None where it has none), in page order."""
    getter = operator.itemgetter(resource.key_field)
    try:  # the common case, in C: every record is a dict with an integer key
        found: list[int | None] = list(map(getter, raws))
        if set(map(type, found)) == {int}:
            return found
    except (KeyError, TypeError):
        pass
    return [record_key(resource, raw) for raw in raws]


def record_key(resource: Resource, raw: Any) -> int | None:
    """Return a decoded record's integer key, or None when it has none."""
    key = raw_key(resource, raw)
    return key if type(key) is int else None


def raw_key(resource: Resource, raw: Any) -> Any:
    """Return a decoded record's key as it came, whatever its type (None if absent).

    The first of the resource's key fields the record has (prices are also seen keyed by
    `pk`): the same choice the model's alias and the canonical form make.
    """
    if type(raw) is Unreadable:
        return raw.key
    if type(raw) is not dict:
        return None
    for name in resource.spec.key_fields:
        if name in raw:
            return raw[name]
    return None


def newest_modified(raws: Sequence[Any], *, oldest: bool = False) -> str | None:
    """Return the latest (or the earliest) `modified_date` text of decoded records.

    ISO-8601 text in one format sorts as the moments do.
    """
    pick = min if oldest else max
    try:  # the common case, in C
        found: str | None = pick(map(_MODIFIED_KEY, raws), default=None)
        if found is None or type(found) is str:
            return found
    except (KeyError, TypeError):
        pass
    dates = (r.get("modified_date") for r in raws if type(r) is dict)
    return pick((d for d in dates if type(d) is str), default=None)


def decode_page(resource: Resource, body: bytes) -> Any:
    """Decode a page body as orjson would, with its records as a `RecordPage`.

    A bare array becomes a `RecordPage`; an object with a `results` array becomes
    ``{"results": RecordPage, "next": ..., "count": ...}``; the records are read the typed
    way if every one fits, else decoded by orjson and the same type is built from them (a
    record orjson refuses on a well-formed page becomes an `Unreadable`, rejected alone).
    Anything else is returned as orjson decodes it (malformed JSON raises orjson's error).
    """
    try:
        found = _TYPED[resource].decode(body)
    except (ValueError, RecursionError):  # msgspec's errors, or nesting too deep for it
        return _plain(resource, _loads(resource, body))
    if isinstance(found, list):
        return RecordPage.typed(resource, body, found)
    results = RecordPage.typed(resource, body, found.results)
    return {"results": results, "next": found.next, "count": found.count}


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record orjson cannot decode on a page that is valid JSON text: it is rejected alone.

    The one known case is a number past the range of a double (``1e309``): valid JSON text,
    refused by orjson. `text` is the record's JSON text, `key` its key where one can be read.
    """

    key: int | None
    text: str
    reason: str


def _loads(resource: Resource, body: bytes) -> Any:
    """Decode a page as orjson does; if it refuses a record of a well-formed page, that one only.

    A body that is not JSON text at all still raises orjson's error (the page is retried).
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            split = _RAW.decode(body)  # checks the syntax, not the range of numbers
        except (ValueError, RecursionError):
            split = None
        if split is None:
            raise
    if isinstance(split, list):
        return [_record(resource, raw) for raw in split]
    records = [_record(resource, raw) for raw in split.results]
    return {"results": records, "next": split.next, "count": split.count}


def _record(resource: Resource, raw: msgspec.Raw) -> Any:
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError as exc:
        text = bytes(raw).decode("utf-8", errors="replace")
        return Unreadable(_loose_key(resource, text), text, f"record: not valid JSON here ({exc})")


def _loose_key(resource: Resource, text: str) -> int | None:
    # The standard decoder reads 1e309 as infinity, enough to find the record's key.
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except ValueError:
        return None
    return record_key(resource, value)


def _bounded_int(text: str) -> int | None:
    return int(text) if len(text) <= MAX_INT_DIGITS else None


# Python refuses `int()` of more than 4300 digits; a key is far shorter.
MAX_INT_DIGITS: Final = 20


def _plain(resource: Resource, decoded: Any) -> Any:
    if isinstance(decoded, list):
        return RecordPage.plain(resource, decoded)
    if isinstance(decoded, dict) and isinstance(decoded.get("results"), list):
        return {**decoded, "results": RecordPage.plain(resource, decoded["results"])}
    return decoded
