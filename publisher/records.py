"""Type Akinon's extra product stock and price records (pure: no I/O).

Money, rates and percentages are `Decimal`: Akinon sends them as decimal strings and a float
would change them. Unknown fields are ignored; the dates are parsed but are not part of a
record's *content*, the business fields whose change is worth an event.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class Resource(StrEnum):
    """Name the two kinds of record a channel serves."""

    STOCK = "stock"
    PRICE = "price"

    @property
    def path(self) -> str:
        """Return the URL segment under ``/api/v1/channel/{id}/``."""
        return "extra_product_stocks" if self is Resource.STOCK else "extra_product_prices"

    @property
    def content_type(self) -> str:
        """Return the batch-request content type Akinon expects."""
        return "productstock" if self is Resource.STOCK else "productprice"

    @property
    def key_field(self) -> str:
        """Return the field that identifies a record."""
        return "pk" if self is Resource.STOCK else "id"


class Endpoint(StrEnum):
    """Name the list endpoints of a resource (the value is the URL suffix)."""

    LIST = "list"
    DETAILED = "detailed"
    INSERTS = "inserts"
    UPDATES = "updates"
    INSERTS_OR_UPDATES = "inserts_or_updates"

    @property
    def suffix(self) -> str:
        """Return the path after the resource segment, '' for the plain list."""
        return "" if self is Endpoint.LIST else f"{self.value}/"


_MODEL_CONFIG = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class StockContent(BaseModel):
    """The business content of an extra product stock: what a change event carries."""

    model_config = _MODEL_CONFIG

    pk: int
    product: int
    unit_type: str
    stock: int
    sold_quantity_unreported: int | None = None
    extra_field: dict[str, Any] = Field(default_factory=dict)
    stock_list: int
    modified_collection: int | None = None
    adjusted_stock: int | None = None


class StockRecord(StockContent):
    """One extra product stock of a channel's stock list, as Akinon serves it."""

    created_date: datetime | None = None
    modified_date: datetime

    @property
    def key(self) -> int:
        """Return the record key (``pk``)."""
        return self.pk


class PriceContent(BaseModel):
    """The business content of an extra product price: what a change event carries."""

    model_config = _MODEL_CONFIG

    id: int = Field(validation_alias=AliasChoices("id", "pk"))
    product: int
    price_list: int
    retail_price: Decimal | None = None
    tax_rate: Decimal | None = None
    currency_type: str
    price: Decimal
    price_type: str = "default"
    discount_percentage: Decimal | None = None
    modifier_collection: int | None = None
    adjusted_price: Decimal | None = None
    extra_field: dict[str, Any] = Field(default_factory=dict)


class PriceRecord(PriceContent):
    """One extra product price of a channel's price list, as Akinon serves it."""

    created_date: datetime | None = None
    modified_date: datetime

    @property
    def key(self) -> int:
        """Return the record key (``id``)."""
        return self.id


Record = StockRecord | PriceRecord

MODELS: Final[dict[Resource, type[StockRecord] | type[PriceRecord]]] = {
    Resource.STOCK: StockRecord,
    Resource.PRICE: PriceRecord,
}

# The business content of a record, in a fixed order: what a fingerprint covers and what an
# event's `before`/`after` carry. Dates are left out so a touch that changes nothing is silent.
CONTENT_FIELDS: Final[dict[Resource, tuple[str, ...]]] = {
    Resource.STOCK: tuple(StockContent.model_fields),
    Resource.PRICE: tuple(PriceContent.model_fields),
}

DECIMAL_FIELDS: Final[dict[Resource, frozenset[str]]] = {
    Resource.STOCK: frozenset(),
    Resource.PRICE: frozenset(
        {"retail_price", "tax_rate", "price", "discount_percentage", "adjusted_price"}
    ),
}
