"""Build raw Akinon records as they arrive on the wire (decoded JSON)."""

from __future__ import annotations

from typing import Any


def stock(pk: int, **fields: Any) -> dict[str, Any]:
    """Return a raw stock record; keyword arguments override fields."""
    record: dict[str, Any] = {
        "pk": pk,
        "product": 1000 + pk,
        "unit_type": "qty",
        "stock": 10,
        "sold_quantity_unreported": 0,
        "extra_field": {},
        "stock_list": 7,
        "modified_collection": None,
        "adjusted_stock": 10,
        "created_date": "2025-12-01T14:18:51.343000Z",
        "modified_date": "2025-12-01T14:18:51.343000Z",
    }
    record.update(fields)
    return record


def price(pk: int, **fields: Any) -> dict[str, Any]:
    """Return a raw price record; keyword arguments override fields."""
    record: dict[str, Any] = {
        "id": pk,
        "product": 1000 + pk,
        "price_list": 3,
        "retail_price": "129.90",
        "tax_rate": "18.00",
        "currency_type": "try",
        "price": "119.90",
        "price_type": "default",
        "discount_percentage": "7.70",
        "modifier_collection": None,
        "adjusted_price": "119.90",
        "extra_field": {},
        "created_date": "2025-06-27T10:06:56.438000Z",
        "modified_date": "2025-06-27T10:06:56.438000Z",
    }
    record.update(fields)
    return record
