"""Type Akinon's extra product stock and price records (pure: no I/O).

Money, rates and percentages are `Decimal`: Akinon sends them as decimal strings and a float
would change them. Unknown fields are ignored; the dates are parsed but are not part of a
record's *content*, the business fields whose change is worth an event.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema


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


# The attribute docstrings below become the field descriptions of the published schemas.
_MODEL_CONFIG = ConfigDict(
    frozen=True, extra="ignore", populate_by_name=True, use_attribute_docstrings=True
)

# The text `str(Decimal)` gives: digits, an optional fraction, an optional exponent.
DECIMAL_PATTERN: Final = r"^-?[0-9]+(\.[0-9]+)?(E[+-][0-9]+)?$"

# Events carry a decimal as its exact text ("119.90"), never as a JSON number; this tells the
# published schema so (pydantic would otherwise describe a number-or-string). Parsing is as
# for any Decimal.
DecimalText = Annotated[
    Decimal,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "A decimal number as text, exact: never a JSON number.",
            "examples": ["119.90"],
        }
    ),
]


class StockContent(BaseModel):
    """The business content of an extra product stock: what a change event carries."""

    model_config = _MODEL_CONFIG

    pk: int
    """The stock record's key."""
    product: int
    """The product's id."""
    unit_type: str
    """The unit `stock` is counted in, e.g. `qty`."""
    stock: int
    """The quantity on hand in this stock list."""
    sold_quantity_unreported: int | None = None
    """Quantity sold but not yet reported to the stock source."""
    extra_field: dict[str, Any] = Field(default_factory=dict)
    """Free-form attributes the merchant keeps on the record."""
    stock_list: int
    """The stock list the record belongs to."""
    modified_collection: int | None = None
    """The collection whose stock rule adjusted this record, if any."""
    adjusted_stock: int | None = None
    """The stock after the channel's stock rules, when one applies."""


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
    """The price record's key."""
    product: int
    """The product's id."""
    price_list: int
    """The price list the record belongs to."""
    retail_price: DecimalText | None = None
    """The list price before any discount, or null."""
    tax_rate: DecimalText | None = None
    """The tax rate in percent, or null."""
    currency_type: str
    """The currency code, as Akinon spells it (e.g. `try`)."""
    price: DecimalText
    """The selling price."""
    price_type: str = "default"
    """The kind of price, `default` unless the merchant uses others."""
    discount_percentage: DecimalText | None = None
    """The discount from `retail_price` to `price`, in percent, or null."""
    modifier_collection: int | None = None
    """The collection whose price rule adjusted this record, if any."""
    adjusted_price: DecimalText | None = None
    """The price after the channel's price rules, when one applies."""
    extra_field: dict[str, Any] = Field(default_factory=dict)
    """Free-form attributes the merchant keeps on the record."""


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


def describe_errors(error: ValidationError) -> str:
    """Summarise a validation error in one line: field, problem and the value seen."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "record"
        seen = "" if item["type"] == "missing" else f" (got {item['input']!r:.60})"
        parts.append(f"{where}: {item['msg']}{seen}")
    return "; ".join(parts)
