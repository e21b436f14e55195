"""Decide how list endpoints answer: a plain JSON array or a paginated object; date filters.

Akinon documents stock inserts/updates/inserts_or_updates as plain arrays and every other
list as `{count, next, previous, results}`; clients must accept both, so the sandbox can
serve either, for all endpoints at once or per (resource, endpoint). Akinon's stock list
documents no `modified_date` filter, so a server may ignore one: `ignore_date_filters`
names the (resource, endpoint) pairs that answer as if no date filter was given.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import Any, Final

from publisher.records import Endpoint, Resource


class Shape(StrEnum):
    """Name the two list shapes."""

    ARRAY = "array"
    PAGINATED = "paginated"


DOCUMENTED: Final = "documented"
_QUEUE_ENDPOINTS: Final = (Endpoint.INSERTS, Endpoint.UPDATES, Endpoint.INSERTS_OR_UPDATES)
DOCUMENTED_ARRAYS: Final = frozenset((Resource.STOCK, endpoint) for endpoint in _QUEUE_ENDPOINTS)


def documented_shape(resource: Resource, endpoint: Endpoint) -> Shape:
    """Return the shape Akinon's documentation gives an endpoint."""
    return Shape.ARRAY if (resource, endpoint) in DOCUMENTED_ARRAYS else Shape.PAGINATED


def _slot(resource: Resource, endpoint: Endpoint) -> str:
    return f"{resource.value}/{endpoint.value}"


def _parse_slot(text: str) -> tuple[Resource, Endpoint]:
    resource, _, endpoint = text.partition("/")
    try:
        return Resource(resource), Endpoint(endpoint)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not <stock|price>/<endpoint>") from exc


def _parse_shape(text: Any, allow_documented: bool) -> Shape | str:
    if allow_documented and text == DOCUMENTED:
        return DOCUMENTED
    try:
        return Shape(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a list shape") from exc


class ShapeConfig:
    """Hold the shape mode ("documented", "array" or "paginated") and per-endpoint overrides."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mode: Shape | str = DOCUMENTED
        self._overrides: dict[tuple[Resource, Endpoint], Shape] = {}
        self._undated: frozenset[tuple[Resource, Endpoint]] = frozenset()

    def ignores_dates(self, resource: Resource, endpoint: Endpoint) -> bool:
        """Say whether an endpoint answers as if its date filters were not there."""
        return (resource, endpoint) in self._undated

    def shape_for(self, resource: Resource, endpoint: Endpoint) -> Shape:
        """Return the shape an endpoint answers with now."""
        override = self._overrides.get((resource, endpoint))
        if override is not None:
            return override
        mode = self._mode
        return documented_shape(resource, endpoint) if mode == DOCUMENTED else Shape(mode)

    def configure(self, body: Any) -> None:
        """Replace the settings from {"shape": mode, "overrides": {"stock/inserts": shape},
        "ignore_date_filters": ["stock/list"]}.

        Raises ValueError, leaving the settings unchanged, when anything is unreadable.
        """
        if not isinstance(body, dict):
            raise ValueError("shape settings must be a JSON object")
        mode = _parse_shape(body.get("shape", DOCUMENTED), allow_documented=True)
        raw = body.get("overrides") or {}
        if not isinstance(raw, dict):
            raise ValueError("overrides must map <resource>/<endpoint> to a shape")
        overrides = {
            _parse_slot(slot): Shape(_parse_shape(shape, False)) for slot, shape in raw.items()
        }
        undated = body.get("ignore_date_filters") or []
        if not isinstance(undated, list):
            raise ValueError("ignore_date_filters must list <resource>/<endpoint> slots")
        with self._lock:
            self._mode = mode
            self._overrides = overrides
            self._undated = frozenset(_parse_slot(slot) for slot in undated)

    def reset(self) -> None:
        """Go back to the documented shapes with no overrides."""
        self.configure({})

    def to_json(self) -> dict[str, Any]:
        """Return the mode, the overrides and the shape every endpoint answers with now."""
        with self._lock:
            overrides = {_slot(*slot): shape.value for slot, shape in self._overrides.items()}
            mode = str(self._mode)
            undated = sorted(_slot(*slot) for slot in self._undated)
        effective = {
            _slot(resource, endpoint): self.shape_for(resource, endpoint).value
            for resource in Resource
            for endpoint in Endpoint
        }
        return {
            "shape": mode,
            "overrides": overrides,
            "effective": effective,
            "ignore_date_filters": undated,
        }
