"""Describe the two record shapes: field order, field kinds, seeded values (pure).

Records are plain dicts in Akinon's field order, so serialising one gives the bytes a client
would see. Money, rates and percentages are decimal strings with two places, never floats.
"""

from __future__ import annotations

import random
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from typing import Any, Final

from publisher.records import Resource
from publisher.sandbox.errors import InvalidError

FIELD_ORDER: Final[dict[Resource, tuple[str, ...]]] = {
    Resource.STOCK: (
        "pk",
        "product",
        "unit_type",
        "stock",
        "sold_quantity_unreported",
        "extra_field",
        "stock_list",
        "modified_collection",
        "adjusted_stock",
        "created_date",
        "modified_date",
    ),
    Resource.PRICE: (
        "id",
        "product",
        "price_list",
        "retail_price",
        "tax_rate",
        "currency_type",
        "price",
        "price_type",
        "discount_percentage",
        "modifier_collection",
        "adjusted_price",
        "extra_field",
        "created_date",
        "modified_date",
    ),
}

DATE_FIELDS: Final = frozenset({"created_date", "modified_date"})
_CENT: Final = Decimal("0.01")
_TAX_RATES: Final = ("1.00", "10.00", "18.00", "20.00")


class Kind(Enum):
    """Name how a settable field's value is checked and normalised."""

    INT = "int"
    OPTIONAL_INT = "optional int"
    MONEY = "money"
    OPTIONAL_MONEY = "optional money"
    TEXT = "text"
    MAPPING = "mapping"


KINDS: Final[dict[Resource, dict[str, Kind]]] = {
    Resource.STOCK: {
        "product": Kind.INT,
        "unit_type": Kind.TEXT,
        "stock": Kind.INT,
        "sold_quantity_unreported": Kind.INT,
        "extra_field": Kind.MAPPING,
        "stock_list": Kind.INT,
        "modified_collection": Kind.OPTIONAL_INT,
        "adjusted_stock": Kind.INT,
    },
    Resource.PRICE: {
        "product": Kind.INT,
        "price_list": Kind.INT,
        "retail_price": Kind.OPTIONAL_MONEY,
        "tax_rate": Kind.MONEY,
        "currency_type": Kind.TEXT,
        "price": Kind.MONEY,
        "price_type": Kind.TEXT,
        "discount_percentage": Kind.OPTIONAL_MONEY,
        "modifier_collection": Kind.OPTIONAL_INT,
        "adjusted_price": Kind.MONEY,
        "extra_field": Kind.MAPPING,
    },
}


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


def defaults(resource: Resource, pk: int, list_id: int) -> dict[str, Any]:
    """Return the values of a record created with only its key given."""
    if resource is Resource.STOCK:
        return stock_record(pk, product=pk, list_id=list_id, stock=0)
    return price_record(pk, product=pk, list_id=list_id, retail_cents=None, price_cents=0)


def stock_record(
    pk: int, *, product: int, list_id: int, stock: int, sold: int = 0, collection: int | None = None
) -> dict[str, Any]:
    """Build a stock record (without dates) in Akinon's field order."""
    return {
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
    record: dict[str, Any] = {
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


def derive(resource: Resource, record: dict[str, Any], given: set[str]) -> None:
    """Recompute derived fields after a change, unless the caller set them itself.

    Akinon derives `adjusted_stock` and `adjusted_price`/`discount_percentage` from the base
    values; a sandbox record whose base moved but whose derived fields did not would mislead.
    """
    if resource is Resource.STOCK:
        if given & {"stock", "sold_quantity_unreported"} and "adjusted_stock" not in given:
            restock(record, int(record["stock"]))
        return
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
