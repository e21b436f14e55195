"""Build raw Akinon records as they arrive on the wire (decoded JSON), and pages of them.

The records start from each resource's example (`publisher.records.RESOURCES`), so their
fields and field order are the ones the models declare; only the values tests rely on are
set here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from publisher.pages import RecordPage
from publisher.records import Resource


def _record(
    resource: Resource, pk: int, values: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any]:
    record = dict(resource.spec.example)
    record.update({resource.key_field: pk, "product": 1000 + pk, **values})
    record.update(fields)
    return record


def stock(pk: int, **fields: Any) -> dict[str, Any]:
    """Return a raw stock record; keyword arguments override fields."""
    values = {
        "stock": 10,
        "sold_quantity_unreported": 0,
        "stock_list": 7,
        "modified_collection": None,
        "adjusted_stock": 10,
        "created_date": "2025-12-01T14:18:51.343000Z",
        "modified_date": "2025-12-01T14:18:51.343000Z",
    }
    return _record(Resource.STOCK, pk, values, fields)


def price(pk: int, **fields: Any) -> dict[str, Any]:
    """Return a raw price record; keyword arguments override fields."""
    values = {
        "price_list": 3,
        "retail_price": "129.90",
        "tax_rate": "18.00",
        "price": "119.90",
        "discount_percentage": "7.70",
        "modifier_collection": None,
        "adjusted_price": "119.90",
        "created_date": "2025-06-27T10:06:56.438000Z",
        "modified_date": "2025-06-27T10:06:56.438000Z",
    }
    return _record(Resource.PRICE, pk, values, fields)


def as_page(resource: Resource, records: Sequence[Any]) -> RecordPage:
    """Return records as the page the client would yield (a page stays as it is)."""
    if isinstance(records, RecordPage):
        return records
    return RecordPage.plain(resource, list(records))
