"""Decode a page body into its records, with the diff's view of them made in one pass (pure).

    page body  ->  RecordPage(keys, forms, newest_modified) + records decoded on demand

A page is decoded as orjson would decode it, except that the record array becomes a
`RecordPage`. To make it, typed structs (`msgspec`) read only the fields the models read
(the key, the content fields, the two dates) and skip the rest without building a dict;
each record's canonical form is written from its content fields. A record whose form is
not a stored one is validated from its row (`fields`), so a steady-state poll builds no
record dict at all; a record is decoded in full only when asked for (`page[i]`): to report
it as rejected, to acknowledge it.

The typed pass takes a page only if *every* record fits it: an integer key within 64 bits,
every content field present, the decimals as strings (or null where they may be), a
`modified_date` string, a `created_date` string or null (or none). Otherwise nothing
changes: the page is decoded by orjson into plain dicts and the diff takes its usual way
(`publisher.fingerprint.page_canonicals`), so an odd record costs speed, never correctness.

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
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Final, overload

import msgspec
import orjson
from msgspec.structs import asdict, astuple

from publisher.errors import AkinonBadResponse
from publisher.records import CONTENT_FIELDS, Resource

# Akinon's integers are 64-bit. A bigger one is left to the plain way: orjson reads it as a
# float, which validation rejects, where msgspec would read it exactly.
Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

# The rows are never tracked by the garbage collector (`gc=False`): they hold decoded JSON
# values only, which cannot refer back to a row, so no cycle can run through one. It makes
# the decode of a page about a third cheaper. A row's content fields come first, in
# `CONTENT_FIELDS` order (a form is the head of the row's tuple), then the dates.


class StockRow(msgspec.Struct, gc=False):
    """What the fast path reads of an extra product stock: content fields, then the date."""

    pk: Int
    product: Int
    unit_type: str
    stock: Int
    sold_quantity_unreported: Int | None
    extra_field: dict[str, Any]
    stock_list: Int
    modified_collection: Int | None
    adjusted_stock: Int | None
    modified_date: str
    created_date: str | None = None


class PriceRow(msgspec.Struct, gc=False):
    """What the fast path reads of an extra product price: content fields, then the date."""

    id: Int
    product: Int
    price_list: Int
    retail_price: str | None
    tax_rate: str | None
    currency_type: str
    price: str
    price_type: str
    discount_percentage: str | None
    modifier_collection: Int | None
    adjusted_price: str | None
    extra_field: dict[str, Any]
    modified_date: str
    created_date: str | None = None


class _Envelope(msgspec.Struct, gc=False):
    # {count, next, previous, results}: only `results` and `next` are read.
    results: list[Any]
    next: Any = None


class _StockEnvelope(_Envelope, gc=False):
    results: list[StockRow]


class _PriceEnvelope(_Envelope, gc=False):
    results: list[PriceRow]


class _RawEnvelope(_Envelope, gc=False):
    results: list[msgspec.Raw]


ROWS: Final[dict[Resource, type[StockRow] | type[PriceRow]]] = {
    Resource.STOCK: StockRow,
    Resource.PRICE: PriceRow,
}

_TYPED: Final[dict[Resource, msgspec.json.Decoder[Any]]] = {
    Resource.STOCK: msgspec.json.Decoder(list[StockRow] | _StockEnvelope),
    Resource.PRICE: msgspec.json.Decoder(list[PriceRow] | _PriceEnvelope),
}
_RAW: Final = msgspec.json.Decoder(list[msgspec.Raw] | _RawEnvelope)
# Nested objects with sorted keys, as in `publisher.fingerprint`.
_ENCODE: Final = msgspec.json.Encoder(order="sorted").encode
_CONTENT: Final = {r: operator.itemgetter(slice(len(CONTENT_FIELDS[r]))) for r in Resource}
_KEY: Final = {r: operator.attrgetter(CONTENT_FIELDS[r][0]) for r in Resource}
_MODIFIED: Final = operator.attrgetter("modified_date")


class RecordPage(Sequence[Any]):
    """The records of one page: keys, canonical forms and newest date made, dicts on demand.

    `page[i]` is the record as orjson decodes it (the same dict each time); iterating
    decodes every record. `fields(i)` is what validating a record needs, `row(i)` what the
    typed pass read of it.
    """

    __slots__ = (
        "_body",
        "_decoded",
        "_raws",
        "_rows",
        "forms",
        "keys",
        "newest_modified",
        "resource",
    )

    def __init__(self, resource: Resource, body: bytes, rows: Sequence[StockRow | PriceRow]):
        self.resource = resource
        self.keys: list[int] = list(map(_KEY[resource], rows))
        # astuple reads a row's slots in C: less than half the cost of getting each field.
        self.forms: list[bytes] = list(map(_ENCODE, map(_CONTENT[resource], map(astuple, rows))))
        # ISO-8601 text in one format sorts as the moments do.
        self.newest_modified: str | None = max(map(_MODIFIED, rows), default=None)
        self._body = body
        self._rows = rows
        self._raws: list[msgspec.Raw] | None = None
        self._decoded: dict[int, Any] = {}

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
        found = self._decoded.get(index)
        if found is None:
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

    def fields(self, index: int) -> dict[str, Any]:
        """Return what the record's model reads of it: the row, or the whole record.

        Validating either gives the same outcome (see the module's docstring); the row needs
        no second pass over the body.
        """
        if self._rows[index].extra_field:  # nested JSON: read as orjson reads it
            found: dict[str, Any] = self[index]
            return found
        return self.row(index)

    def row(self, index: int) -> dict[str, Any]:
        """Return the fields the typed pass read of a record (as msgspec read them)."""
        return asdict(self._rows[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordPage | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RecordPage {self.resource.value} records={len(self)}>"

    def _raw(self) -> list[msgspec.Raw]:
        # Each record's own JSON text, found by one more (light) pass over the body.
        if self._raws is None:
            found = _RAW.decode(self._body)
            self._raws = found.results if isinstance(found, _RawEnvelope) else found
        return self._raws


def decode_page(resource: Resource, body: bytes) -> Any:
    """Decode a page body as orjson would, with its records as a `RecordPage` if they fit.

    A bare array becomes a `RecordPage`; an object becomes ``{"results": RecordPage,
    "next": ...}``. Anything else, or a record that does not fit the typed pass, is
    decoded by `orjson.loads` as it is (and malformed JSON raises its error).
    """
    try:
        found = _TYPED[resource].decode(body)
    except (ValueError, RecursionError):  # msgspec's errors, or nesting too deep for it
        return orjson.loads(body)
    if isinstance(found, _Envelope):
        return {"results": RecordPage(resource, body, found.results), "next": found.next}
    return RecordPage(resource, body, found)
