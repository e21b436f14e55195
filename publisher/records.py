"""Type Akinon's extra product stock and price records, and list them in one table (pure).

Money, rates and percentages are `Decimal`: Akinon sends them as decimal strings and a float
would change them. Unknown fields are ignored; the dates are parsed but are not part of a
record's *content*, the business fields whose change is worth an event.

`RESOURCES` holds one `ResourceSpec` per kind of record: where it lives in Akinon's API, its
key, its models, its content and decimal fields, an example record. Each record schema is
declared once, as its content model below; everything else is derived from the table: the
typed page rows (`publisher.pages`), the canonical form (`publisher.fingerprint`), the
names on the broker (`publisher.topology`), the sandbox's field kinds, the tests' factories.
Adding a resource is adding a model and a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, ClassVar, Final, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from publisher.bounds import shallow


class Resource(StrEnum):
    """Name the kinds of record a channel serves; `spec` says everything else about one."""

    STOCK = "stock"
    PRICE = "price"

    @property
    def spec(self) -> ResourceSpec:
        """Return this resource's row of the `RESOURCES` table."""
        return RESOURCES[self]

    @property
    def path(self) -> str:
        """Return the URL segment under ``/api/v1/channel/{id}/``."""
        return self.spec.path

    @property
    def content_type(self) -> str:
        """Return the batch-request content type Akinon expects."""
        return self.spec.content_type

    @property
    def key_field(self) -> str:
        """Return the field that identifies a record."""
        return self.spec.key_field


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

    @property
    def is_work_queue(self) -> bool:
        """Say whether this is a work queue, drained by acknowledging (not a whole list)."""
        return self not in (Endpoint.LIST, Endpoint.DETAILED)


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

# Free-form JSON a merchant edits: bounded in depth (`publisher.bounds`), so that a record
# nested hundreds of levels deep is rejected alone instead of failing its event's encoding.
ExtraField = Annotated[dict[str, Any], AfterValidator(shallow)]


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError("a key is 1 or more")
    return value


# A record's key: Akinon's are positive, and consumers refuse events with any other (the
# kit's bounds, `publisher.consumer.rules`). Not in the schema: a new constraint there would
# break the released contract.
Key = Annotated[int, AfterValidator(_positive)]


class StockContent(BaseModel):
    """The business content of an extra product stock: what a change event carries."""

    model_config = _MODEL_CONFIG
    resource: ClassVar[Resource] = Resource.STOCK

    pk: Key
    """The stock record's key."""
    product: int
    """The product's id."""
    unit_type: str
    """The unit `stock` is counted in, e.g. `qty`."""
    stock: int
    """The quantity on hand in this stock list."""
    sold_quantity_unreported: int | None = None
    """Quantity sold but not yet reported to the stock source."""
    extra_field: ExtraField = Field(default_factory=dict)
    """Free-form attributes the merchant keeps on the record."""
    stock_list: int
    """The stock list the record belongs to."""
    modified_collection: int | None = None
    """The collection whose stock rule adjusted this record, if any."""
    adjusted_stock: int | None = None
    """The stock after the channel's stock rules, when one applies."""


class Versioned(BaseModel):
    """What every record adds to its content: the dates of its version, and its key."""

    model_config = _MODEL_CONFIG
    resource: ClassVar[Resource]

    created_date: datetime | None = None
    modified_date: datetime

    @property
    def key(self) -> int:
        """Return the record key (``pk`` of a stock, ``id`` of a price)."""
        key: int = getattr(self, self.resource.key_field)
        return key


class StockRecord(StockContent, Versioned):
    """One extra product stock of a channel's stock list, as Akinon serves it."""


class PriceContent(BaseModel):
    """The business content of an extra product price: what a change event carries."""

    model_config = _MODEL_CONFIG
    resource: ClassVar[Resource] = Resource.PRICE

    id: Key = Field(validation_alias=AliasChoices("id", "pk"))
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
    extra_field: ExtraField = Field(default_factory=dict)
    """Free-form attributes the merchant keeps on the record."""


class PriceRecord(PriceContent, Versioned):
    """One extra product price of a channel's price list, as Akinon serves it."""


Record = StockRecord | PriceRecord


def _is_decimal(annotation: Any) -> bool:
    return annotation is Decimal or any(_is_decimal(arg) for arg in get_args(annotation))


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """Return a field type without `Annotated` and `| None`, and whether it may be null."""
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    optional = get_origin(annotation) in (Union, UnionType) and len(args) == 1
    base = args[0] if optional else annotation
    if get_origin(base) is Annotated:
        base = get_args(base)[0]
    return base, optional


@dataclass(frozen=True)
class ResourceSpec:
    """Everything that differs between two kinds of record, in one place.

    The content model's first field is the key; `key_fields` are the fields it may come in,
    tried in order (its validation aliases: prices are also seen keyed by `pk`).
    `list_field` names the list a record belongs to (a stock list, a price list).
    `headline` is what a one-line view of a new record shows. `example` is a whole record
    as Akinon serves it, dates included, in its field order: the contract's examples and
    the tests' factories start from it.
    """

    resource: Resource
    path: str
    content_type: str
    list_field: str
    content: type[StockContent] | type[PriceContent]
    model: type[StockRecord] | type[PriceRecord]
    headline: tuple[str, ...]
    example: Mapping[str, Any]
    content_fields: tuple[str, ...] = field(init=False)
    decimal_fields: frozenset[str] = field(init=False)
    key_fields: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        # Frozen for the callers; what the content model says is derived once, here.
        fields = self.content.model_fields
        key, key_info = next(iter(fields.items()))
        aliases = key_info.validation_alias
        decimals = frozenset(name for name, f in fields.items() if _is_decimal(f.annotation))
        key_fields = tuple(aliases.choices) if isinstance(aliases, AliasChoices) else (key,)
        for name, value in (
            ("content_fields", tuple(fields)),
            ("decimal_fields", decimals),
            ("key_fields", key_fields),
        ):
            object.__setattr__(self, name, value)

    @property
    def key_field(self) -> str:
        """Return the field that identifies a record."""
        return self.key_fields[0]


RESOURCES: Final[dict[Resource, ResourceSpec]] = {
    Resource.STOCK: ResourceSpec(
        resource=Resource.STOCK,
        path="extra_product_stocks",
        content_type="productstock",
        list_field="stock_list",
        content=StockContent,
        model=StockRecord,
        headline=("stock",),
        example={
            "pk": 48213,
            "product": 1207,
            "unit_type": "qty",
            "stock": 12,
            "sold_quantity_unreported": 0,
            "extra_field": {},
            "stock_list": 3,
            "modified_collection": None,
            "adjusted_stock": 12,
            "created_date": "2025-06-01T08:00:00.000000Z",
            "modified_date": "2025-06-27T10:06:56.438000Z",
        },
    ),
    Resource.PRICE: ResourceSpec(
        resource=Resource.PRICE,
        path="extra_product_prices",
        content_type="productprice",
        list_field="price_list",
        content=PriceContent,
        model=PriceRecord,
        headline=("price", "currency_type"),
        example={
            "id": 90311,
            "product": 1207,
            "price_list": 2,
            "retail_price": "129.90",
            "tax_rate": "18.00",
            "currency_type": "try",
            "price": "119.90",
            "price_type": "default",
            "discount_percentage": "7.70",
            "modifier_collection": None,
            "adjusted_price": "119.90",
            "extra_field": {},
            "created_date": "2025-06-01T08:00:00.000000Z",
            "modified_date": "2025-06-27T10:06:56.438000Z",
        },
    ),
}

# Views of the table that most callers want.
MODELS: Final = {r: spec.model for r, spec in RESOURCES.items()}
# The business content of a record, in a fixed order: what a fingerprint covers and what an
# event's `before`/`after` carry. Dates are left out so a touch that changes nothing is silent.
CONTENT_FIELDS: Final = {r: spec.content_fields for r, spec in RESOURCES.items()}
DECIMAL_FIELDS: Final = {r: spec.decimal_fields for r, spec in RESOURCES.items()}
DATE_FIELDS: Final = ("created_date", "modified_date")


def describe_errors(error: ValidationError) -> str:
    """Summarise a validation error in one line: field, problem and the value seen."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "record"
        seen = "" if item["type"] == "missing" else f" (got {item['input']!r:.60})"
        parts.append(f"{where}: {item['msg']}{seen}")
    return "; ".join(parts)
