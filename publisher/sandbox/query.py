"""Turn list query parameters into filters and paging, the way django-filter reads them (pure).

Unknown parameters are ignored, as Django REST framework does; a known one with a value it
cannot read is a 400 naming the parameter.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from publisher.records import Resource
from publisher.sandbox.dates import parse_us
from publisher.sandbox.errors import InvalidError, NotFoundError

DEFAULT_LIMIT: Final = 10

# A term is (field, operator name, value): plain data, so a Filters can key a view cache.
Term = tuple[str, str, Any]

_OPERATORS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "in": lambda value, allowed: value in allowed,
    # a decimal string ("18.00") against a decimal parameter ("18")
    "deq": lambda value, wanted: _decimal(value) == wanted,
}


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _decimal_param(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None


def _text_set(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _int_set(text: str) -> frozenset[int]:
    return frozenset(int(part) for part in text.split(",") if part.strip())


def _text(text: str) -> str:
    return text


_Parser = Callable[[str], Any]


def _date_params() -> dict[str, tuple[str, str, _Parser]]:
    params: dict[str, tuple[str, str, _Parser]] = {}
    for field in ("modified_date", "created_date"):
        for op in ("gt", "gte", "lt", "lte"):
            params[f"{field}__{op}"] = (field, op, parse_us)
    return params


# Filters one resource's lists take beyond those of every list (the seeds document them).
_OWN: Final[dict[Resource, dict[str, tuple[str, str, _Parser]]]] = {
    Resource.STOCK: {
        "stock": ("stock", "eq", int),
        "unit_type": ("unit_type", "eq", _text),
        "sold_quantity_unreported": ("sold_quantity_unreported", "eq", int),
    },
    Resource.PRICE: {
        "currency_type": ("currency_type", "eq", _text),
        "tax_rate": ("tax_rate", "deq", _decimal_param),
        "price": ("price", "deq", _decimal_param),
        "retail_price": ("retail_price", "deq", _decimal_param),
    },
}
# Parameters with a key of the merchant's own after the prefix, and the field they read.
_KEYED: Final[dict[Resource, dict[str, str]]] = {
    Resource.STOCK: {"product__attributes__": "product.attributes."},
    Resource.PRICE: {
        "product__attributes__": "product.attributes.",
        "extra_field__": "extra_field.",
    },
}


def _params(resource: Resource) -> dict[str, tuple[str, str, _Parser]]:
    spec = resource.spec
    params = _date_params()
    params.update(
        {
            "pk__in": (spec.key_field, "in", _int_set),
            "product": ("product", "eq", int),
            "product__pk__in": ("product", "in", _int_set),
            "product__sku__in": ("product.sku", "in", _text_set),
            "product__sku__exact": ("product.sku", "eq", _text),
            spec.list_field: (spec.list_field, "eq", int),
        }
    )
    params.update({f"{name}__in": (spec.key_field, "in", _int_set) for name in spec.key_fields})
    params.update(_OWN[resource])
    return params


_PARAMS: Final = {resource: _params(resource) for resource in Resource}


def _keyed(resource: Resource, name: str) -> tuple[str, str, _Parser] | None:
    for prefix, field in _KEYED[resource].items():
        key = name.removeprefix(prefix)
        if key != name and key and "__" not in key:
            return field + key, "eq", _text
    return None


@dataclass(frozen=True)
class Filters:
    """Hold the filter terms of one list request; an empty one matches every record."""

    terms: tuple[Term, ...] = ()

    @classmethod
    def parse(cls, resource: Resource, query: Mapping[str, Sequence[str]]) -> Filters:
        """Read the filter parameters of `query`; raise InvalidError for an unreadable value."""
        known = _PARAMS[resource]
        terms: list[Term] = []
        errors: dict[str, list[str]] = {}
        for name in sorted(query):
            spec = known.get(name) or _keyed(resource, name)
            # django-filter treats an empty value as no filter at all.
            if spec is None or not query[name] or not query[name][-1]:
                continue
            field, op, parser = spec
            try:
                terms.append((field, op, parser(query[name][-1])))
            except ValueError:
                errors[name] = [f"Enter a valid value for {name}."]
        if errors:
            raise InvalidError(errors)
        return cls(tuple(terms))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, value_of: Callable[[str], Any]) -> bool:
        """Return whether a record, read through `value_of(field)`, passes every term."""
        for field, op, expected in self.terms:
            actual = value_of(field)
            if actual is None or not _OPERATORS[op](actual, expected):
                return False
        return True


@dataclass(frozen=True)
class Paging:
    """Hold the page number (from 1) and page size a list request asked for."""

    page: int = 1
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, query: Mapping[str, Sequence[str]]) -> Paging:
        """Read `page` and `limit`; a bad page is a 404, a bad limit falls back to the default.

        This mirrors DRF's page-number pagination: `page=abc` or `page=0` is "Invalid page."
        while a nonsensical page size is quietly replaced.
        """
        return cls(page=_page_number(query.get("page")), limit=_page_size(query.get("limit")))

    @property
    def start(self) -> int:
        """Return the index of the page's first record in the whole list."""
        return (self.page - 1) * self.limit


def _page_number(values: Sequence[str] | None) -> int:
    if not values:
        return 1
    try:
        number = int(values[-1])
    except ValueError:
        number = 0
    if number < 1:
        raise NotFoundError("Invalid page.")
    return number


def _page_size(values: Sequence[str] | None) -> int:
    if not values:
        return DEFAULT_LIMIT
    try:
        size = int(values[-1])
    except ValueError:
        return DEFAULT_LIMIT
    return size if size > 0 else DEFAULT_LIMIT
