"""Give every product id the few product fields the list filters read (pure).

The sandbox keeps no product catalog: a record's `product` id is all it has. The filters
the seeds document on a product's fields (`product__sku__in`, `product__attributes__<key>`)
read these derived values, so a test can compute the expected result from the id alone.
"""

from __future__ import annotations

from typing import Final

COLORS: Final = ("red", "blue", "green", "black")
SIZES: Final = ("s", "m", "l")


def sku(product: int) -> str:
    """Return a product's SKU."""
    return f"SKU-{product}"


def attributes(product: int) -> dict[str, str]:
    """Return a product's attributes (`color`, `size`)."""
    return {"color": COLORS[product % len(COLORS)], "size": SIZES[product % len(SIZES)]}
