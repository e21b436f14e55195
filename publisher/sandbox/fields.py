"""Make the sandbox's records: field order and kinds (from the models), business rules (pure).

Records are plain dicts in Akinon's field order, so serialising one gives the bytes a client
would see. The order and the kind of every settable field come from the content models of
`publisher.records`; what differs between resources beyond that (how a record is seeded,
what Akinon derives from what, how churn changes it) is one `Maker` per resource. Money,
rates and percentages are decimal strings with two places, never floats.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from typing import Any, Final, get_origin

from publisher.records import DATE_FIELDS, RESOURCES, Resource, unwrap
from publisher.sandbox.errors import InvalidError


class Kind(Enum):
    """Name how a settable field's value is checked and normalised."""

    INT = "int"
    OPTIONAL_INT = "optional int"
    MONEY = "money"
    OPTIONAL_MONEY = "optional money"
    TEXT = "text"
    MAPPING = "mapping"


def _kind(annotation: Any) -> Kind:
    """Return how the sandbox checks a value for a field of the content model's type."""
    base, optional = unwrap(annotation)
    if get_origin(base) is dict:
        return Kind.MAPPING
    kinds = {int: (Kind.INT, Kind.OPTIONAL_INT), Decimal: (Kind.MONEY, Kind.OPTIONAL_MONEY)}
    if base in kinds:
        return kinds[base][optional]
    if base is str:
        return Kind.TEXT
    raise TypeError(f"the sandbox cannot set a field of type {annotation!r}")


# Akinon's field order: the content fields, then the dates (from `publisher.records`).
FIELD_ORDER: Final = {r: (*spec.content_fields, *DATE_FIELDS) for r, spec in RESOURCES.items()}
DATE_NAMES: Final = frozenset(DATE_FIELDS)
_TAX_RATES: Final = ("1.00", "10.00", "18.00", "20.00")
_CENT: Final = Decimal("0.01")

# Every content field but the key can be set, checked by the kind its model gives it.
KINDS: Final = {
    resource: {
        name: _kind(spec.content.model_fields[name].annotation) for name in spec.content_fields[1:]
    }
    for resource, spec in RESOURCES.items()
}


def _ordered(resource: Resource, values: dict[str, Any]) -> dict[str, Any]:
    """Return a record's content in the resource's field order (every field must be there)."""
    return {name: values[name] for name in RESOURCES[resource].content_fields}


def money(value: Any) -> str:
    """Return `value` as a decimal string with two places; refuse floats' binary noise."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    text = repr(value) if isinstance(value, float) else str(value)
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a decimal amount") from exc
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite amount")
    return str(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _coerce_kind(kind: Kind, value: Any) -> Any:
    if value is None and kind in (Kind.OPTIONAL_INT, Kind.OPTIONAL_MONEY):
        return None
    if kind in (Kind.INT, Kind.OPTIONAL_INT):
        return _integer(value)
    if kind in (Kind.MONEY, Kind.OPTIONAL_MONEY):
        return money(value)
    if kind is Kind.TEXT and isinstance(value, str):
        return value
    if kind is Kind.MAPPING and isinstance(value, dict):
        return dict(value)
    raise ValueError(f"{value!r} is not a valid {kind.value}")


def coerce(resource: Resource, fields: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise settable fields; raise InvalidError naming each bad one."""
    kinds = KINDS[resource]
    clean: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, value in fields.items():
        kind = kinds.get(name)
        if kind is None:
            errors[name] = ["This field cannot be set."]
            continue
        try:
            clean[name] = _coerce_kind(kind, value)
        except ValueError as exc:
            errors[name] = [str(exc)]
    if errors:
        raise InvalidError(errors)
    return clean


def stock_record(
    pk: int, *, product: int, list_id: int, stock: int, sold: int = 0, collection: int | None = None
) -> dict[str, Any]:
    """Build a stock record (without dates) in Akinon's field order."""
    values = {
        "pk": pk,
        "product": product,
        "unit_type": "qty",
        "stock": stock,
        "sold_quantity_unreported": sold,
        "extra_field": {},
        "stock_list": list_id,
        "modified_collection": collection,
        "adjusted_stock": max(stock - sold, 0),
    }
    return _ordered(Resource.STOCK, values)


def price_record(
    pk: int,
    *,
    product: int,
    list_id: int,
    retail_cents: int | None,
    price_cents: int,
    tax_rate: str = "18.00",
    collection: int | None = None,
) -> dict[str, Any]:
    """Build a price record (without dates) in Akinon's field order."""
    values: dict[str, Any] = {
        "id": pk,
        "product": product,
        "price_list": list_id,
        "retail_price": None,
        "tax_rate": tax_rate,
        "currency_type": "try",
        "price": "0.00",
        "price_type": "default",
        "discount_percentage": None,
        "modifier_collection": collection,
        "adjusted_price": "0.00",
        "extra_field": {},
    }
    record = _ordered(Resource.PRICE, values)
    if retail_cents is not None:
        record["retail_price"] = _cents(retail_cents)
    reprice(record, price_cents)
    return record


def _cents(cents: int) -> str:
    return str((Decimal(cents) / 100).quantize(_CENT))


def reprice(record: dict[str, Any], price_cents: int) -> None:
    """Set a price record's price and the fields derived from it, in place."""
    price = _cents(price_cents)
    record["price"] = price
    record["adjusted_price"] = price
    retail = record.get("retail_price")
    if retail is None or Decimal(retail) == 0:
        record["discount_percentage"] = None
        return
    share = (Decimal(retail) - Decimal(price)) / Decimal(retail) * 100
    record["discount_percentage"] = str(share.quantize(_CENT, rounding=ROUND_HALF_UP))


def _derive_stock(record: dict[str, Any], given: set[str]) -> None:
    if given & {"stock", "sold_quantity_unreported"} and "adjusted_stock" not in given:
        restock(record, int(record["stock"]))


def _derive_price(record: dict[str, Any], given: set[str]) -> None:
    touched = given & {"price", "retail_price"}
    if touched and not given & {"adjusted_price", "discount_percentage"}:
        reprice(record, int(Decimal(record["price"]) * 100))


def restock(record: dict[str, Any], stock: int) -> None:
    """Set a stock record's quantity and the adjusted quantity derived from it, in place."""
    record["stock"] = stock
    record["adjusted_stock"] = max(stock - int(record.get("sold_quantity_unreported") or 0), 0)


def seeded_stock(rng: random.Random, pk: int, product: int, list_id: int) -> dict[str, Any]:
    """Return a plausible stock record drawn from `rng`."""
    sold = rng.choice((0, 0, 0, 1, 2))
    collection = rng.choice((None, None, None, list_id * 10 + 1))
    stock = rng.randint(0, 500)
    return stock_record(
        pk, product=product, list_id=list_id, stock=stock, sold=sold, collection=collection
    )


def seeded_price(rng: random.Random, pk: int, product: int, list_id: int) -> dict[str, Any]:
    """Return a plausible price record drawn from `rng`; one in ten has no retail price."""
    retail = rng.randint(1_000, 100_000)
    discount = rng.choice((0, 0, 5, 10, 15, 20, 30))
    price = retail * (100 - discount) // 100
    return price_record(
        pk,
        product=product,
        list_id=list_id,
        retail_cents=None if rng.random() < 0.1 else retail,
        price_cents=price,
        tax_rate=rng.choice(_TAX_RATES),
        collection=rng.choice((None, None, None, list_id * 10 + 1)),
    )


def churned_stock(rng: random.Random, record: dict[str, Any]) -> int:
    """Return a stock quantity near the record's current one but never equal to it."""
    current = int(record["stock"])
    step = rng.choice((-1, 1)) * rng.randint(1, 20)
    changed = current + step
    return changed if changed >= 0 else current + abs(step)


def churned_price_cents(rng: random.Random, record: dict[str, Any]) -> int:
    """Return a price in cents within 20% of the record's current one but never equal to it."""
    current = int(Decimal(record["price"]) * 100)
    changed = max(1, round(current * rng.uniform(0.8, 1.2)))
    return changed if changed != current else current + 1


def _churn_stock(rng: random.Random, record: dict[str, Any]) -> set[str]:
    restock(record, churned_stock(rng, record))
    return {"stock", "adjusted_stock"}


def _churn_price(rng: random.Random, record: dict[str, Any]) -> set[str]:
    reprice(record, churned_price_cents(rng, record))
    return {"price", "adjusted_price", "discount_percentage"}


@dataclass(frozen=True)
class Maker:
    """How the sandbox makes and changes one resource's records: its business rules.

    `default(pk, list_id)`: a record created with only its key; `seeded(rng, pk, product,
    list_id)`: a plausible seeded record; `derive(record, given)`: recompute the fields
    Akinon derives (say `adjusted_stock`) after `given` fields were set, unless the caller
    set them too; `churn(rng, record)`: change the record's amount the way a merchant would,
    returning the fields that moved.
    """

    default: Callable[[int, int], dict[str, Any]]
    seeded: Callable[[random.Random, int, int, int], dict[str, Any]]
    derive: Callable[[dict[str, Any], set[str]], None]
    churn: Callable[[random.Random, dict[str, Any]], set[str]]


MAKERS: Final[dict[Resource, Maker]] = {
    Resource.STOCK: Maker(
        default=lambda pk, list_id: stock_record(pk, product=pk, list_id=list_id, stock=0),
        seeded=seeded_stock,
        derive=_derive_stock,
        churn=_churn_stock,
    ),
    Resource.PRICE: Maker(
        default=lambda pk, list_id: price_record(
            pk, product=pk, list_id=list_id, retail_cents=None, price_cents=0
        ),
        seeded=seeded_price,
        derive=_derive_price,
        churn=_churn_price,
    ),
}
